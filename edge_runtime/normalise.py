"""The encoder's input and output conventions, defined once for training, export and the device.

Pixels: RGB uint8 scaled (x - 127.5) / 128 before the encoder (the TFLite graph folds this in).
Embeddings: compared by cosine, so every consumer L2-normalises them the same way; a bundle whose
``embedding.flip`` is true fuses each face's embedding with its mirror image's (``fuse_mirrored``,
the usual test-time flip of face recognition), and one whose ``embedding.shape_weight`` is above 0
appends the face's 3D shape code (``identity_vector``). Changing a rule here changes it for the
training pipeline, the exported graph, the parity check and every predictor together.
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


def identity_vector(embedding: np.ndarray, shape_code: np.ndarray, shape_weight: float,
                    texture: np.ndarray | None = None, texture_weight: float = 0.0) -> np.ndarray:
    """The vector a face is identified by: the unit embedding, the unit identity shape code (the
    face model's identity coefficients) and, for a bundle with a texture identity model, its unit
    texture embedding (edge_runtime.texture_identity), scaled by the square roots of their shares
    (1 - w_shape - w_texture, w_shape, w_texture) and joined, so the cosine of two such vectors is
    the shares' mix of the parts' cosines. The embedding tells synthetic people apart by skin tone,
    hair and beard, the shape code by face shape and the texture by the skin itself, seen the same
    way in every pose (docs/results.md); together they verify better than any alone. Shares of 0
    return the unit embedding unchanged (bundles before them). Rows of (N, D) work too."""
    if shape_weight <= 0.0 and texture_weight <= 0.0:
        return l2_normalize(embedding)
    parts = ((1.0 - shape_weight - texture_weight, embedding), (shape_weight, shape_code), (texture_weight, texture))
    return np.concatenate([np.sqrt(w) * l2_normalize(part) for w, part in parts if w > 1e-9], axis=-1)
