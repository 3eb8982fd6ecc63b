"""Random draws for synthetic faces: identity coefficients, expressions, poses, and the camera that
frames a face in its crop."""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numba
import numpy as np

from siamface.edge_runtime.camera import FLIP, euler_to_matrix
from siamface.edge_runtime.crop import crop_from_box, landmark_box

# Expression groups: (names, weight range, how often a face picks it relative to the others).
# Open mouths, smiles and blinks are what photos show most; _L/_R pairs usually move together
# (see ASYMMETRIC_P).
EXPRESSION_GROUPS = (
    (("jawOpen",), (0.1, 1.0), 5.0),
    (("mouthSmile_L", "mouthSmile_R"), (0.2, 1.0), 7.0),
    (("eyeBlink_L", "eyeBlink_R"), (0.3, 1.0), 2.5),
    (("browInnerUp_L", "browInnerUp_R"), (0.2, 1.0), 1.0),
    (("browDown_L", "browDown_R"), (0.2, 0.9), 1.0),
    (("browOuterUp_L", "browOuterUp_R"), (0.2, 0.9), 1.0),
    (("mouthFrown_L", "mouthFrown_R"), (0.2, 0.9), 1.0),
    (("mouthPucker",), (0.2, 0.9), 0.7),
    (("mouthFunnel",), (0.2, 0.8), 0.7),
    (("cheekPuff_L", "cheekPuff_R"), (0.2, 0.8), 0.5),
    (("eyeWide_L", "eyeWide_R"), (0.2, 0.9), 1.0),
    (("eyeSquint_L", "eyeSquint_R"), (0.2, 0.9), 1.0),
    (("mouthStretch_L", "mouthStretch_R"), (0.2, 0.8), 1.0),
    (("noseSneer_L", "noseSneer_R"), (0.2, 0.8), 0.7),
    (("mouthLowerDown_L", "mouthLowerDown_R"), (0.2, 0.9), 1.0),
    (("mouthUpperUp_L", "mouthUpperUp_R"), (0.2, 0.8), 0.7),
    (("mouthDimple_L", "mouthDimple_R"), (0.2, 0.8), 0.5),
    (("mouthLeft",), (0.2, 0.8), 0.5),
    (("mouthRight",), (0.2, 0.8), 0.5),
    (("jawLeft",), (0.1, 0.6), 0.5),
    (("jawRight",), (0.1, 0.6), 0.5),
    (("mouthShrugUpper",), (0.2, 0.8), 0.5),
    (("mouthRollLower",), (0.2, 0.8), 0.5),
)
GROUP_COUNT_P = (0.2, 0.3, 0.3, 0.2)  # how many expression groups a face activates: 0, 1, 2, 3
ASYMMETRIC_P = 0.3                    # a pair group acts on one side: the other gets U(0, 0.3) of the weight
# The social smile with teeth that photos of people show most (HELEN, LFPW, 300-W are full of
# them): one blendshape alone does not make it, and the sparse groups above rarely draw its parts
# together. Drawn on top of them for GRIN_P of the faces, every part scaled by one intensity.
GRIN = (
    (("mouthSmile_L", "mouthSmile_R"), (0.5, 1.0)),
    (("mouthUpperUp_L", "mouthUpperUp_R"), (0.2, 0.8)),
    (("mouthLowerDown_L", "mouthLowerDown_R"), (0.1, 0.7)),
    (("mouthStretch_L", "mouthStretch_R"), (0.0, 0.5)),
    (("jawOpen",), (0.0, 0.3)),
    (("cheekSquint_L", "cheekSquint_R"), (0.2, 0.8)),
    (("eyeSquint_L", "eyeSquint_R"), (0.1, 0.6)),
)
GRIN_P = 0.25


@dataclass(frozen=True)
class PoseConfig:
    """Pose and framing distribution. Yaw is uniform over [-yaw_max, yaw_max] so that profiles are
    covered evenly; pitch and roll are normal, truncated at their maxima (redrawn, not clipped)."""

    yaw_max_deg: float = 90.0
    pitch_max_deg: float = 40.0
    roll_max_deg: float = 30.0
    pitch_sigma_deg: float = 15.0
    roll_sigma_deg: float = 10.0
    yaw_distribution: Literal["uniform", "normal"] = "uniform"  # normal: sigma = yaw_max / 2
    scale_jitter: float = 0.10          # crop side varies by exp(U(-j, j))
    shift_jitter: float = 0.06          # crop centre shifts by U(-j, j) * side
    distance_cm: tuple[float, float] = (25.0, 600.0)  # lens to face centre, log-uniform: selfie to near-orthographic


def sample_identity(rng: np.random.Generator, n_id: int, truncation: float | None) -> np.ndarray:
    coeffs = rng.standard_normal(n_id)
    if truncation:
        coeffs = np.clip(coeffs, -truncation, truncation)
    return coeffs.astype(np.float32)


