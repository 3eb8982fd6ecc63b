"""Weak-perspective camera: a 3x4 matrix [sR | t] <-> scale, yaw, pitch, roll, translation.

Model space is the face model's: centimetres, +y up, +z out of the face towards the viewer.
Image space is pixels with +x right, +y down (pixel centres at integers, OpenCV's convention)
and +z away from the viewer, so a smaller z is nearer. The camera folds the axis flip
diag(1, -1, -1) into its rotation, so ``image = P[:, :3] @ X + P[:, 3]`` directly.

Angles follow R = Rz(roll) @ Ry(yaw) @ Rx(pitch) in model space: yaw > 0 turns the nose
towards the image's right, pitch > 0 tips the nose down, roll > 0 turns the face
counter-clockwise as seen in the image.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FLIP = np.diag([1.0, -1.0, -1.0])


def euler_to_matrix(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Rotation in model space from angles in radians: Rz(roll) @ Ry(yaw) @ Rx(pitch)."""
    cy, sy = np.cos(yaw), np.sin(yaw)
    cp, sp = np.cos(pitch), np.sin(pitch)
    cr, sr = np.cos(roll), np.sin(roll)
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return rz @ ry @ rx


def matrix_to_euler(r: np.ndarray) -> tuple[float, float, float]:
    """Inverse of ``euler_to_matrix``: (yaw, pitch, roll) in radians, yaw in [-pi/2, pi/2]."""
    yaw = float(np.arcsin(np.clip(-r[2, 0], -1.0, 1.0)))
    pitch = float(np.arctan2(r[2, 1], r[2, 2]))
    roll = float(np.arctan2(r[1, 0], r[0, 0]))
    return yaw, pitch, roll


@dataclass(frozen=True)
class CameraPose:
    """A camera in human terms; angles in radians, scale in pixels per centimetre."""

    scale: float
    yaw: float
    pitch: float
    roll: float
    tx: float
    ty: float
    tz: float = 0.0

    @property
    def degrees(self) -> tuple[float, float, float]:
        """(yaw, pitch, roll) in degrees."""
        return tuple(float(np.degrees(a)) for a in (self.yaw, self.pitch, self.roll))


def compose_camera(pose: CameraPose) -> np.ndarray:
    """CameraPose -> 3x4 matrix [s * FLIP @ R | t] (float64)."""
    rot = FLIP @ euler_to_matrix(pose.yaw, pose.pitch, pose.roll)
    return np.concatenate([pose.scale * rot, [[pose.tx], [pose.ty], [pose.tz]]], axis=1)


def orthonormal_rotation(m: np.ndarray) -> tuple[float, np.ndarray]:
    """Scale and nearest rotation of a regressed 3x3 block, from its first two rows (as 3DDFA)."""
    r1, r2 = np.asarray(m[0], np.float64), np.asarray(m[1], np.float64)
    n1, n2 = np.linalg.norm(r1), np.linalg.norm(r2)
    scale = (n1 + n2) / 2.0
    r1 = r1 / max(n1, 1e-12)
    r2 = r2 - r1 * (r1 @ r2)
    r2 = r2 / max(np.linalg.norm(r2), 1e-12)
    return float(scale), np.stack([r1, r2, np.cross(r1, r2)])


def decompose_camera(p: np.ndarray) -> CameraPose:
    """3x4 matrix (possibly regressed, not exactly [sR | t]) -> CameraPose."""
    p = np.asarray(p, np.float64).reshape(3, 4)
    scale, rot = orthonormal_rotation(p[:, :3])
    yaw, pitch, roll = matrix_to_euler(FLIP.T @ rot)
    return CameraPose(scale, yaw, pitch, roll, float(p[0, 3]), float(p[1, 3]), float(p[2, 3]))


def project(points: np.ndarray, camera: np.ndarray) -> np.ndarray:
    """Model-space points (..., N, 3) through cameras (..., 3, 4) -> image space (..., N, 3)."""
    camera = np.asarray(camera)
    return points @ np.swapaxes(camera[..., :3], -1, -2).astype(points.dtype) + camera[..., None, :, 3].astype(points.dtype)
