"""Read photos for the device: one RGB uint8 layout whatever the file holds, clear errors otherwise.

Grayscale, palette, 16-bit and RGBA files are converted to 8-bit RGB (alpha dropped).
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from edge_runtime.errors import SiamfaceError

MAX_PIXELS = 80_000_000  # larger photos are refused rather than risking the device's memory


def read_image(path: str | os.PathLike) -> np.ndarray:
    """RGB uint8 (H, W, 3) from an image file."""
    path = Path(path)
    if not path.is_file():
        raise SiamfaceError(f"image not found: {path}; check the path")
    data = np.fromfile(path, np.uint8)
    if data.size == 0:
        raise SiamfaceError(f"{path} is empty; pass a JPEG/PNG/BMP/WebP/TIFF photo")
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        raise SiamfaceError(f"{path} is not a readable image (corrupt or not JPEG/PNG/BMP/WebP/TIFF); pass a photo")
    if image.shape[0] * image.shape[1] > MAX_PIXELS:
        raise SiamfaceError(f"{path} is {image.shape[1]}x{image.shape[0]} pixels, over {MAX_PIXELS // 1_000_000} MP; "
                            f"downscale it first")
    return np.ascontiguousarray(image[..., ::-1])
