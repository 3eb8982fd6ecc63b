"""Photos are sized from their headers before anything is decoded, for every format we accept;
oversized, overlong, unknown and damaged files are one-line SiamfaceErrors. Each bad file is built here."""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from siamface.edge_runtime.errors import SiamfaceError
from siamface.edge_runtime.image_io import (
    IMAGE_SUFFIXES,
    MAX_FILE_BYTES_ENV,
    MAX_PIXELS_ENV,
    header_size,
    read_image,
)

WIDTH, HEIGHT = 53, 37
HUGE = 60000  # 60000 x 60000 = 3.6 GP: 10.8 GB decoded


def _photo() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (HEIGHT, WIDTH, 3), np.uint8)


def _encode(suffix: str, *params: int) -> bytes:
    ok, buf = cv2.imencode(suffix, _photo(), list(params))
    assert ok
    return buf.tobytes()


def _jpeg_with_late_sof(width: int | None = None, height: int | None = None) -> bytes:
    """A real JPEG with two 64 KiB comment segments before its frame header (which then sits past
    128 KiB); optionally with the frame header's size replaced."""
    data = bytearray(_encode(".jpg"))
    sof = data.index(b"\xff\xc0")
    if width is not None:
        data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    comment = b"\xff\xfe" + struct.pack(">H", 65535) + b"x" * 65533
    return bytes(data[:2] + comment * 2 + data[2:])


def _png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    idat = zlib.compress(b"\0" * 4096)
    return b"\x89PNG\r\n\x1a\n" + chunk + struct.pack(">I", len(idat)) + b"IDAT" + idat


