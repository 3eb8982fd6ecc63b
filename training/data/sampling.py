"""Random draws for synthetic faces: identity coefficients, expressions, poses, crop placement."""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from edge_runtime.camera import CameraPose, compose_camera, project
from edge_runtime.crop import crop_from_box, landmark_box

# Plausible expression groups: (names, weight range); _L/_R pairs usually move together.
EXPRESSION_GROUPS = (
    (("jawOpen",), (0.1, 0.8)),
    (("mouthSmile_L", "mouthSmile_R"), (0.2, 1.0)),
    (("eyeBlink_L", "eyeBlink_R"), (0.3, 1.0)),
    (("browInnerUp_L", "browInnerUp_R"), (0.2, 1.0)),
    (("browDown_L", "browDown_R"), (0.2, 0.9)),
    (("browOuterUp_L", "browOuterUp_R"), (0.2, 0.9)),
    (("mouthFrown_L", "mouthFrown_R"), (0.2, 0.9)),
    (("mouthPucker",), (0.2, 0.9)),
    (("mouthFunnel",), (0.2, 0.8)),
    (("cheekPuff_L", "cheekPuff_R"), (0.2, 0.8)),
    (("eyeWide_L", "eyeWide_R"), (0.2, 0.9)),
    (("eyeSquint_L", "eyeSquint_R"), (0.2, 0.9)),
    (("mouthStretch_L", "mouthStretch_R"), (0.2, 0.8)),
    (("noseSneer_L", "noseSneer_R"), (0.2, 0.8)),
    (("mouthLeft",), (0.2, 0.8)),
    (("mouthRight",), (0.2, 0.8)),
    (("jawLeft",), (0.1, 0.6)),
    (("jawRight",), (0.1, 0.6)),
    (("mouthShrugUpper",), (0.2, 0.8)),
    (("mouthRollLower",), (0.2, 0.8)),
)


@dataclass(frozen=True)
class PoseConfig:
    """Pose distribution; yaw uniform over [-yaw_max, yaw_max] covers profiles evenly."""

    yaw_max_deg: float = 90.0
    pitch_max_deg: float = 40.0
    roll_max_deg: float = 30.0
    pitch_sigma_deg: float = 15.0
    roll_sigma_deg: float = 10.0
    yaw_distribution: str = "uniform"   # "uniform" or "normal" (sigma = yaw_max / 2)
    scale_jitter: float = 0.10          # crop side varies by exp(U(-j, j))
    shift_jitter: float = 0.06          # crop centre shifts by U(-j, j) * side


def sample_identity(rng: np.random.Generator, n_id: int, truncation: float | None) -> np.ndarray:
    coeffs = rng.standard_normal(n_id)
    if truncation:
        coeffs = np.clip(coeffs, -truncation, truncation)
    return coeffs.astype(np.float32)


GROUP_COUNT_P = (0.3, 0.3, 0.25, 0.15)  # how many expression groups a face activates: 0, 1, 2, 3
_GROUP_COUNT_CDF = np.cumsum(GROUP_COUNT_P)


@lru_cache(maxsize=8)
def _group_indices(exp_names: tuple[str, ...]) -> tuple[tuple[tuple[int, ...], float, float], ...]:
    """EXPRESSION_GROUPS as (indices of the names the model has, lo, hi)."""
    index = {n: i for i, n in enumerate(exp_names)}
    return tuple((tuple(index[n] for n in names if n in index), lo, hi) for names, (lo, hi) in EXPRESSION_GROUPS)


def sample_expression(rng: np.random.Generator, exp_names: tuple[str, ...]) -> np.ndarray:
    """Sparse activations: 0-3 groups, symmetric pairs with nearly equal weights."""
    weights = np.zeros(len(exp_names), np.float32)
    groups = _group_indices(tuple(exp_names))
    n_groups = int(np.searchsorted(_GROUP_COUNT_CDF, rng.random() * _GROUP_COUNT_CDF[-1], side="right"))
    for g in rng.choice(len(groups), size=n_groups, replace=False):
        indices, lo, hi = groups[g]
        w = rng.uniform(lo, hi)
        for i in indices:
            weights[i] = min(max(w * rng.uniform(0.85, 1.15), 0.0), 1.0)
    return weights


def _clipped_normal(rng: np.random.Generator, sigma: float, limit: float) -> float:
    return min(max(rng.normal(0.0, sigma), -limit), limit)


def sample_angles(rng: np.random.Generator, cfg: PoseConfig) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in radians."""
    if cfg.yaw_distribution == "uniform":
        yaw = rng.uniform(-cfg.yaw_max_deg, cfg.yaw_max_deg)
    else:
        yaw = _clipped_normal(rng, cfg.yaw_max_deg / 2, cfg.yaw_max_deg)
    pitch = _clipped_normal(rng, cfg.pitch_sigma_deg, cfg.pitch_max_deg)
    roll = _clipped_normal(rng, cfg.roll_sigma_deg, cfg.roll_max_deg)
    return math.radians(yaw), math.radians(pitch), math.radians(roll)


def place_in_crop(landmarks_model: np.ndarray, angles: tuple[float, float, float], size: int,
                  cfg: PoseConfig, rng: np.random.Generator) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """Camera that puts the face into a size x size crop by the 3DDFA convention, with jitter.

    Returns the 3x4 camera and the face box (landmark bounding box) in crop pixels.
    """
    unit_camera = compose_camera(CameraPose(1.0, *angles, 0.0, 0.0))
    face_box = landmark_box(project(landmarks_model, unit_camera))
    crop = crop_from_box(face_box, size)
    side = crop.side * np.exp(rng.uniform(-cfg.scale_jitter, cfg.scale_jitter))
    cx = crop.x0 + crop.side / 2 + rng.uniform(-cfg.shift_jitter, cfg.shift_jitter) * side
    cy = crop.y0 + crop.side / 2 + rng.uniform(-cfg.shift_jitter, cfg.shift_jitter) * side
    scale = size / side
    x0, y0 = cx - side / 2, cy - side / 2
    camera = compose_camera(CameraPose(scale, *angles, -x0 * scale, -y0 * scale))
    bx0, by0, bx1, by1 = face_box
    box = ((bx0 - x0) * scale, (by0 - y0) * scale, (bx1 - x0) * scale, (by1 - y0) * scale)
    return camera.astype(np.float32), box