@lru_cache(maxsize=8)
def _indexed(exp_names: tuple[str, ...], parts: tuple) -> tuple[tuple[tuple[int, ...], float, float], ...]:
    """``parts`` ((names, (lo, hi)), ...) as (indices of the names the model has, lo, hi)."""
    index = {n: i for i, n in enumerate(exp_names)}
    return tuple((tuple(index[n] for n in names if n in index), lo, hi) for names, (lo, hi) in parts)


def _jittered(lo: float, hi: float, u: np.ndarray, intensity: float = 1.0) -> np.ndarray:
    """Both sides' weights: lo + (hi - lo) * intensity * u[0], each side jittered by 0.85-1.15 (u[1:3])."""
    return (lo + (hi - lo) * intensity * u[0]) * (0.85 + 0.3 * u[1:3])


_GROUP_PARTS = tuple((names, weight_range) for names, weight_range, _ in EXPRESSION_GROUPS)
_GROUP_RATE = np.array([f for _, _, f in EXPRESSION_GROUPS])
_GROUP_COUNT_CDF = np.cumsum(GROUP_COUNT_P)


def sample_expression(rng: np.random.Generator, exp_names: tuple[str, ...]) -> np.ndarray:
    """Sparse activations: 0-3 groups; pairs nearly equal on both sides, or one-sided."""
    weights = np.zeros(len(exp_names), np.float32)
    groups = _indexed(tuple(exp_names), _GROUP_PARTS)
    n_groups = int(np.searchsorted(_GROUP_COUNT_CDF, rng.random() * _GROUP_COUNT_CDF[-1], side="right"))
    # Groups without replacement, each as likely as its rate: the first n of exponential arrivals.
    arrivals = rng.exponential(size=len(groups)) / _GROUP_RATE
    for g, u in zip(np.argsort(arrivals)[:n_groups], rng.random((n_groups, 6))):
        indices, lo, hi = groups[g]
        sides = _jittered(lo, hi, u)
        if len(indices) == 2 and u[3] < ASYMMETRIC_P:
            sides[int(u[4] < 0.5)] *= 0.3 * u[5]
        weights[list(indices)] = np.clip(sides[: len(indices)], 0.0, 1.0)
    if rng.random() < GRIN_P:
        intensity = 0.3 + 0.7 * rng.random()
        for (indices, lo, hi), u in zip(_indexed(tuple(exp_names), GRIN), rng.random((len(GRIN), 3))):
            sides = _jittered(lo, hi, u, intensity)
            weights[list(indices)] = np.maximum(weights[list(indices)], np.clip(sides[: len(indices)], 0.0, 1.0))
    return weights


def _truncated_normal(rng: np.random.Generator, sigma: float, limit: float) -> float:
    while True:
        x = rng.normal(0.0, sigma)
        if abs(x) <= limit:
            return x


