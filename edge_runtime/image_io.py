"""Read photos for the device: one RGB uint8 layout whatever the file holds, clear errors otherwise.

Grayscale, palette, 16-bit and RGBA files are converted to 8-bit RGB (alpha dropped). Nothing is
decoded before it is known to fit: the file size is checked with ``fstat`` (``max_file_bytes()``,
256 MiB or ``$SIAMFACE_MAX_FILE_BYTES``) and the width and height are read from the header of every
format we accept (JPEG by walking its segments, PNG, WebP, TIFF by its first IFD, BMP) and checked
against ``max_pixels()`` (80 MP or ``$SIAMFACE_MAX_PIXELS``). Other formats OpenCV could decode are
refused rather than decoded blind. Headers are parsed here, not with Pillow: Pillow is no device
dependency, and its WebP open allocates the canvas before its own size check.
"""
from __future__ import annotations

import io
import os
import struct
from pathlib import Path
from typing import BinaryIO, Callable

import cv2
import numpy as np

from .errors import SiamfaceError

# The one list of photo suffixes (folders expand to these; data import and evaluation list the same).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
FORMATS = "JPEG/PNG/BMP/WebP/TIFF"
MAX_PIXELS = 80_000_000  # larger photos are refused rather than risking the device's memory
MAX_PIXELS_ENV = "SIAMFACE_MAX_PIXELS"
MAX_FILE_BYTES = 256 * 2**20  # an 80 MP photo is ~30 MB as JPEG, ~240 MB as an uncompressed TIFF
MAX_FILE_BYTES_ENV = "SIAMFACE_MAX_FILE_BYTES"
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_JPEG_MAX_STEPS = 4096  # markers and fill bytes walked before the frame header; real files need < 50
_TIFF_MAX_ENTRIES = 4096


def _env_limit(name: str, default: int, unit: str) -> int:
    text = os.environ.get(name)
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise SiamfaceError(f"{name}={text!r} must be a positive whole number of {unit}")
    return value


def max_pixels() -> int:
    """The pixel limit: ``$SIAMFACE_MAX_PIXELS`` if set (a device with little memory lowers it), else 80 MP."""
    return _env_limit(MAX_PIXELS_ENV, MAX_PIXELS, "pixels")


def max_file_bytes() -> int:
    """The file-size limit: ``$SIAMFACE_MAX_FILE_BYTES`` if set, else 256 MiB."""
    return _env_limit(MAX_FILE_BYTES_ENV, MAX_FILE_BYTES, "bytes")


def _read_at(f: BinaryIO, offset: int, n: int) -> bytes:
    f.seek(offset)
    return f.read(n)


def _png_size(f: BinaryIO) -> tuple[int, int] | None:
    chunk = _read_at(f, 8, 16)
    if len(chunk) < 16 or chunk[4:8] != b"IHDR":
        return None
    return struct.unpack(">II", chunk[8:16])


def _jpeg_size(f: BinaryIO) -> tuple[int, int] | None:
    """Walk the segments (seeking over their payloads) to the first frame header, wherever it sits."""
    f.seek(2)
    for _ in range(_JPEG_MAX_STEPS):
        prefix = f.read(2)
        if len(prefix) < 2 or prefix[0] != 0xFF:
            return None
        marker = prefix[1]
        if marker == 0xFF:  # fill byte: the marker follows
            f.seek(-1, io.SEEK_CUR)
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            continue
        if marker in (0xD9, 0xDA):  # end of image or scan data before any frame header
            return None
        segment = f.read(7)
        if len(segment) < 2:
            return None
        length = struct.unpack(">H", segment[:2])[0]
        if length < 2:
            return None
        if marker in _JPEG_SOF:
            if len(segment) < 7:
                return None
            height, width = struct.unpack(">HH", segment[3:7])
            return width, height
        f.seek(length - 2 - (len(segment) - 2), io.SEEK_CUR)
    return None


def _webp_size(f: BinaryIO) -> tuple[int, int] | None:
    head = _read_at(f, 12, 18)  # first chunk: fourcc, size, 10 bytes of its payload
    if len(head) < 18:
        return None
    kind, data = head[:4], head[8:]
    if kind == b"VP8 " and data[3:6] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", data[6:10])
        return width & 0x3FFF, height & 0x3FFF
    if kind == b"VP8L" and data[0] == 0x2F:
        bits = struct.unpack("<I", data[1:5])[0]
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if kind == b"VP8X":  # extended: the canvas holds every frame
        return int.from_bytes(data[4:7], "little") + 1, int.from_bytes(data[7:10], "little") + 1
    return None


