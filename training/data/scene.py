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


def _value_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    small = rng.uniform(0, 1, size=(cells, cells, 3)).astype(np.float32)
    return cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)


def sample_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Gradients, multi-scale noise textures and clutter shapes, mixed at random."""
    kind = rng.integers(0, 3)
    base = rng.uniform(0, 1, size=3).astype(np.float32)
    if kind == 0:  # linear gradient between two colours
        other = rng.uniform(0, 1, size=3).astype(np.float32)
        angle = rng.uniform(0, 2 * np.pi)
        xs = np.linspace(-1, 1, size, dtype=np.float32)
        t = (np.cos(angle) * xs[None, :] + np.sin(angle) * xs[:, None]) * 0.5 + 0.5
        img = base * (1 - t[..., None]) + other * t[..., None]
    elif kind == 1:  # textured noise
        img = sum(_value_noise(rng, size, c) * w for c, w in ((3, 0.5), (8, 0.3), (24, 0.2)))
        img = img * rng.uniform(0.3, 1.0) + base * rng.uniform(0.0, 0.7)
    else:  # clutter on a flat or noisy base
        img = np.broadcast_to(base, (size, size, 3)).copy() * 0.8 + _value_noise(rng, size, 4) * 0.2
        for _ in range(int(rng.integers(3, 12))):
            colour = tuple(float(c) for c in rng.uniform(0, 1, 3))
            p1 = tuple(int(v) for v in rng.integers(-size // 4, size + size // 4, 2))
            if rng.uniform() < 0.5:
                p2 = tuple(int(v) for v in rng.integers(-size // 4, size + size // 4, 2))
                cv2.rectangle(img, p1, p2, colour, -1 if rng.uniform() < 0.6 else int(rng.integers(1, 4)))
            else:
                cv2.circle(img, p1, int(rng.integers(3, size // 3)), colour, -1)
    return np.clip(img, 0, 1).astype(np.float32)


def add_occluder(img: np.ndarray, rng: np.random.Generator) -> None:
    """A solid or textured shape over part of the face (hand, object, sunglasses-like band)."""
    size = img.shape[0]
    colour = tuple(float(c) for c in rng.uniform(0, 1, 3))
    centre = tuple(int(v) for v in rng.integers(size // 4, 3 * size // 4, 2))
    axes = (int(rng.integers(size // 10, size // 4)), int(rng.integers(size // 12, size // 5)))
    cv2.ellipse(img, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1)


def _gamma_table(gamma: float) -> np.ndarray:
    return (np.linspace(0.0, 1.0, 256) ** gamma * 255 + 0.5).astype(np.uint8)


def degrade(img: np.ndarray, cfg: DegradationConfig, rng: np.random.Generator) -> np.ndarray:
    """Colour jitter, occluder, blur, noise, grayscale and JPEG; returns uint8 RGB."""
    gains = rng.uniform(0.85, 1.15, size=3).astype(np.float32)
    contrast, brightness = rng.uniform(0.75, 1.25), rng.uniform(-0.08, 0.08)
    img = np.clip(img * (gains * np.float32(contrast)) + np.float32(0.5 * (1 - contrast) + brightness), 0, 1)
    gamma = np.float32(rng.uniform(0.8, 1.25))
    if rng.uniform() < cfg.occluder_p:
        add_occluder(img, rng)
    if rng.uniform() < cfg.blur_p:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(*cfg.blur_sigma))
    if rng.uniform() < cfg.noise_p:
        img = img + rng.normal(0, rng.uniform(*cfg.noise_sigma), size=img.shape).astype(np.float32)
    if rng.uniform() < cfg.grayscale_p:
        img = np.repeat(img.mean(axis=2, keepdims=True), 3, axis=2)
    out = cv2.LUT((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8), _gamma_table(gamma))  # gamma per 8-bit level
    if rng.uniform() < cfg.jpeg_p:
        quality = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
        ok, buf = cv2.imencode(".jpg", out[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
        out = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
    return np.ascontiguousarray(out)
