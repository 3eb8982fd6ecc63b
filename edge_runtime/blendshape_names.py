"""Blendshape names: the face model's (ARKit's raw names) and MediaPipe's 52 categories.

The ICT face model names its 53 expressions as ARKit's ``BlendShapeLocation`` raw values
(``eyeBlink_L``, ``jawOpen``), except that it splits ARKit's ``browInnerUp`` and ``cheekPuff``
into left and right halves and has no ``tongueOut``. MediaPipe's face landmarker reports
ARKit's Swift names (``eyeBlinkLeft``) plus ``_neutral``, without ``tongueOut``.
"""
from __future__ import annotations

import numpy as np

MEDIAPIPE_NAMES: tuple[str, ...] = (
    "_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight", "eyeLookDownLeft",
    "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft", "eyeLookOutRight", "eyeLookUpLeft",
    "eyeLookUpRight", "eyeSquintLeft", "eyeSquintRight", "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft",
    "jawOpen", "jawRight", "mouthClose", "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft", "mouthFrownRight",
    "mouthFunnel", "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthPressLeft", "mouthPressRight",
    "mouthPucker", "mouthRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthSmileLeft", "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight", "mouthUpperUpLeft",
    "mouthUpperUpRight", "noseSneerLeft", "noseSneerRight")


def mediapipe_name(name: str) -> str:
    """ARKit raw name -> MediaPipe category: ``mouthSmile_L`` -> ``mouthSmileLeft``,
    ``browInnerUp_L`` -> ``browInnerUp`` (MediaPipe has one for both sides)."""
    base, _, side = name.rpartition("_")
    if side not in ("L", "R") or not base:
        return name
    merged = f"{base}{'Left' if side == 'L' else 'Right'}"
    return merged if merged in MEDIAPIPE_NAMES else base


def mediapipe_blendshapes(names: tuple[str, ...], weights: np.ndarray) -> dict[str, float]:
    """The 52 MediaPipe categories from the model's weights (clipped to [0, 1]): a category fed by
    two halves (browInnerUp, cheekPuff) takes their mean; ``_neutral`` is 1 - the largest weight;
    a category the model lacks is 0."""
    weights = np.clip(np.asarray(weights, np.float64), 0.0, 1.0)
    groups: dict[str, list[float]] = {}
    for name, w in zip(names, weights):
        groups.setdefault(mediapipe_name(name), []).append(float(w))
    out = {name: float(np.mean(groups.get(name, [0.0]))) for name in MEDIAPIPE_NAMES}
    out["_neutral"] = 1.0 - float(weights.max(initial=0.0))
    return out
