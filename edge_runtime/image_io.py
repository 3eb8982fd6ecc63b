"""Read photos for the device: one RGB uint8 layout whatever the file holds, clear errors otherwise.

Grayscale, palette, 16-bit and RGBA files are converted to 8-bit RGB (alpha dropped).
Photos over ``max_pixels()`` (80 MP, or ``$SIAMFACE_MAX_PIXELS``) are refused; for PNG and
JPEG the size is read from the header, so an oversized file is refused before it is decoded.
"""
from __future__ import annotations

import os
import struct
from pathlib import Path

import cv2
import numpy as np

from edge_runtime.errors import SiamfaceError

MAX_PIXELS = 80_000_000  # larger photos are refused rather than risking the device's memory
MAX_PIXELS_ENV = "SIAMFACE_MAX_PIXELS"
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def max_pixels() -> int:
    """The pixel limit: ``$SIAMFACE_MAX_PIXELS`` if set (a device with little memory lowers it), else 80 MP."""
    text = os.environ.get(MAX_PIXELS_ENV)
    if not text:
        return MAX_PIXELS
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise SiamfaceError(f"{MAX_PIXELS_ENV}={text!r} must be a positive whole number of pixels")
    return value


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG or JPEG header without decoding; None for other or damaged files."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD9:  # markers without a length
            i += 2
            continue
        length = struct.unpack(">H", data[i + 2:i + 4])[0]
        if marker in _JPEG_SOF and i + 9 <= len(data):
            height, width = struct.unpack(">HH", data[i + 5:i + 9])
            return width, height
        i += 2 + length
    return None


def _check_size(path: Path, width: int, height: int) -> None:
    limit = max_pixels()
    if width * height > limit:
        raise SiamfaceError(f"{path} is {width}x{height} = {width * height} pixels, over the limit of {limit}; "
                            f"downscale it first (or raise {MAX_PIXELS_ENV})")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """RGB uint8 (H, W, 3) from an image file."""
    path = Path(path)
    if not path.is_file():
        raise SiamfaceError(f"image not found: {path}; check the path")
    try:
        data = np.fromfile(path, np.uint8)
    except OSError as exc:
        raise SiamfaceError(f"{path} cannot be read ({exc.strerror or exc}); check its permissions") from None
    if data.size == 0:
        raise SiamfaceError(f"{path} is empty; pass a JPEG/PNG/BMP/WebP/TIFF photo")
    size = header_size(data[:65536].tobytes())
    if size is not None:
        _check_size(path, *size)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        raise SiamfaceError(f"{path} is not a readable image (corrupt or not JPEG/PNG/BMP/WebP/TIFF); pass a photo")
    _check_size(path, image.shape[1], image.shape[0])
    return np.ascontiguousarray(image[..., ::-1])