def _webp(chunk: bytes, payload: bytes) -> bytes:
    body = b"WEBP" + chunk + struct.pack("<I", len(payload)) + payload + b"\0" * 64
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _webp_vp8x(width: int, height: int) -> bytes:
    return _webp(b"VP8X", b"\0\0\0\0" + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little"))


def _webp_vp8l(width: int, height: int) -> bytes:
    return _webp(b"VP8L", b"\x2f" + struct.pack("<I", (width - 1) | (height - 1) << 14) + b"\0" * 16)


def _webp_vp8(width: int, height: int) -> bytes:
    return _webp(b"VP8 ", b"\x10\x02\x00\x9d\x01\x2a" + struct.pack("<HH", width, height) + b"\0" * 16)


def _tiff(width: int, height: int, endian: str = "<", big: bool = False) -> bytes:
    """A TIFF (or BigTIFF) whose first IFD declares ``width`` x ``height`` (LONG width, SHORT height)
    and a few pixel bytes: what a bomb looks like."""
    order = b"II" if endian == "<" else b"MM"
    if big:
        head = order + struct.pack(endian + "HHHQ", 43, 8, 0, 16)
        entries = [struct.pack(endian + "HHQQ", 256, 4, 1, width),
                   struct.pack(endian + "HHQ", 257, 3, 1) + struct.pack(endian + "H", height) + b"\0" * 6]
        ifd = struct.pack(endian + "Q", len(entries)) + b"".join(entries) + struct.pack(endian + "Q", 0)
    else:
        head = order + struct.pack(endian + "HI", 42, 8)
        entries = [struct.pack(endian + "HHII", 256, 4, 1, width),
                   struct.pack(endian + "HHI", 257, 3, 1) + struct.pack(endian + "H", height) + b"\0\0"]
        ifd = struct.pack(endian + "H", len(entries)) + b"".join(entries) + struct.pack(endian + "I", 0)
    return head + ifd + b"\0" * 800


def _bmp_header(width: int, height: int) -> bytes:
    dib = struct.pack("<IiiHHIIiiII", 40, width, -height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + len(dib) + 64, 0, 0, 14 + len(dib)) + dib + b"\0" * 64


BOMBS = {
    "late_sof.jpg": _jpeg_with_late_sof(HUGE, HUGE),
    "bomb.png": _png_header(HUGE, HUGE),
    "vp8x.webp": _webp_vp8x(HUGE, HUGE),
    "vp8l.webp": _webp_vp8l(16384, 16384),
    "vp8.webp": _webp_vp8(16383, 16383),
    "little.tif": _tiff(HUGE, HUGE, "<"),
    "big_endian.tiff": _tiff(HUGE, HUGE, ">"),
    "bigtiff.tif": _tiff(HUGE, HUGE, "<", big=True),
    "bomb.bmp": _bmp_header(HUGE, HUGE),
}


def test_header_size_of_every_format_opencv_writes_and_of_hand_made_headers():
    encoded = {"jpg": _encode(".jpg"), "png": _encode(".png"), "bmp": _encode(".bmp"), "tif": _encode(".tif"),
               "lossy webp": _encode(".webp", cv2.IMWRITE_WEBP_QUALITY, 80),
               "lossless webp": _encode(".webp", cv2.IMWRITE_WEBP_QUALITY, 101),
               "late sof": _jpeg_with_late_sof()}
    for name, data in encoded.items():
        assert header_size(data) == (WIDTH, HEIGHT), name
    assert len(encoded["late sof"]) > 2 * 65536 > encoded["late sof"].index(b"\xff\xc0") - 2 * 65536 >= 0
    for build in (_png_header, _webp_vp8x, _webp_vp8l, _webp_vp8, _tiff, _bmp_header):
        assert header_size(build(300, 200)) == (300, 200), build.__name__
    assert header_size(_tiff(300, 200, ">")) == header_size(_tiff(300, 200, big=True)) == (300, 200)


def test_every_listed_suffix_reads_as_rgb(tmp_path):
    for suffix in sorted(IMAGE_SUFFIXES):
        path = tmp_path / f"photo{suffix}"
        assert cv2.imwrite(str(path), _photo(), [cv2.IMWRITE_WEBP_QUALITY, 101] if suffix == ".webp" else [])
        assert (read_image(path) == _photo()[..., ::-1]).all() or suffix in (".jpg", ".jpeg"), suffix
        assert read_image(path).shape == (HEIGHT, WIDTH, 3)


def test_one_suffix_list_for_the_device_and_data_import():
    from siamface.edge_runtime import cli
    from siamface.training.data import real_formats

    assert cli.IMAGE_SUFFIXES is IMAGE_SUFFIXES and real_formats.IMAGE_SUFFIXES is IMAGE_SUFFIXES
    assert {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"} == IMAGE_SUFFIXES


# Reads every bomb under an address-space limit 700 MB above what the interpreter already uses: a
# decode of any of them (>= 0.8 GB of pixels) could not happen, so the refusal came from the header.
BOUNDED_READER = """
import json, resource, sys
from siamface.edge_runtime.errors import SiamfaceError
from siamface.edge_runtime.image_io import read_image
used = int(next(l for l in open("/proc/self/status") if l.startswith("VmSize")).split()[1]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (used + 700 * 2**20, resource.RLIM_INFINITY))
out = {}
for path in sys.argv[1:]:
    try:
        out[path] = "read " + str(read_image(path).shape)
    except SiamfaceError as exc:
        out[path] = str(exc)
print(json.dumps(out))
"""


def test_bombs_of_every_format_are_refused_from_their_header_within_bounded_memory(tmp_path):
    paths = []
    for name, data in BOMBS.items():
        (tmp_path / name).write_bytes(data)
        paths.append(str(tmp_path / name))
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    env.pop(MAX_PIXELS_ENV, None)
    result = subprocess.run([sys.executable, "-c", BOUNDED_READER, *paths], capture_output=True, text=True,
                            env=env, timeout=60, cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr[-2000:]
    messages = json.loads(result.stdout)
    for path in paths:
        size = {"vp8l.webp": 16384, "vp8.webp": 16383}.get(Path(path).name, HUGE)
        assert messages[path] == (f"{path} is {size}x{size} = {size * size} pixels, over the limit of 80000000; "
                                  f"downscale it first (or raise {MAX_PIXELS_ENV})")
    assert max(len(d) for d in BOMBS.values()) < 140_000  # small files, gigapixel claims


def test_late_frame_header_is_found_and_the_lowered_limit_applies(tmp_path, monkeypatch):
    path = tmp_path / "late.jpg"
    path.write_bytes(_jpeg_with_late_sof())
    assert read_image(path).shape == (HEIGHT, WIDTH, 3)
    monkeypatch.setenv(MAX_PIXELS_ENV, str(WIDTH * HEIGHT - 1))
    with pytest.raises(SiamfaceError, match=rf"late.jpg is {WIDTH}x{HEIGHT} = {WIDTH * HEIGHT} pixels, over the limit"):
        read_image(path)


def test_file_size_is_capped_before_reading(tmp_path, monkeypatch):
    """A 3 GB file (sparse: no disk used) is refused from fstat alone; the cap follows the env var."""
    huge = tmp_path / "huge.jpg"
    with open(huge, "wb") as f:
        f.write(_encode(".jpg"))
        f.truncate(3 * 2**30)
    with pytest.raises(SiamfaceError, match=r"huge.jpg is 3221225472 bytes, over the file-size limit of 268435456; "
                                            r"downscale or recompress it \(or raise SIAMFACE_MAX_FILE_BYTES\)"):
        read_image(huge)
    small = tmp_path / "small.png"
    small.write_bytes(_encode(".png"))
    monkeypatch.setenv(MAX_FILE_BYTES_ENV, str(small.stat().st_size))
    assert read_image(small).shape == (HEIGHT, WIDTH, 3)
    monkeypatch.setenv(MAX_FILE_BYTES_ENV, str(small.stat().st_size - 1))
    with pytest.raises(SiamfaceError, match="small.png is .* bytes, over the file-size limit"):
        read_image(small)
    monkeypatch.setenv(MAX_FILE_BYTES_ENV, "-5")
    with pytest.raises(SiamfaceError, match="SIAMFACE_MAX_FILE_BYTES='-5' must be a positive whole number of bytes"):
        read_image(small)


def test_unknown_damaged_and_odd_paths_are_one_line_errors(tmp_path):
    cases = {
        "anim.gif": (b"GIF89a" + struct.pack("<HH", HUGE, HUGE) + b"\0" * 64, "is not a readable image (not a JPEG/PNG"),
        "cut.png": (_encode(".png")[:14], "is not a readable image (its PNG header is damaged or truncated)"),
        "no_frame.jpg": (b"\xff\xd8\xff\xe0\x00\x04ab\xff\xda\x00\x02" + b"\0" * 32, "its JPEG header is damaged"),
        "cut.tif": (_tiff(10, 10)[:12], "its TIFF header is damaged"),
        "garbled.jpg": (_encode(".jpg")[:300], "is not a readable image (corrupt or not JPEG"),
        "empty.png": (b"", "is empty"),
    }
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "folder.jpg").mkdir()
    (tmp_path / "dangling.jpg").symlink_to(tmp_path / "gone.jpg")
    cases.update({"folder.jpg": (None, "is not a regular file"), "dangling.jpg": (None, "image not found")})
    for name, (_, message) in cases.items():
        with pytest.raises(SiamfaceError) as info:
            read_image(tmp_path / name)
        assert message in str(info.value) and name in str(info.value) and "\n" not in str(info.value), name
