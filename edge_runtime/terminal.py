"""What commands put on the terminal: diagnostics through `logging` on stderr (--quiet/--verbose),
results as JSON Lines on stdout (--json), progress bars on stderr; and the one place that sets the
environment TensorFlow reads at import (device commands never import it)."""
from __future__ import annotations

import json
import logging
import os
import sys
from typing import Iterable, TypeVar

LOGGER = "siamface"
TENSORFLOW_ENV = {"TF_USE_LEGACY_KERAS": "1",   # tf-keras (Keras 2): tensorflow-model-optimization needs it
                  "TF_CPP_MIN_LOG_LEVEL": "2"}  # no C++ INFO/WARNING lines
T = TypeVar("T")

log = logging.getLogger(LOGGER)


def tensorflow_env() -> None:
    """Set TENSORFLOW_ENV (values the user exported win); must run before TensorFlow is imported."""
    for name, value in TENSORFLOW_ENV.items():
        os.environ.setdefault(name, value)


class _Formatter(logging.Formatter):
    """`warning: ...`, the same shape as the CLIs' `error: ...` line."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {record.getMessage()}"


def configure_logging(quiet: bool = False, verbose: bool = False) -> None:
    """--quiet: errors only; default: warnings; --verbose: also info (timings, files written)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.ERROR if quiet else logging.INFO if verbose else logging.WARNING)


def emit(obj: dict) -> None:
    """One JSON Lines record on stdout (flushed, so a reader sees each as it is made)."""
    print(json.dumps(obj, allow_nan=False), flush=True)


def progress(items: list[T], unit: str, quiet: bool) -> Iterable[T]:
    """A tqdm bar on stderr for more than one item (hidden with --quiet or when stderr is not a terminal)."""
    from tqdm import tqdm

    return tqdm(items, unit=unit, file=sys.stderr, leave=False,
                disable=quiet or len(items) < 2 or not sys.stderr.isatty())
