"""The encoder's input and output conventions, defined once for training, export and the device.

Pixels: RGB uint8 scaled (x - 127.5) / 128 before the encoder (the TFLite graph folds this in).
Embeddings: compared by cosine, so every consumer L2-normalises them the same way. Changing either
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
