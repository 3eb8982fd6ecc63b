"""Where training-side code finds the face-model asset (--face-model, else $SIAMFACE_FACE_MODEL, else
the workspace's ../shared/assets/ict-face-model) and which 68 vertices it labels. The device never
looks: it reads the bundle's decoder, which carries the vertices the model was trained on.

Landmark definition (docs/landmarks.md): ICT's brow vertices 17-26 sit 3-5 mm above where the
2D convention (iBUG / 300-W, dlib) draws the brows. Fitted to the real dev set's annotations,
every one of its 12 faces needs an identity outside the synthetic population to reach them
(brow-to-eye distance 1.9-2.3 cm against 2.81 +- 0.19 for drawn people), so a model trained on
ICT's vertices learns brows further above the eyes than people's.
The project moves those ten vertices to the ones a near-rigid fit of the mean face proposes
(`siamface evaluate-fit ... "search_groups=[brows]" fit.id_weight=10 fit.exp_weight=10`, chosen
by 75-100 % of its leave-one-out folds); brows are painted along them, so images and labels agree.
Other assets keep their own vertices.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

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


ICT_BROWS = (268, 493, 1914, 2044, 1401, 3615, 4240, 4114, 2734, 2509)   # the asset's 17-26
BROWS_2D = (270, 1009, 1031, 2041, 2027, 4224, 4237, 3251, 3229, 2511)   # 3-5 mm lower, mirror pairs
BROWS_2D_NAME = "ict-brows-2d"


def project_landmarks(landmarks68: np.ndarray) -> tuple[np.ndarray, str]:
    """(the 68 vertices the project labels, the definition's name) for an asset's own
    ``landmarks68``: ICT's with the brows of the 2D convention, any other asset's unchanged ("asset")."""
    landmarks68 = np.asarray(landmarks68, np.int32)
    if tuple(landmarks68[17:27]) != ICT_BROWS:
        return landmarks68, "asset"
    out = landmarks68.copy()
    out[17:27] = BROWS_2D
    return out, BROWS_2D_NAME


def load_training_face_model(path: str | os.PathLike | None = None) -> MorphableModel:
    """The face model training, synthesis and export use (resolved as above), with the project's
    landmark definition; a missing or broken file says how to get one."""
    model = load_face_model(resolve_face_model_path(path), HOW_TO_GET)
    landmarks68, definition = project_landmarks(model.landmarks68)
    return dataclasses.replace(model, landmarks68=landmarks68, landmark_definition=definition)


def recorded_definition(record: dict) -> str:
    """The landmark definition an artifact's face-model record names ("asset" for records written
    before definitions were recorded)."""
    return record.get("landmarks", "asset")


def check_same_face_model(recorded: dict, model: MorphableModel, artifact: str, fix: str) -> None:
    """A one-line error when ``artifact`` was made with another face model than ``model``: another
    asset (sha256), or the same asset labelled with other landmark vertices (older code)."""
    if recorded["sha256"] != model.sha256:
        raise SiamfaceError(f"{artifact} was made with face model {recorded.get('name', '?')} "
                            f"({recorded['sha256'][:12]}), this run uses {model.name} ({model.sha256[:12]}): {fix}")
    made_with = recorded_definition(recorded)
    if made_with != model.landmark_definition:
        raise SiamfaceError(f"{artifact} was made with landmark definition {made_with!r}, this code labels "
                            f"{model.landmark_definition!r} (docs/landmarks.md): {fix}")
