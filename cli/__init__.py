"""The `siamface` command line: one click group; subcommands import heavy modules lazily."""
