"""The per-face record: one dict, the same in the CLI's JSON, JSON Lines and the Python API.

Frames: ``landmarks68`` (fixed vertices), ``landmarks68_2d`` (jaw on the visible contour) and ``box`` are image pixels (x right, y down); ``landmarks3d`` is the
face model's space (centimetres, +y up, +z out of the face, no pose); ``head_transform`` maps
that space to the image: ``[x, y, z, 1] = M @ [X, Y, Z, 1]`` with x, y pixels and z depth in
pixels (+z away from the viewer), ``M[:3, :3] = scale * diag(1, -1, -1) @ R`` where ``R`` is the
head's rotation in model space (yaw, pitch, roll of ``pose_deg``) and ``scale`` pixels per cm.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .blendshape_names import MEDIAPIPE_NAMES, mediapipe_blendshapes
from .camera import compose_camera, decompose_camera

if TYPE_CHECKING:
    from .reconstructor import Face


def _array(shape: list[int | None]) -> dict:
    """Schema of a nested list of numbers with the given lengths (None: any length)."""
    item: dict = {"type": "number"}
    for n in reversed(shape):
        item = {"type": "array", "items": item} | ({"minItems": n, "maxItems": n} if n is not None else {})
    return item


def _weights(names: tuple[str, ...] | None) -> dict:
    weight = {"type": "number", "minimum": 0.0, "maximum": 1.0}
    if names is None:
        return {"type": "object", "additionalProperties": weight}
    return {"type": "object", "properties": {n: weight for n in names}, "required": list(names),
            "additionalProperties": False}


FACE_SCHEMA: dict = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "siamface face",
    "type": "object",
    "properties": {
        "box": _array([4]),
        "score": {"type": "number"},
        "crop_box": _array([4]),
        "pose_deg": {"type": "object", "properties": {k: {"type": "number"} for k in ("yaw", "pitch", "roll")},
                     "required": ["yaw", "pitch", "roll"], "additionalProperties": False},
        "scale_px_per_cm": {"type": "number", "exclusiveMinimum": 0},
        "head_transform": _array([4, 4]),
        "landmarks68": _array([68, 2]),
        "landmarks68_2d": _array([68, 2]),
        "landmarks3d": _array([68, 3]),
        "blendshapes": _weights(None),
        "blendshapes_mediapipe": _weights(MEDIAPIPE_NAMES),
        "shape_code": _array([None]),
        "embedding": _array([None]),
        "keypoints": _array([6, 2]),
    },
    "additionalProperties": False,
}
# embedding: biometric, opt-in; keypoints: only on a face the detector found (BlazeFace's, KEYPOINT_NAMES)
FACE_SCHEMA["required"] = [k for k in FACE_SCHEMA["properties"] if k not in ("embedding", "keypoints")]
KEYPOINT_NAMES = ("right_eye", "left_eye", "nose_tip", "mouth_centre", "right_ear_tragion", "left_ear_tragion")

FRAME_SCHEMA: dict = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "siamface video frame",
    "type": "object",
    "properties": {"frame": {"type": "integer", "minimum": 0}, "time_s": {"type": "number", "minimum": 0},
                   "detected": {"type": "boolean"}, "faces": {"type": "array", "items": FACE_SCHEMA}},
    "required": ["frame", "time_s", "detected", "faces"],
    "additionalProperties": False,
}


def head_transform(camera: np.ndarray) -> np.ndarray:
    """4x4 similarity (scale, rotation, translation) of a regressed 3x4 camera: its rotation block
    orthonormalised as the pose angles are (camera.decompose_camera), translation kept."""
    out = np.eye(4)
    out[:3] = compose_camera(decompose_camera(camera))
    return out


def _round(a, digits: int) -> list:
    return np.round(np.asarray(a, np.float64), digits).tolist()


def face_record(face: "Face", embedding: bool = True) -> dict:
    """A Face as plain JSON types (FACE_SCHEMA); every blendshape, the shape code and, unless
    ``embedding`` is false (biometric data; it may cost the mirrored crop's invoke), the embedding."""
    pose = decompose_camera(face.camera)
    expression = face.expression
    return {
        "box": _round(face.box, 2), "score": round(float(face.score), 4), "crop_box": _round(face.crop.box(), 2),
        "pose_deg": dict(zip(("yaw", "pitch", "roll"), (round(a, 2) for a in pose.degrees))),
        "scale_px_per_cm": round(pose.scale, 4),
        "head_transform": _round(head_transform(face.camera), 5),
        "landmarks68": _round(face.landmarks68, 2),
        "landmarks68_2d": _round(face.landmarks68_2d, 2),
        "landmarks3d": _round(face.model_landmarks, 4),
        "blendshapes": {k: round(v, 4) for k, v in expression.items()},
        "blendshapes_mediapipe": {k: round(v, 4) for k, v in
                                  mediapipe_blendshapes(tuple(expression), np.array(list(expression.values()))).items()},
        "shape_code": _round(face.shape_code, 4),
    } | ({"embedding": _round(face.embedding, 5)} if embedding else {}) \
      | ({} if face.keypoints is None else {"keypoints": _round(face.keypoints, 2)})