def _tiff_size(f: BinaryIO) -> tuple[int, int] | None:
    """ImageWidth (256) and ImageLength (257) from the first IFD (the page OpenCV decodes); BigTIFF too."""
    head = _read_at(f, 0, 16)
    endian = "<" if head[:2] == b"II" else ">"
    magic = struct.unpack(endian + "H", head[2:4])[0]
    if magic == 42 and len(head) >= 8:
        offset, count_fmt, entry_size, value_fmts = struct.unpack(endian + "I", head[4:8])[0], "H", 12, {3: "H", 4: "I"}
    elif magic == 43 and len(head) == 16:  # BigTIFF: 8-byte offsets and counts, 20-byte entries
        offset, count_fmt, entry_size, value_fmts = struct.unpack(endian + "Q", head[8:16])[0], "Q", 20, {3: "H", 4: "I", 16: "Q"}
    else:
        return None
    count_bytes = struct.calcsize(count_fmt)
    raw = _read_at(f, offset, count_bytes)
    if len(raw) < count_bytes:
        return None
    count = min(struct.unpack(endian + count_fmt, raw)[0], _TIFF_MAX_ENTRIES)
    entries = f.read(count * entry_size)
    tags = {}
    for i in range(0, len(entries) - entry_size + 1, entry_size):
        tag, kind = struct.unpack(endian + "HH", entries[i:i + 4])
        if tag in (256, 257) and kind in value_fmts:
            value_at = i + (8 if entry_size == 12 else 12)  # after tag, type and the 4- or 8-byte count
            fmt = endian + value_fmts[kind]
            tags[tag] = struct.unpack(fmt, entries[value_at:value_at + struct.calcsize(fmt)])[0]
    if 256 not in tags or 257 not in tags:
        return None
    return tags[256], tags[257]


def _bmp_size(f: BinaryIO) -> tuple[int, int] | None:
    head = _read_at(f, 14, 12)
    if len(head) < 8:
        return None
    if struct.unpack("<I", head[:4])[0] == 12:  # OS/2 core header: 16-bit sizes
        return struct.unpack("<HH", head[4:8])
    if len(head) < 12:
        return None
    width, height = struct.unpack("<ii", head[4:12])
    return abs(width), abs(height)  # negative height: rows stored top-down


def image_format(head: bytes) -> tuple[str, Callable[[BinaryIO], tuple[int, int] | None]] | None:
    """(name, header reader) of the format the first 16 bytes announce; None for formats we do not read."""
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG", _png_size
    if head[:3] == b"\xff\xd8\xff":
        return "JPEG", _jpeg_size
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP", _webp_size
    if head[:4] in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"):
        return "TIFF", _tiff_size
    if head[:2] == b"BM":
        return "BMP", _bmp_size
    return None


def header_size(source: bytes | BinaryIO) -> tuple[int, int] | None:
    """(width, height) from a JPEG/PNG/BMP/WebP/TIFF header without decoding; None for other or
    damaged files. A file object is read only where the header sits (JPEG segments are seeked over)."""
    f = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
    found = image_format(_read_at(f, 0, 16))
    return found[1](f) if found else None


def _check_size(path: Path, width: int, height: int) -> None:
    limit = max_pixels()
    if width * height > limit:
        raise SiamfaceError(f"{path} is {width}x{height} = {width * height} pixels, over the limit of {limit}; "
                            f"downscale it first (or raise {MAX_PIXELS_ENV})")


def _checked_bytes(path: Path) -> np.ndarray:
    """The file's bytes, read only once its size, format and dimensions are known to be acceptable."""
    try:
        with open(path, "rb") as f:
            size, limit = os.fstat(f.fileno()).st_size, max_file_bytes()
            if size == 0:
                raise SiamfaceError(f"{path} is empty; pass a {FORMATS} photo")
            if size > limit:
                raise SiamfaceError(f"{path} is {size} bytes, over the file-size limit of {limit}; downscale or "
                                    f"recompress it (or raise {MAX_FILE_BYTES_ENV})")
            found = image_format(_read_at(f, 0, 16))
            if found is None:
                raise SiamfaceError(f"{path} is not a readable image (not a {FORMATS} file); pass a photo")
            dims = found[1](f)
            if dims is None:
                raise SiamfaceError(f"{path} is not a readable image (its {found[0]} header is damaged or "
                                    f"truncated); pass an undamaged photo")
            _check_size(path, *dims)
            data = _read_at(f, 0, size)  # at most what fstat said, even if the file grows meanwhile
    except OSError as exc:
        raise SiamfaceError(f"{path} cannot be read ({exc.strerror or exc}); check its permissions") from None
    return np.frombuffer(data, np.uint8)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """RGB uint8 (H, W, 3) from an image file."""
    path = Path(path)
    if not path.exists():
        raise SiamfaceError(f"image not found: {path}; check the path")
    if not path.is_file():
        raise SiamfaceError(f"{path} is not a regular file; pass a {FORMATS} photo")
    image = cv2.imdecode(_checked_bytes(path), cv2.IMREAD_COLOR)
    if image is None:
        raise SiamfaceError(f"{path} is not a readable image (corrupt or not {FORMATS}); pass a photo")
    _check_size(path, image.shape[1], image.shape[0])
    return np.ascontiguousarray(image[..., ::-1])
