"""What a camera does to a scene: optics blur, exposure, white balance, sensor noise, resolution
and JPEG, applied to float RGB images in [0, 1] and returned as uint8.

Every effect has its own probability; an effect whose probability is 0 draws nothing from the
generator, so a config with all the newer effects at 0 reproduces the first generator's pixels
(colour jitter, occluder, Gaussian blur, Gaussian noise, grayscale, gamma, JPEG) exactly.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class DegradationConfig:
    """Probabilities and ranges of what real cameras and photos do to a face."""

    blur_p: float = 0.2                                  # Gaussian blur (soft focus, resampling)
    blur_sigma: tuple[float, float] = (0.3, 1.5)
    noise_p: float = 0.1                                 # signal-independent Gaussian noise (sensor noise below)
    noise_sigma: tuple[float, float] = (0.005, 0.035)
    jpeg_p: float = 0.6
    jpeg_quality: tuple[int, int] = (30, 95)
    occluder_p: float = 0.0                              # a random-colour ellipse (the first generator's
                                                         # occluder; scene accessories replace it)
    grayscale_p: float = 0.05
    motion_blur_p: float = 0.08                          # camera shake: a line kernel at a random angle
    motion_blur_length: tuple[float, float] = (3.0, 9.0)  # pixels
    defocus_p: float = 0.1                               # out of focus: a disk kernel
    defocus_radius: tuple[float, float] = (1.0, 2.5)     # pixels
    exposure_p: float = 0.35                             # under/over exposure, clipped at white
    exposure_stops: tuple[float, float] = (-1.2, 0.8)
    white_balance_p: float = 0.4                         # warm/cool cast and green/magenta tint
    white_balance_shift: float = 0.15                    # largest gain change of red/blue (and half for green)
    sensor_noise_p: float = 0.3                          # shot + read noise, amplified in dark exposures
    read_noise: tuple[float, float] = (0.002, 0.01)
    shot_noise: tuple[float, float] = (0.0005, 0.005)    # variance per unit of signal
    max_gain: float = 2.0                                # how far a camera lifts a dark exposure (ISO)
    low_resolution_p: float = 0.15                       # a small face upscaled: down, JPEG, then up
    low_resolution_scale: tuple[float, float] = (0.25, 0.6)


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


def gaussian_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """N(0, sigma^2) float32 samples from OpenCV's generator (about 4 times faster than numpy's
    normal on an image), which it re-seeds from ``rng``: deterministic for a seed."""
    noise = np.empty(shape, np.float32)
    cv2.setRNGSeed(int(rng.integers(0, 2**31)))
    cv2.randn(noise.reshape(-1, 1), 0.0, float(sigma))  # one channel: a scalar sigma applies to all
    return noise


def add_occluder(img: np.ndarray, rng: np.random.Generator) -> None:
    """A random-colour ellipse over part of the face (the first generator's stand-in occluder)."""
    size = img.shape[0]
    colour = tuple(float(c) for c in rng.uniform(0, 1, 3))
    centre = tuple(int(v) for v in rng.integers(size // 4, 3 * size // 4, 2))
    axes = (int(rng.integers(size // 10, size // 4)), int(rng.integers(size // 12, size // 5)))
    cv2.ellipse(img, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1)


def _chance(rng: np.random.Generator, p: float) -> bool:
    """rng.uniform() < p, drawing nothing when p <= 0 (so disabled effects keep older streams)."""
    return p > 0 and rng.uniform() < p


def motion_kernel(length: float, angle: float) -> np.ndarray:
    """Normalised anti-aliased line of ``length`` pixels through the centre at ``angle`` radians."""
    half = int(np.ceil(length / 2))
    k = np.zeros((2 * half + 1, 2 * half + 1), np.float32)
    dx, dy = np.cos(angle) * length / 2, np.sin(angle) * length / 2
    p0 = (int(round((half - dx) * 16)), int(round((half - dy) * 16)))
    p1 = (int(round((half + dx) * 16)), int(round((half + dy) * 16)))
    cv2.line(k, p0, p1, 1.0, 1, cv2.LINE_AA, 4)  # end points in 1/16 pixels
    return k / k.sum()


def disk_kernel(radius: float) -> np.ndarray:
    """Normalised anti-aliased disk (the blur of a lens focused elsewhere)."""
    half = int(np.ceil(radius))
    k = np.zeros((2 * half + 1, 2 * half + 1), np.float32)
    cv2.circle(k, (half * 16, half * 16), int(round(radius * 16)), 1.0, -1, cv2.LINE_AA, 4)
    return k / k.sum()


def _sensor_noise(img: np.ndarray, rng: np.random.Generator, cfg: DegradationConfig, gain: float) -> None:
    """Adds noise of variance read^2 + shot * signal, times the gain a dark exposure was lifted by."""
    read, shot = rng.uniform(*cfg.read_noise), rng.uniform(*cfg.shot_noise)
    sigma = cv2.sqrt(np.maximum(img, 0) * np.float32(shot * gain * gain) + np.float32(read * read * gain * gain))
    img += sigma * gaussian_noise(rng, img.shape, 1.0)


def _white_balance(rng: np.random.Generator, shift: float) -> np.ndarray:
    """Per-channel gains of a wrong white balance: warm/cool along red-blue, a smaller green tint."""
    t, g = rng.uniform(-shift, shift), rng.uniform(-shift / 2, shift / 2)
    return np.array([1 + t, 1 + g, 1 - t], np.float32)


_LEVELS = np.linspace(0.0, 1.0, 256)


def _gamma_table(gamma: float) -> np.ndarray:
    return (_LEVELS ** gamma * 255 + 0.5).astype(np.uint8)


def _jpeg(out: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(out, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def degrade(img: np.ndarray, cfg: DegradationConfig, rng: np.random.Generator) -> np.ndarray:
    """Colour jitter, exposure, white balance, occluder, optics blur, sensor noise, grayscale,
    gamma, low resolution and JPEG; returns uint8 RGB of the input's shape (the input is kept)."""
    gains = rng.uniform(0.85, 1.15, size=3).astype(np.float32)
    contrast, brightness = rng.uniform(0.75, 1.25), rng.uniform(-0.08, 0.08)
    exposure = 2.0 ** rng.uniform(*cfg.exposure_stops) if _chance(rng, cfg.exposure_p) else 1.0
    if _chance(rng, cfg.white_balance_p):
        gains = gains * _white_balance(rng, cfg.white_balance_shift)
    img = channel_affine(img, gains * np.float32(contrast * exposure), 0.5 * (1 - contrast) + brightness)
    np.clip(img, 0, 1, out=img)  # over-exposure clips here
    gamma = np.float32(rng.uniform(0.8, 1.25))
    if _chance(rng, cfg.occluder_p):
        add_occluder(img, rng)
    if _chance(rng, cfg.defocus_p):
        img = cv2.filter2D(img, -1, disk_kernel(rng.uniform(*cfg.defocus_radius)), borderType=cv2.BORDER_REFLECT)
    if _chance(rng, cfg.motion_blur_p):
        kernel = motion_kernel(rng.uniform(*cfg.motion_blur_length), rng.uniform(0, np.pi))
        img = cv2.filter2D(img, -1, kernel, borderType=cv2.BORDER_REFLECT)
    if rng.uniform() < cfg.blur_p:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(*cfg.blur_sigma))
    if _chance(rng, cfg.sensor_noise_p):
        _sensor_noise(img, rng, cfg, min(max(1.0, 1.0 / exposure), cfg.max_gain))  # a dark exposure's gain
    if rng.uniform() < cfg.noise_p:
        img += gaussian_noise(rng, img.shape, rng.uniform(*cfg.noise_sigma))
    if rng.uniform() < cfg.grayscale_p:
        img = cv2.transform(img, np.full((3, 3), 1 / 3, np.float32))  # channel mean in all three
    np.clip(img, 0, 1, out=img)
    out = cv2.LUT(cv2.convertScaleAbs(img, alpha=255), _gamma_table(gamma))  # rounds; gamma per 8-bit level
    size = out.shape[1::-1]
    small = None
    if _chance(rng, cfg.low_resolution_p):
        side = max(8, int(round(out.shape[0] * rng.uniform(*cfg.low_resolution_scale))))
        small = (max(8, int(round(side * out.shape[1] / out.shape[0]))), side)
        out = cv2.resize(out, small, interpolation=cv2.INTER_AREA)
    if rng.uniform() < cfg.jpeg_p:
        out = _jpeg(out, int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1)))
    if small is not None:
        out = cv2.resize(out, size, interpolation=cv2.INTER_LINEAR)
    return out
