"""User-facing errors (one line that names the file and what to do) and the exit codes of both CLIs."""

EXIT_OK = 0          # done; for verify/identify with --exit-code: a match
EXIT_NO_MATCH = 1    # verify/identify with --exit-code: no match
EXIT_USAGE = 2       # bad command line (argparse and click use 2 too)
EXIT_BAD_INPUT = 3   # bad input or bad bundle: any SiamfaceError
EXIT_CODES = ("exit codes: 0 ok (or a match), 1 no match (verify/identify with --exit-code), "
              "2 usage error, 3 bad input or bad bundle")


class SiamfaceError(Exception):
    """An expected failure (bad file, bad bundle, bad config); both CLIs print it as one line
    (`error: ...`) and exit with EXIT_BAD_INPUT."""
