"""Where training-side code finds the face-model asset: --face-model, else $SIAMFACE_FACE_MODEL, else
the workspace's ../shared/assets/ict-face-model. The device never looks: it reads the bundle's decoder.
"""
from __future__ import annotations

import os
from pathlib import Path

from siamface.edge_runtime.errors import SiamfaceError
from siamface.edge_runtime.morphable_model import MorphableModel, load_face_model

ENV_VAR = "SIAMFACE_FACE_MODEL"
WORKSPACE_ASSET = Path(__file__).resolve().parents[2] / "shared" / "assets" / "ict-face-model" / "ict_face_model.npz"
HOW_TO_GET = (f"pass --face-model PATH or set {ENV_VAR} to an ict_face_model.npz; build one from an ICT-FaceKit "
              f"checkout with `siamface data face-model ICT_FACEKIT_DIR --out FILE` (docs/face-model.md)")


def resolve_face_model_path(path: str | os.PathLike | None = None, workspace: Path = WORKSPACE_ASSET) -> Path:
    """The asset to train with: ``path`` when given, else $SIAMFACE_FACE_MODEL, else ``workspace`` when
    it exists; otherwise a one-line SiamfaceError saying how to get one."""
    if path:
        return Path(path)
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    if workspace.is_file():
        return workspace
    raise SiamfaceError(f"no face model given and none at {workspace}: {HOW_TO_GET}")


def load_training_face_model(path: str | os.PathLike | None = None) -> MorphableModel:
    """The face model training, synthesis and export use (resolved as above); a missing or broken
    file says how to get one."""
    return load_face_model(resolve_face_model_path(path), HOW_TO_GET)
