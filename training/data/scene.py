"""Backgrounds behind and degradations over synthetic faces (float RGB images in [0, 1])."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class DegradationConfig:
    """Probabilities and ranges of what real photos do to a face."""

    blur_p: float = 0.3
    blur_sigma: tuple[float, float] = (0.3, 1.5)
    noise_p: float = 0.4
    noise_sigma: tuple[float, float] = (0.005, 0.035)
    jpeg_p: float = 0.5
    jpeg_quality: tuple[int, int] = (30, 95)
    occluder_p: float = 0.1
    grayscale_p: float = 0.05


_EYE3 = np.eye(3, dtype=np.float32)


def channel_affine(img: np.ndarray, scale, offset) -> np.ndarray:
    """``img * scale + offset`` per channel into a new float32 (H, W, 3) image; ``img`` is
    (H, W, 3) or (H, W) (then copied to three channels), scale and offset scalars or (3,).

    One cv2.transform pass: numpy's broadcasting over a trailing axis of 3 is several times slower
    (and cv2.transform from one channel to three takes its slow generic path, hence the merge).
    """
    img = np.ascontiguousarray(img, np.float32)
    if img.ndim == 2:
        img = cv2.merge([img, img, img])
    m = np.empty((3, 4), np.float32)
    m[:, :3] = _EYE3 * np.asarray(scale, np.float32)  # diag(scale)
    m[:, 3] = offset
    return cv2.transform(img, m)


def _cubic(img: np.ndarray, size: int) -> np.ndarray:
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_CUBIC)


def _upsample(small: np.ndarray, size: int) -> np.ndarray:
    """Bicubic resize to size x size, through a size/5 grid when the source is coarser: cv2's cubic
    upscale by a large factor is several times slower than by 5, and its pixel-centre mapping
    composes exactly, so the two steps put every source value where a direct resize would."""
    mid = size // 5
    return _cubic(_cubic(small, mid) if small.shape[0] < mid else small, size)


def _noise_grid(rng: np.random.Generator, cells: int) -> np.ndarray:
    return rng.uniform(0, 1, size=(cells, cells, 3)).astype(np.float32)


# Octaves of the textured background: (cells across, weight); summed on the finest grid, then
# upsampled once (see _upsample for why that places each octave as a direct resize would).
NOISE_OCTAVES = ((3, 0.5), (8, 0.3), (24, 0.2))


def _octave_noise(rng: np.random.Generator, size: int) -> np.ndarray:
    finest = NOISE_OCTAVES[-1][0]
    grid = sum(_cubic(_noise_grid(rng, c), finest) * np.float32(w) for c, w in NOISE_OCTAVES)
    return _upsample(grid, size)


def _draw_clutter(img: np.ndarray, rng: np.random.Generator, n: int) -> None:
    """n shapes, each a rectangle (60 % filled, else a 1-3 px outline) or a filled circle, with
    equal odds; their parameters drawn in one batch (per-shape draws cost more than the drawing)."""
    size = img.shape[0]
    colours = rng.uniform(0, 1, (n, 3)).tolist()
    points = rng.integers(-size // 4, size + size // 4, (n, 4)).tolist()
    is_rect, filled = (rng.uniform(size=(2, n)) < np.array([[0.5], [0.6]])).tolist()
    thickness, radius = rng.integers(1, 4, n).tolist(), rng.integers(3, size // 3, n).tolist()
    for i in range(n):
        x1, y1, x2, y2 = points[i]
        if is_rect[i]:
            cv2.rectangle(img, (x1, y1), (x2, y2), colours[i], -1 if filled[i] else thickness[i])
        else:
            cv2.circle(img, (x1, y1), radius[i], colours[i], -1)


def sample_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Gradients, multi-scale noise textures and clutter shapes, mixed at random (float32, owned)."""
    kind = rng.integers(0, 3)
    base = rng.uniform(0, 1, size=3).astype(np.float32)
    if kind == 0:  # linear gradient between two colours
        other = rng.uniform(0, 1, size=3).astype(np.float32)
        angle = rng.uniform(0, 2 * np.pi)
        xs = np.linspace(-0.5, 0.5, size, dtype=np.float32)
        t = np.float32(np.cos(angle)) * xs[None, :] + np.float32(np.sin(angle)) * xs[:, None]
        img = channel_affine(t, other - base, (base + other) * np.float32(0.5))  # base + (other - base) * (t + 1/2)
    elif kind == 1:  # textured noise
        img = _octave_noise(rng, size)
        img = channel_affine(img, rng.uniform(0.3, 1.0), base * np.float32(rng.uniform(0.0, 0.7)))
    else:  # clutter on a flat or noisy base
        img = channel_affine(_upsample(_noise_grid(rng, 4), size), 0.2, base * np.float32(0.8))
        _draw_clutter(img, rng, int(rng.integers(3, 12)))
    return np.clip(img, 0, 1, out=img)


def add_occluder(img: np.ndarray, rng: np.random.Generator) -> None:
    """A solid or textured shape over part of the face (hand, object, sunglasses-like band)."""
    size = img.shape[0]
    colour = tuple(float(c) for c in rng.uniform(0, 1, 3))
    centre = tuple(int(v) for v in rng.integers(size // 4, 3 * size // 4, 2))
    axes = (int(rng.integers(size // 10, size // 4)), int(rng.integers(size // 12, size // 5)))
    cv2.ellipse(img, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1)


_LEVELS = np.linspace(0.0, 1.0, 256)


def _gamma_table(gamma: float) -> np.ndarray:
    return (_LEVELS ** gamma * 255 + 0.5).astype(np.uint8)


def gaussian_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """N(0, sigma^2) float32 samples from OpenCV's generator (about 4 times faster than numpy's
    normal on an image), which it re-seeds from ``rng``: deterministic for a seed."""
    noise = np.empty(shape, np.float32)
    cv2.setRNGSeed(int(rng.integers(0, 2**31)))
    cv2.randn(noise.reshape(-1, 1), 0.0, float(sigma))  # one channel: a scalar sigma applies to all
    return noise


def degrade(img: np.ndarray, cfg: DegradationConfig, rng: np.random.Generator) -> np.ndarray:
    """Colour jitter, occluder, blur, noise, grayscale and JPEG; returns uint8 RGB."""
    gains = rng.uniform(0.85, 1.15, size=3).astype(np.float32)
    contrast, brightness = rng.uniform(0.75, 1.25), rng.uniform(-0.08, 0.08)
    img = channel_affine(img, gains * np.float32(contrast), 0.5 * (1 - contrast) + brightness)  # a new image
    np.clip(img, 0, 1, out=img)
    gamma = np.float32(rng.uniform(0.8, 1.25))
    if rng.uniform() < cfg.occluder_p:
        add_occluder(img, rng)
    if rng.uniform() < cfg.blur_p:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(*cfg.blur_sigma))
    if rng.uniform() < cfg.noise_p:
        img += gaussian_noise(rng, img.shape, rng.uniform(*cfg.noise_sigma))
    if rng.uniform() < cfg.grayscale_p:
        img = cv2.transform(img, np.full((3, 3), 1 / 3, np.float32))  # channel mean in all three
    np.clip(img, 0, 1, out=img)
    out = cv2.LUT(cv2.convertScaleAbs(img, alpha=255), _gamma_table(gamma))  # rounds; gamma per 8-bit level
    if rng.uniform() < cfg.jpeg_p:
        quality = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(out, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
        out = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return out
