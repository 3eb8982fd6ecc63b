"""The 3DDFA crop convention: one function pair used by data, training and the edge runtime.

From a face box (x0, y0, x1, y1): old_size = (w + h) / 2; centre shifted down by
0.14 * old_size; square side 1.58 * old_size; zero padding outside the image; bilinear
resize to ``size``. Points map between image and crop with ``CropTransform``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .errors import SiamfaceError

CENTER_SHIFT = 0.14
SIDE_FACTOR = 1.58


@dataclass(frozen=True)
class CropTransform:
    """Square region (x0, y0, side) of an image, resampled to size x size pixels."""

    x0: float
    y0: float
    side: float
    size: int = 120

    def __post_init__(self):
        if not is_crop_side(self.side):
            raise SiamfaceError(f"crop of side {self.side} at ({self.x0}, {self.y0}): the face box has no area; "
                                f"pass a box x0,y0,x1,y1 with x1 > x0 and y1 > y0")

    @property
    def scale(self) -> float:
        """Crop pixels per image pixel."""
        return self.size / self.side

    def matrix(self) -> np.ndarray:
        """2x3 affine image -> crop (pixel centres at integers on both sides)."""
        a = self.scale
        return np.array([[a, 0.0, -a * self.x0], [0.0, a, -a * self.y0]])

    def to_crop(self, points: np.ndarray) -> np.ndarray:
        """Image-space points (..., 2 or 3) to crop space; z is scaled like x and y."""
        out = np.array(points, dtype=np.float64)
        out[..., 0] = (out[..., 0] - self.x0) * self.scale
        out[..., 1] = (out[..., 1] - self.y0) * self.scale
        if out.shape[-1] > 2:
            out[..., 2:] *= self.scale
        return out

    def to_image(self, points: np.ndarray) -> np.ndarray:
        """Crop-space points (..., 2 or 3) back to the image."""
        out = np.array(points, dtype=np.float64)
        out[..., 0] = out[..., 0] / self.scale + self.x0
        out[..., 1] = out[..., 1] / self.scale + self.y0
        if out.shape[-1] > 2:
            out[..., 2:] /= self.scale
        return out

    def box(self) -> tuple[float, float, float, float]:
        return (self.x0, self.y0, self.x0 + self.side, self.y0 + self.side)


def is_crop_side(side: float) -> bool:
    """Whether a square side can be cropped: finite and positive (points that collapse to one place
    or run to NaN give none)."""
    return math.isfinite(side) and side > 0


def crop_square(box) -> tuple[float, float, float]:
    """(x0, y0, side) of the 3DDFA square of a face box (x0, y0, x1, y1), unchecked: a box with no
    area gives a side that ``is_crop_side`` rejects."""
    x0, y0, x1, y1 = (float(v) for v in box)
    old_size = ((x1 - x0) + (y1 - y0)) / 2.0
    cx = (x0 + x1) / 2.0
    cy = (y0 + y1) / 2.0 + CENTER_SHIFT * old_size
    side = SIDE_FACTOR * old_size
    return cx - side / 2.0, cy - side / 2.0, side


def crop_from_box(box, size: int = 120) -> CropTransform:
    """Face box (x0, y0, x1, y1) -> the 3DDFA square crop region; a box with no area is a SiamfaceError."""
    return CropTransform(*crop_square(box), size)


def whole_image_box(size: int) -> tuple[float, float, float, float]:
    """The crop convention inverted: the face box whose 3DDFA crop is the whole size x size image,
    for images that are already face crops (synthetic renders, aligned datasets)."""
    old_size = size / SIDE_FACTOR
    cx, cy = size / 2.0, size / 2.0 - CENTER_SHIFT * old_size
    return (cx - old_size / 2.0, cy - old_size / 2.0, cx + old_size / 2.0, cy + old_size / 2.0)


def landmark_box(points: np.ndarray) -> tuple[float, float, float, float]:
    """Bounding box of 2D points (N, >=2), the box training crops and refinement use."""
    pts = np.asarray(points)[:, :2]
    x0, y0 = pts.min(axis=0)
    x1, y1 = pts.max(axis=0)
    return (float(x0), float(y0), float(x1), float(y1))


def crop_image(image: np.ndarray, transform: CropTransform) -> np.ndarray:
    """Resample the crop region (zero outside the image), bilinear."""
    return cv2.warpAffine(image, transform.matrix(), (transform.size, transform.size),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
