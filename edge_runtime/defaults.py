"""Which bundle a device command uses when none is named: --model, else $SIAMFACE_BUNDLE, else the
bundle shipped in models/default (beside edge_runtime/ in a clone or an editable install), so the
product works out of the box without training anything.
"""
from __future__ import annotations

import os
from pathlib import Path

from .errors import SiamfaceError

BUNDLE_ENV = "SIAMFACE_BUNDLE"


def _models_dir() -> Path:
    """The shipped models/ folder: beside edge_runtime/ in a clone or an editable install, inside the
    package (edge_runtime/models) in a wheel, where pyproject.toml maps it."""
    here = Path(__file__).resolve().parent
    inside = here / "models"
    return inside if inside.is_dir() else here.parent / "models"


MODELS_DIR = _models_dir()
SHIPPED_BUNDLE = MODELS_DIR / "default"
DETECTOR_DIR = MODELS_DIR / "detector"
HOW_TO_GET = (f"pass --model BUNDLE_DIR or set {BUNDLE_ENV} (a folder written by `siamface export`; "
              f"`make demo` writes some to runs/demo/bundles), or run from a siamface clone, which ships models/default")


def resolve_bundle(model: str | os.PathLike | None = None, shipped: str | os.PathLike = SHIPPED_BUNDLE) -> Path:
    """The bundle folder to open: ``model`` when given, else $SIAMFACE_BUNDLE, else ``shipped`` when it
    holds a bundle.json; otherwise a one-line SiamfaceError saying how to get one."""
    if model:
        return Path(model)
    if os.environ.get(BUNDLE_ENV):
        return Path(os.environ[BUNDLE_ENV])
    if (Path(shipped) / "bundle.json").is_file():
        return Path(shipped)
    raise SiamfaceError(f"no bundle given and none shipped in {shipped}: {HOW_TO_GET}")
