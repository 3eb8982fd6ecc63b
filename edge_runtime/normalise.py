"""The encoder's input and output conventions, defined once for training, export and the device.

Pixels: RGB uint8 scaled (x - 127.5) / 128 before the encoder (the TFLite graph folds this in).
Embeddings: compared by cosine, so every consumer L2-normalises them the same way; a bundle whose
``embedding.flip`` is true fuses each face's embedding with its mirror image's (``fuse_mirrored``,
the usual test-time flip of face recognition). Changing either
rule here changes it for the training pipeline, the exported graph, the parity check and every
predictor together.
"""
from __future__ import annotations

from typing import TypeVar

import numpy as np

PIXEL_MEAN, PIXEL_SCALE = 127.5, 128.0
PIXEL_NORMALISATION = f"(x - {PIXEL_MEAN}) / {PIXEL_SCALE:g}"  # how bundles and checkpoints describe it
_MIN_NORM = 1e-12  # a zero vector stays zero instead of becoming NaN

T = TypeVar("T")


def normalise_pixels(pixels: T) -> T:
    """(x - 127.5) / 128 of float pixels; plain arithmetic, so numpy arrays and TF tensors alike."""
    return (pixels - PIXEL_MEAN) / PIXEL_SCALE


def l2_normalize(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """``x`` scaled to unit L2 norm along ``axis`` (float64; all-zero vectors stay zero)."""
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=axis, keepdims=True), _MIN_NORM)


def mirror(pixels: np.ndarray) -> np.ndarray:
    """Crops (..., H, W, C) flipped left to right: the same face, seen in a mirror."""
    return np.ascontiguousarray(np.asarray(pixels)[..., ::-1, :])


def fuse_mirrored(embedding: np.ndarray, mirrored: np.ndarray) -> np.ndarray:
    """The unit mean of a face's embedding and its mirror image's (each normalised first): what
    does not depend on which way the face is turned or lit is kept, the rest averages out. On the
    shipped model it lowered the synthetic held-out EER 29.5 -> 27.3 % (docs/results.md)."""
    return l2_normalize(l2_normalize(embedding) + l2_normalize(mirrored))
