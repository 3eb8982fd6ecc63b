"""The 2D landmark convention: jaw points on the visible contour ("landmark marching").

The network learns 68 fixed mesh vertices: the 3D convention of AFLW2000-3D and 300W-LP, where
on a turned face the jaw points stay on the 3D jawline and slide behind the cheek. Annotations
of 300-W, LFPW, HELEN, AFW, iBUG (and the real dev set) follow the visible face contour instead.
As 3DDFA's landmark marching (Zhu et al. 2016), each jaw point 0-6 and 10-16 gets a line of
candidate vertices at its height, running from the landmark forward across the cheek; at a
given pose the point is the candidate furthest out along the image direction of its side of the
face. Lines never reach beyond their landmark, so at yaw 0 the landmark itself is the outermost
and frontal faces keep the 3D definition; on the side turning away the point moves forward onto
the silhouette. The chin points 7-9 stay fixed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CONVENTIONS = ("3d", "2d")
MARCHING_LANDMARKS = tuple(range(0, 7)) + tuple(range(10, 17))
BAND = 0.035           # half-height of a line, as a fraction of the outer eye corners' distance (~3 mm)
INNER_FRACTION = 0.2   # a line runs inwards to a fifth of its landmark's distance from the midline


@dataclass(frozen=True)
class ContourLines:
    """Candidate vertices of every marching landmark, as one padded table."""

    landmarks: np.ndarray  # (L,) which of the 68 march
    table: np.ndarray      # (L, C) candidate vertex indices, padded with -1
    side: np.ndarray       # (L,) +1 or -1: the model-space x side the landmark is on

    @property
    def vertices(self) -> np.ndarray:
        """Every candidate vertex once (the decoder computes only these)."""
        return np.unique(self.table[self.table >= 0])


def contour_lines(mean: np.ndarray, landmarks68: np.ndarray, face_vertices: np.ndarray) -> ContourLines:
    """Lines on the mean face: ``face_vertices`` (the face proper, no eyeballs or mouth socket) at
    each landmark's height, on its side, from the landmark (never further out or further back)
    inwards to ``INNER_FRACTION`` of its distance from the midline."""
    eye_span = float(np.linalg.norm(mean[landmarks68[45]] - mean[landmarks68[36]]))
    band = BAND * eye_span
    points = mean[face_vertices]
    lines, sides = [], []
    for j in MARCHING_LANDMARKS:
        x, y, z = mean[landmarks68[j]]
        side = 1.0 if x > 0 else -1.0
        lateral = side * points[:, 0]
        on_line = ((np.abs(points[:, 1] - y) <= band) & (lateral <= abs(x) + 1e-4)
                   & (lateral >= INNER_FRACTION * abs(x)) & (points[:, 2] >= z - 1e-4))
        line = np.union1d(face_vertices[on_line], [landmarks68[j]])
        lines.append(line)
        sides.append(side)
    table = np.full((len(lines), max(map(len, lines))), -1, np.int64)
    for k, line in enumerate(lines):
        table[k, :len(line)] = line
    return ContourLines(np.array(MARCHING_LANDMARKS), table, np.array(sides, np.float32))


def march(landmarks: np.ndarray, candidates: np.ndarray, lines: ContourLines, camera: np.ndarray) -> np.ndarray:
    """Image landmarks (..., 68, 3) in the 3D convention -> the 2D convention.

    ``candidates`` (..., len(lines.vertices), 3) are the image positions of ``lines.vertices`` under
    ``camera`` (..., 3, 4); each marching landmark becomes its line's candidate furthest out along
    the image direction of the model's x axis times its side."""
    outward = np.asarray(camera)[..., :2, 0]
    outward = outward / np.maximum(np.linalg.norm(outward, axis=-1, keepdims=True), 1e-12)
    reach = np.einsum("...cd,...d->...c", candidates[..., :2], outward)          # (..., C)
    column = np.searchsorted(lines.vertices, np.maximum(lines.table, 0))      # (L, Cmax) into candidates
    score = reach[..., column] * lines.side[:, None]
    score = np.where(lines.table >= 0, score, -np.inf)
    best = np.take_along_axis(np.broadcast_to(column, score.shape), score.argmax(-1)[..., None], -1)[..., 0]
    out = np.array(landmarks, copy=True)
    out[..., lines.landmarks, :] = np.take_along_axis(candidates, best[..., None], -2)
    return out