def sample_angles(rng: np.random.Generator, cfg: PoseConfig) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in radians."""
    if cfg.yaw_distribution == "uniform":
        yaw = rng.uniform(-cfg.yaw_max_deg, cfg.yaw_max_deg)
    else:
        yaw = _truncated_normal(rng, cfg.yaw_max_deg / 2, cfg.yaw_max_deg)
    pitch = _truncated_normal(rng, cfg.pitch_sigma_deg, cfg.pitch_max_deg)
    roll = _truncated_normal(rng, cfg.roll_sigma_deg, cfg.roll_max_deg)
    return math.radians(yaw), math.radians(pitch), math.radians(roll)


@dataclass(frozen=True)
class PinholeCamera:
    """The perspective camera of a synthetic photo, in crop pixels.

    Camera space (cm; x right, y down, z away from the lens) is ``rotation @ (X - pivot) + (0, 0,
    distance)`` for a model-space point X; a pixel is ``focal * (x, y) / z + centre``. The rotation
    is the label camera's, FLIP @ R(yaw, pitch, roll) (edge_runtime.camera), so poses keep their
    meaning; the pivot (face centre) lies on the optical axis.
    """

    rotation: np.ndarray            # (3, 3)
    pivot: np.ndarray               # (3,) model space, cm
    distance: float                 # lens to pivot, cm
    focal: float                    # pixels
    centre: tuple[float, float]     # principal point, pixels

    @property
    def scale(self) -> float:
        """Pixels per centimetre at the pivot's depth."""
        return self.focal / self.distance

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Model-space points (N, 3) -> (image space (N, 3) float32: x, y pixels and depth z =
        scale * (camera z - distance), smaller nearer; camera space (N, 3) float32)."""
        extrinsic = np.empty((3, 4), np.float32)
        extrinsic[:, :3] = self.rotation
        extrinsic[:, 3] = -self.rotation @ self.pivot + (0.0, 0.0, self.distance)
        points = np.ascontiguousarray(points, np.float32)
        image, cam = np.empty_like(points), np.empty_like(points)
        _project(points, extrinsic, np.float32(self.focal), np.float32(self.centre[0]), np.float32(self.centre[1]),
                 np.float32(self.distance), np.float32(self.scale), image, cam)
        return image, cam

    def weak_perspective(self, points: np.ndarray, projected: np.ndarray, indices: np.ndarray) -> np.ndarray:
        """The label camera: the 3x4 weak-perspective [s * rotation | t] with this rotation whose
        projection of model-space ``points[indices]`` is nearest, in least squares, to their
        perspective projection ``projected[indices]`` (pixels, first two columns). Closed form: s and
        (tx, ty) of a linear fit; tz = 0, so its depth is s * (rotation @ X)_z as the crop
        convention has it."""
        rows = self.rotation[:2].astype(np.float32)
        s, tx, ty = _scale_shift_fit(points, projected, np.asarray(indices, np.int64), rows)
        camera = np.zeros((3, 4), np.float32)
        camera[:, :3] = s * self.rotation
        camera[:2, 3] = tx, ty
        return camera


@numba.njit(cache=True, fastmath=True)
def _project(points, extrinsic, focal, cx, cy, distance, scale, image, cam):
    for i in range(points.shape[0]):
        x, y, z = points[i, 0], points[i, 1], points[i, 2]
        for a in range(3):
            cam[i, a] = extrinsic[a, 0] * x + extrinsic[a, 1] * y + extrinsic[a, 2] * z + extrinsic[a, 3]
        inv = focal / cam[i, 2]
        image[i, 0] = cam[i, 0] * inv + cx
        image[i, 1] = cam[i, 1] * inv + cy
        image[i, 2] = (cam[i, 2] - distance) * scale


@numba.njit(cache=True)
def _scale_shift_fit(points, target, indices, rows):
    """Least-squares s, tx, ty of target[i, :2] ~ s * rows @ points[i] + t over ``indices``."""
    n = indices.shape[0]
    sr, st = np.zeros(2), np.zeros(2)
    for i in indices:
        for a in range(2):
            sr[a] += rows[a, 0] * points[i, 0] + rows[a, 1] * points[i, 1] + rows[a, 2] * points[i, 2]
            st[a] += target[i, a]
    mr, mt = sr / n, st / n
    num, den = 0.0, 0.0
    for i in indices:
        for a in range(2):
            r = rows[a, 0] * points[i, 0] + rows[a, 1] * points[i, 1] + rows[a, 2] * points[i, 2] - mr[a]
            num += r * (target[i, a] - mt[a])
            den += r * r
    s = num / den
    return s, mt[0] - s * mr[0], mt[1] - s * mr[1]


def place_in_crop(unit_landmarks: np.ndarray, size: int, cfg: PoseConfig,
                  rng: np.random.Generator) -> tuple[float, np.ndarray, tuple[float, float, float, float]]:
    """Where a face goes in a size x size crop, by the 3DDFA crop convention with jitter.

    ``unit_landmarks`` (68, >=2) are the landmarks projected at any scale; returns (scale, offset
    (2,), face box) such that crop pixels = (unit - offset) * scale, and the face box (landmark
    bounding box) in crop pixels.
    """
    face_box = landmark_box(unit_landmarks[:, :2])
    crop = crop_from_box(face_box, size)
    side = crop.side * np.exp(rng.uniform(-cfg.scale_jitter, cfg.scale_jitter))
    cx = crop.x0 + crop.side / 2 + rng.uniform(-cfg.shift_jitter, cfg.shift_jitter) * side
    cy = crop.y0 + crop.side / 2 + rng.uniform(-cfg.shift_jitter, cfg.shift_jitter) * side
    scale = size / side
    x0, y0 = cx - side / 2, cy - side / 2
    bx0, by0, bx1, by1 = face_box
    box = ((bx0 - x0) * scale, (by0 - y0) * scale, (bx1 - x0) * scale, (by1 - y0) * scale)
    return scale, np.array([x0, y0]), box


def sample_camera(landmarks_model: np.ndarray, angles: tuple[float, float, float], size: int, cfg: PoseConfig,
                  rng: np.random.Generator) -> tuple[PinholeCamera, tuple[float, float, float, float]]:
    """A pinhole camera at a log-uniform distance that frames the face as ``place_in_crop`` does:
    the crop is placed on the perspective projection of the landmarks, so a selfie is framed by
    the face it shows. Returns the camera and the face box in crop pixels."""
    lo, hi = cfg.distance_cm
    distance = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    rotation = FLIP @ euler_to_matrix(*angles)
    pivot = landmarks_model.mean(axis=0).astype(np.float64)
    unit = PinholeCamera(rotation, pivot, distance, distance, (0.0, 0.0))  # 1 px per cm at the pivot
    scale, offset, box = place_in_crop(unit.project(landmarks_model)[0], size, cfg, rng)
    centre = (-offset[0] * scale, -offset[1] * scale)
    return PinholeCamera(rotation, pivot, distance, distance * scale, centre), box
