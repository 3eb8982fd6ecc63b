"""User-facing errors: one line that names the file and what to do."""


class SiamfaceError(Exception):
    """An expected failure (bad file, bad config); the CLI prints it as one line and exits 2."""
