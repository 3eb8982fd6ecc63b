"""Backgrounds that look like places: rooms, outdoors, close-up surfaces and out-of-focus lights,
with depth-of-field blur; plus the first generator's abstract gradients, noise and clutter.

Float32 RGB images in [0, 1]. Colours come from small palettes of what walls, skies, plants,
wood and fabric look like, jittered, so the colour statistics are those of photos rather than of
uniform noise. Everything is a handful of cv2 draws or one vectorised numpy expression on a
cached pixel grid: about 0.1-0.2 ms for a 120-pixel image on one core.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from siamface.training.data.camera_effects import channel_affine

KINDS = ("room", "outdoor", "surface", "bokeh", "abstract")
PLATE_SCALE = 2  # plates are this many times the image side: a view crops 1/PLATE_SCALE to all of one


@dataclass(frozen=True)
class BackgroundConfig:
    """How often each kind of background occurs and how blurred it is."""

    room: float = 0.35      # relative weights of the kinds (need not sum to 1)
    outdoor: float = 0.25
    surface: float = 0.15   # close-up brick, tiles, wood, fabric, plaster
    bokeh: float = 0.15     # out-of-focus lights
    abstract: float = 0.1   # gradients, noise octaves and clutter shapes (the first generator's)
    depth_of_field_p: float = 0.6
    depth_of_field_sigma: tuple[float, float] = (0.6, 3.5)  # pixels in the image
    plates: int = 192       # places drawn once per process (at PLATE_SCALE x the image side) and
    plate_seed: int = 0     # viewed through random crops; uint8, 33 MB for 120-pixel images

    def weights(self) -> np.ndarray:
        w = np.array([getattr(self, k) for k in KINDS], np.float64)
        return w / w.sum()


# Palettes (RGB, 0..1): what the surfaces of places tend to look like.
WALLS = np.array([[0.93, 0.91, 0.86], [0.86, 0.83, 0.76], [0.76, 0.74, 0.71], [0.62, 0.61, 0.60],
                  [0.82, 0.72, 0.57], [0.70, 0.76, 0.72], [0.66, 0.71, 0.79], [0.86, 0.78, 0.70],
                  [0.55, 0.46, 0.39], [0.36, 0.35, 0.36], [0.92, 0.86, 0.70], [0.72, 0.58, 0.55]], np.float32)
WOODS = np.array([[0.55, 0.38, 0.22], [0.40, 0.26, 0.15], [0.70, 0.53, 0.35], [0.30, 0.20, 0.13],
                  [0.78, 0.65, 0.48]], np.float32)
FURNITURE = np.array([[0.25, 0.25, 0.27], [0.45, 0.32, 0.22], [0.60, 0.58, 0.55], [0.20, 0.28, 0.40],
                      [0.50, 0.20, 0.18], [0.30, 0.40, 0.30], [0.80, 0.78, 0.72], [0.12, 0.11, 0.11]], np.float32)
ACCENTS = np.array([[0.75, 0.20, 0.15], [0.20, 0.35, 0.65], [0.85, 0.65, 0.20], [0.25, 0.55, 0.35],
                    [0.55, 0.30, 0.55], [0.90, 0.90, 0.88], [0.10, 0.10, 0.12], [0.60, 0.45, 0.30]], np.float32)
SKY_TOP = np.array([[0.30, 0.50, 0.85], [0.45, 0.62, 0.88], [0.62, 0.66, 0.72], [0.80, 0.82, 0.85],
                    [0.55, 0.45, 0.60], [0.20, 0.25, 0.45]], np.float32)
SKY_HORIZON = np.array([[0.75, 0.85, 0.95], [0.85, 0.88, 0.92], [0.80, 0.80, 0.82], [0.95, 0.75, 0.55],
                        [0.90, 0.90, 0.88]], np.float32)
FOLIAGE = np.array([[0.10, 0.20, 0.08], [0.22, 0.38, 0.15], [0.38, 0.52, 0.22], [0.30, 0.35, 0.15],
                    [0.55, 0.50, 0.25], [0.15, 0.28, 0.20]], np.float32)
GROUNDS = np.array([[0.30, 0.45, 0.20], [0.45, 0.45, 0.43], [0.70, 0.62, 0.48], [0.35, 0.30, 0.25],
                    [0.25, 0.35, 0.45], [0.58, 0.58, 0.56]], np.float32)
BUILDINGS = np.array([[0.80, 0.76, 0.68], [0.60, 0.58, 0.56], [0.62, 0.35, 0.28], [0.88, 0.86, 0.82],
                      [0.45, 0.48, 0.52], [0.75, 0.65, 0.50]], np.float32)
FABRICS = np.array([[0.20, 0.25, 0.45], [0.60, 0.15, 0.15], [0.85, 0.82, 0.75], [0.25, 0.40, 0.30],
                    [0.50, 0.45, 0.40], [0.15, 0.15, 0.15], [0.70, 0.55, 0.30]], np.float32)
LIGHTS = np.array([[1.0, 0.85, 0.60], [1.0, 0.95, 0.85], [1.0, 0.70, 0.40], [0.70, 0.85, 1.0],
                   [1.0, 0.55, 0.45], [0.80, 1.0, 0.80]], np.float32)


def _pick(rng: np.random.Generator, palette: np.ndarray, jitter: float = 0.08) -> np.ndarray:
    """A palette colour with a brightness and per-channel jitter (float32 (3,) in [0, 1])."""
    c = palette[rng.integers(len(palette))] * np.float32(1 + jitter * (3 * rng.random() - 2))
    c += (rng.random(3, np.float32) - np.float32(0.5)) * np.float32(jitter)
    return np.minimum(np.maximum(c, 0, out=c), 1, out=c)


def _tuple(c: np.ndarray) -> tuple[float, float, float]:
    return (float(c[0]), float(c[1]), float(c[2]))


@lru_cache(maxsize=4)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (ys (S, 1), xs (1, S)) in [0, 1), float32, shared: never write to them."""
    t = (np.arange(size, dtype=np.float32) / size)
    return t[:, None], t[None, :]


def _cubic(img: np.ndarray, size: int) -> np.ndarray:
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_CUBIC)


def _upsample(small: np.ndarray, size: int) -> np.ndarray:
    """Bicubic resize to size x size, through a size/5 grid when the source is coarser: cv2's cubic
    upscale by a large factor is several times slower than by 5, and its pixel-centre mapping
    composes exactly, so the two steps put every source value where a direct resize would."""
    mid = size // 5
    return _cubic(_cubic(small, mid) if small.shape[0] < mid else small, size)


def _noise_grid(rng: np.random.Generator, cells: int, channels: int = 3) -> np.ndarray:
    shape = (cells, cells, channels) if channels > 1 else (cells, cells)
    return rng.uniform(0, 1, size=shape).astype(np.float32)


# Octaves of the textured noise: (cells across, weight); summed on the finest grid, then
# upsampled once (see _upsample for why that places each octave as a direct resize would).
NOISE_OCTAVES = ((3, 0.5), (8, 0.3), (24, 0.2))


def _octave_noise(rng: np.random.Generator, size: int, channels: int = 3) -> np.ndarray:
    finest = NOISE_OCTAVES[-1][0]
    grid = sum(_cubic(_noise_grid(rng, c, channels), finest) * np.float32(w) for c, w in NOISE_OCTAVES)
    return _upsample(grid, size)


def _ramp(rng: np.random.Generator, size: int, top: np.ndarray, bottom: np.ndarray, tilt: float = 0.0) -> np.ndarray:
    """Linear blend from ``top`` to ``bottom`` down the image, tilted by ``tilt`` (fraction of the
    height over the width): lighting falling off across a wall, a sky towards its horizon."""
    ys, xs = _grid(size)
    t = ys + np.float32(tilt) * (xs - np.float32(0.5))
    return channel_affine(t, bottom - top, top)


def _shade_rect(img: np.ndarray, x0: int, y0: int, x1: int, y1: int, colour: np.ndarray, rng: np.random.Generator) -> None:
    """A filled rectangle lit from one side (a vertical ramp inside it), clipped to the image."""
    h, w = img.shape[:2]
    xa, xb, ya, yb = max(x0, 0), min(x1, w), max(y0, 0), min(y1, h)
    if xa >= xb or ya >= yb:
        return
    k = np.float32(rng.uniform(-0.25, 0.25))
    t = np.linspace(1 - k, 1 + k, yb - ya, dtype=np.float32)[:, None, None]
    img[ya:yb, xa:xb] = colour * t


def _window(img: np.ndarray, rng: np.random.Generator, box: tuple[int, int, int, int]) -> None:
    """Bright glazing (sky, haze or leaves outside) with a frame and glazing bars."""
    x0, y0, x1, y1 = box
    outside = _pick(rng, SKY_HORIZON if rng.uniform() < 0.7 else FOLIAGE, 0.05)
    _shade_rect(img, x0, y0, x1, y1, np.minimum(outside * np.float32(rng.uniform(1.0, 1.3)), 1), rng)
    frame = _tuple(_pick(rng, WOODS if rng.uniform() < 0.4 else WALLS[:3]))
    t = int(rng.integers(2, 6))
    cv2.rectangle(img, (x0, y0), (x1, y1), frame, t)
    if rng.uniform() < 0.7:
        xm, ym = (x0 + x1) // 2, (y0 + y1) // 2
        cv2.line(img, (xm, y0), (xm, y1), frame, max(1, t - 1))
        if rng.uniform() < 0.5:
            cv2.line(img, (x0, ym), (x1, ym), frame, max(1, t - 1))


def _shelf(img: np.ndarray, rng: np.random.Generator, box: tuple[int, int, int, int]) -> None:
    """Shelves of books: rows of narrow vertical spines of assorted colours and heights."""
    size = img.shape[0]
    x0, y0, x1, y1 = [min(max(int(v), 0), size) for v in box]
    row_h = max(4, int(rng.integers(size // 12, size // 5)))
    if x1 - x0 < 4 or y1 - y0 < row_h:
        return
    wood = _pick(rng, WOODS)
    spines = np.concatenate([ACCENTS, FURNITURE])
    book = (np.arange(x1 - x0) + rng.integers(0, 8)) // rng.integers(1, 4) % 64  # book of each column
    colours = spines[rng.integers(0, len(spines), 64)] * rng.uniform(0.5, 1.0, (64, 1)).astype(np.float32)
    tops = rng.integers(1, max(2, row_h // 3), 64)[book]  # empty rows above each book
    shelf = np.where((np.arange(row_h)[:, None] >= tops[None, :])[..., None], colours[book][None], wood * np.float32(0.5))
    shelf[-max(1, row_h // 8):] = wood
    rows = (y1 - y0) // row_h
    img[y0:y0 + rows * row_h, x0:x1] = np.tile(shelf, (rows, 1, 1))


@lru_cache(maxsize=1)
def _blob() -> np.ndarray:
    """A 33 x 33 Gaussian spot (peak 1), resized to make glows."""
    g = cv2.getGaussianKernel(33, 7.0).astype(np.float32)
    return g @ g.T / (g.max() ** 2)


def _add_glow(img: np.ndarray, centre: tuple[int, int], radius: int, colour: np.ndarray) -> None:
    """Adds a soft Gaussian spot of ``colour`` (clipped to the image)."""
    size = img.shape[0]
    spot = cv2.resize(_blob(), (2 * radius + 1, 2 * radius + 1), interpolation=cv2.INTER_LINEAR)
    x0, y0 = centre[0] - radius, centre[1] - radius
    xa, ya, xb, yb = max(x0, 0), max(y0, 0), min(x0 + 2 * radius + 1, size), min(y0 + 2 * radius + 1, size)
    if xa < xb and ya < yb:
        region = img[ya:yb, xa:xb]
        region += channel_affine(spot[ya - y0:yb - y0, xa - x0:xb - x0], colour, 0)


def _lamp(img: np.ndarray, rng: np.random.Generator, size: int) -> None:
    """A bright source with a warm glow."""
    centre = (int(rng.integers(0, size)), int(rng.integers(-size // 8, size // 2)))
    r = int(rng.integers(size // 30 + 1, size // 10 + 2))
    colour = _pick(rng, LIGHTS, 0.03)
    _add_glow(img, centre, r * 4, colour * np.float32(0.5))
    cv2.circle(img, centre, r, _tuple(np.minimum(colour * 1.2, 1)), -1, cv2.LINE_AA)


def _furniture(img: np.ndarray, rng: np.random.Generator, size: int) -> None:
    """A sofa back, chair or cabinet: a rounded dark block rising from the bottom or a side."""
    colour = _pick(rng, FURNITURE)
    x0 = int(rng.integers(-size // 2, size))
    w = int(rng.integers(size // 4, size))
    top = int(rng.integers(size // 3, size))
    r = int(rng.integers(2, size // 8))
    pts = cv2.ellipse2Poly((x0 + r, top + r), (r, r), 0, 180, 270, 30)
    pts = np.concatenate([pts, cv2.ellipse2Poly((x0 + w - r, top + r), (r, r), 0, 270, 360, 30),
                          [[x0 + w, size + 1], [x0, size + 1]]])
    cv2.fillPoly(img, [pts.astype(np.int32)], _tuple(colour), cv2.LINE_AA)
    cv2.line(img, (x0 + r, top + 1), (x0 + w - r, top + 1), _tuple(np.minimum(colour * 1.3, 1)), 1, cv2.LINE_AA)


def _plant(img: np.ndarray, rng: np.random.Generator, size: int) -> None:
    """A pot plant or a tree in leaf: a cluster of overlapping green discs."""
    cx, cy = rng.integers(0, size), rng.integers(0, size)
    n = int(rng.integers(6, 16))
    spread = rng.uniform(size * 0.05, size * 0.25)
    offsets = rng.normal(0, spread, (n, 2))
    radii = rng.uniform(size * 0.03, size * 0.09, n)
    base = _pick(rng, FOLIAGE)
    for (dx, dy), r, k in zip(offsets.tolist(), radii.tolist(), rng.uniform(0.7, 1.3, n).tolist()):
        cv2.circle(img, (int(cx + dx), int(cy + dy)), int(r), _tuple(np.minimum(base * k, 1)), -1, cv2.LINE_AA)


def _curtain(img: np.ndarray, rng: np.random.Generator, box: tuple[int, int, int, int]) -> None:
    """A hanging curtain: vertical folds as a sinusoidal shading across its width, full height."""
    size = img.shape[0]
    x0, x1 = min(max(box[0], 0), size), min(max(box[2], 0), size)
    if x1 - x0 < 2:
        return
    folds = np.sin(np.arange(x1 - x0, dtype=np.float32) * np.float32(rng.uniform(0.15, 0.5)))
    shade = (np.float32(0.8) + np.float32(0.2) * folds)[None, :, None]
    img[:, x0:x1] = _pick(rng, FABRICS) * shade


def _room(rng: np.random.Generator, size: int) -> np.ndarray:
    """A wall lit unevenly, maybe a floor or ceiling line, and windows, doors, frames, shelves,
    furniture, plants and lamps at the scale of a room a few metres behind the person."""
    wall = _pick(rng, WALLS)
    img = _ramp(rng, size, wall * np.float32(rng.uniform(0.8, 1.1)), wall * np.float32(rng.uniform(0.6, 1.0)),
                rng.uniform(-0.8, 0.8))
    if rng.uniform() < 0.4:  # floor (below) or ceiling (above) meeting the wall
        y = int(rng.uniform(0.55, 0.95) * size) if rng.uniform() < 0.7 else int(rng.uniform(0.02, 0.25) * size)
        other = _pick(rng, WOODS if y > size // 2 else WALLS[:4])
        rows = slice(y, size) if y > size // 2 else slice(0, y)
        img[rows] = img[rows] * np.float32(0.3) + other * np.float32(0.7)
        cv2.line(img, (0, y), (size, y), _tuple(other * 0.7), 1, cv2.LINE_AA)
    for _ in range(int(rng.integers(2, 7))):
        kind = rng.choice(7, p=(0.2, 0.15, 0.17, 0.12, 0.14, 0.12, 0.1))
        x0, y0 = rng.integers(-size // 3, size, 2)
        w, h = rng.integers(size // 5, size, 2)
        box = (int(x0), int(y0), int(x0 + w), int(y0 + h * 1.4))
        if kind == 0:
            _window(img, rng, box)
        elif kind == 1:  # door or cupboard: a darker panel in a frame
            _shade_rect(img, *box, _pick(rng, WOODS if rng.uniform() < 0.6 else WALLS), rng)
            cv2.rectangle(img, box[:2], box[2:], _tuple(_pick(rng, WALLS[:3])), int(rng.integers(2, 5)))
        elif kind == 2:  # picture frame with something in it
            frame = _tuple(_pick(rng, WOODS if rng.uniform() < 0.5 else FURNITURE))
            inner = _ramp(rng, size, _pick(rng, ACCENTS), _pick(rng, np.concatenate([WALLS, ACCENTS])), rng.uniform(-2, 2))
            x0, y0, x1, y1 = [min(max(int(v), 0), size) for v in box]
            img[y0:y1, x0:x1] = inner[y0:y1, x0:x1]
            cv2.rectangle(img, box[:2], box[2:], frame, int(rng.integers(1, 4)))
        elif kind == 3:
            _shelf(img, rng, box)
        elif kind == 4:
            _furniture(img, rng, size)
        elif kind == 5:
            _plant(img, rng, size)
        else:
            _curtain(img, rng, box)
    if rng.uniform() < 0.25:
        _lamp(img, rng, size)
    return img


def _foliage(rng: np.random.Generator, size: int) -> np.ndarray:
    """Leaves: multi-scale noise mapped onto a dark-to-light green ramp."""
    n = _octave_noise(rng, size, channels=1)
    dark, light = _pick(rng, FOLIAGE[:2]), _pick(rng, FOLIAGE[2:])
    return channel_affine(n * np.float32(1.6) - np.float32(0.3), light - dark, dark)


def _buildings(img: np.ndarray, rng: np.random.Generator, horizon: int, size: int) -> None:
    """Facades rising from the horizon with a grid of windows."""
    ys, xs = _grid(size)
    x = int(rng.integers(-size // 2, size // 3))
    while x < size:
        w = int(rng.integers(size // 5, size * 2 // 3))
        top = int(rng.integers(-size // 2, max(1, horizon - size // 8)))
        colour = _pick(rng, BUILDINGS)
        xa, xb = max(x, 0), min(x + w, size)
        if xa < xb and top < horizon:
            ya = max(top, 0)
            img[ya:horizon, xa:xb] = colour
            period = rng.uniform(0.05, 0.14)
            gx = (xs[:, xa:xb] * np.float32(1 / period)) % 1 < np.float32(rng.uniform(0.35, 0.65))
            gy = (ys[ya:horizon] * np.float32(1 / period / rng.uniform(0.8, 1.4))) % 1 < np.float32(rng.uniform(0.4, 0.7))
            glass = _pick(rng, np.concatenate([SKY_TOP[:3], FURNITURE[:1]]))
            block = img[ya:horizon, xa:xb]
            block[gx & gy] = glass
        x += w + int(rng.integers(0, size // 6))


def _outdoor(rng: np.random.Generator, size: int) -> np.ndarray:
    """Sky graded towards a hazy horizon, maybe clouds, then trees, buildings or open ground."""
    horizon = int(rng.uniform(0.35, 1.1) * size)
    top, low = _pick(rng, SKY_TOP, 0.05), _pick(rng, SKY_HORIZON, 0.04)
    img = _ramp(rng, size, top, low, rng.uniform(-0.2, 0.2))
    if rng.uniform() < 0.5:  # clouds: soft thresholded noise
        clouds = np.clip(_octave_noise(rng, size, channels=1) * np.float32(2.5) - np.float32(1.2), 0, 1)
        img = cv2.blendLinear(img, np.full_like(img, 0.95), 1 - clouds, clouds)
    scene = rng.choice(3, p=(0.45, 0.35, 0.2))
    h = min(max(horizon, 0), size)
    if scene == 0:  # tree line with an uneven top
        leaves = _foliage(rng, size)
        hills = cv2.resize(_noise_grid(rng, 6, 1)[:1], (size, 1), interpolation=cv2.INTER_CUBIC)[0]
        crowns = np.abs(np.sin(np.arange(size, dtype=np.float32) * np.float32(rng.uniform(0.05, 0.2)) + hills * 9))
        edge = horizon - (np.abs(hills - 0.5) * rng.uniform(0.3, 1.2) + crowns * rng.uniform(0.02, 0.08)) * size
        mask = np.arange(size, dtype=np.float32)[:, None] > edge[None, :] - size * 0.3
        cv2.copyTo(leaves, mask.view(np.uint8), img)
    elif scene == 1:
        _buildings(img, rng, h, size)
    if h < size:  # ground: grass, paving, sand, water
        ground = _pick(rng, GROUNDS)
        texture = _octave_noise(rng, size, channels=1)[h:, :, None] * np.float32(0.4) + np.float32(0.8)
        img[h:] = ground * texture
    return img


def _bricks(rng: np.random.Generator, size: int) -> np.ndarray:
    ys, xs = _grid(size)
    bh = np.float32(rng.uniform(0.06, 0.16))
    bw = bh * np.float32(rng.uniform(2.0, 3.2))
    row = np.floor(ys / bh)
    xo = xs / bw + (row % 2) * np.float32(0.5)
    col = np.floor(xo)
    mortar = (ys / bh - row < np.float32(0.12)) | (xo - col < np.float32(0.06))
    shade = np.sin(row * np.float32(12.9898) + col * np.float32(78.233)) * np.float32(43758.5)
    shade = shade - np.floor(shade)  # per-brick pseudo-random in [0, 1)
    brick, joint = _pick(rng, np.array([[0.62, 0.30, 0.22], [0.70, 0.45, 0.32], [0.55, 0.50, 0.45],
                                        [0.80, 0.72, 0.60]], np.float32)), _pick(rng, WALLS[:4])
    img = channel_affine(shade * np.float32(0.35) + np.float32(0.8), brick, 0)
    img[mortar] = joint
    return img


def _tiles(rng: np.random.Generator, size: int) -> np.ndarray:
    ys, xs = _grid(size)
    period = np.float32(rng.uniform(0.08, 0.3))
    fx, fy = (xs / period) % 1, (ys / period) % 1
    grout = (fx < 0.05) | (fy < 0.05)
    base = _pick(rng, np.concatenate([WALLS, ACCENTS[:3]]))
    img = channel_affine(np.float32(0.9) + np.float32(0.15) * (fx + fy) * np.float32(0.5), base, 0)
    img[grout] = _pick(rng, WALLS[2:4])
    return img


def _wood(rng: np.random.Generator, size: int) -> np.ndarray:
    ys, xs = _grid(size)
    warp = _upsample(_noise_grid(rng, 5, 1), size)
    freq = np.float32(rng.uniform(20, 60))
    grain = np.sin((ys + warp * np.float32(rng.uniform(0.1, 0.4))) * freq + xs * np.float32(rng.uniform(-3, 3)))
    planks = np.floor(xs / np.float32(rng.uniform(0.15, 0.5)))
    tone = np.float32(0.85) + np.float32(0.12) * grain + np.float32(0.08) * np.sin(planks * np.float32(7.1))
    img = channel_affine(tone, _pick(rng, WOODS), 0)
    return img if rng.uniform() < 0.5 else np.ascontiguousarray(img.transpose(1, 0, 2))


def _fabric(rng: np.random.Generator, size: int) -> np.ndarray:
    """Woven cloth or plaid: fine crossing threads, sometimes wide coloured bands."""
    ys, xs = _grid(size)
    f = np.float32(rng.uniform(60, 180))
    weave = np.sin(xs * f) * np.sin(ys * f) * np.float32(0.08) + np.float32(0.95)
    img = channel_affine(weave, _pick(rng, FABRICS), 0)
    if rng.uniform() < 0.5:  # plaid bands
        period = np.float32(rng.uniform(0.15, 0.4))
        width = np.float32(rng.uniform(0.08, 0.25))
        band = (((xs / period) % 1 < width).astype(np.float32) + ((ys / period) % 1 < width)) * np.float32(0.3)
        img = cv2.blendLinear(img, np.broadcast_to(_pick(rng, ACCENTS), img.shape).copy(), 1 - band, band)
    return img


def _plaster(rng: np.random.Generator, size: int) -> np.ndarray:
    return channel_affine(_octave_noise(rng, size, channels=1), np.float32(rng.uniform(0.1, 0.3)) * _pick(rng, WALLS),
                          _pick(rng, WALLS) * np.float32(0.85))


SURFACES = (_bricks, _tiles, _wood, _fabric, _plaster)


def _surface(rng: np.random.Generator, size: int) -> np.ndarray:
    """A close surface behind the head, sometimes seen at an angle (a perspective warp)."""
    img = SURFACES[rng.integers(len(SURFACES))](rng, size)
    if rng.uniform() < 0.5:
        src = np.float32([[0, 0], [size, 0], [size, size], [0, size]])
        dst = src + rng.uniform(-0.25, 0.25, (4, 2)).astype(np.float32) * size
        img = cv2.warpPerspective(img, cv2.getPerspectiveTransform(src, dst), (size, size),
                                  flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    k = np.float32(rng.uniform(-0.3, 0.3))
    return img * _ramp(rng, size, np.full(3, 1 - k, np.float32), np.full(3, 1 + k, np.float32), rng.uniform(-1, 1))


NIGHT = np.array([[0.05, 0.06, 0.12], [0.15, 0.10, 0.08], [0.10, 0.12, 0.10], [0.30, 0.22, 0.15],
                  [0.02, 0.02, 0.03], [0.35, 0.35, 0.40]], np.float32)


def _bokeh(rng: np.random.Generator, size: int) -> np.ndarray:
    """Night street or party lights far out of focus: a dim graded scene with bright soft discs."""
    base = _ramp(rng, size, _pick(rng, NIGHT, 0.05), _pick(rng, NIGHT, 0.05), rng.uniform(-1.5, 1.5))
    lights = np.zeros_like(base)
    n = int(rng.integers(5, 30))
    centres = rng.integers(-size // 10, size + size // 10, (n, 2)).tolist()
    radii = rng.uniform(size * 0.02, size * 0.11, n).tolist()
    palette = LIGHTS[rng.choice(len(LIGHTS), 2)]
    picks, strengths = rng.integers(0, 2, n).tolist(), rng.uniform(0.2, 0.8, n).tolist()
    for (x, y), r, k, s in zip(centres, radii, picks, strengths):
        cv2.circle(lights, (x, y), int(r), _tuple(palette[k] * s), -1, cv2.LINE_AA)
    cv2.add(base, cv2.GaussianBlur(lights, (0, 0), 0.8), dst=base)
    return base


def _abstract(rng: np.random.Generator, size: int) -> np.ndarray:
    """The first generator's backgrounds: a two-colour gradient, noise octaves or clutter shapes."""
    kind = rng.integers(0, 3)
    base = rng.uniform(0, 1, size=3).astype(np.float32)
    if kind == 0:  # linear gradient between two colours
        other = rng.uniform(0, 1, size=3).astype(np.float32)
        angle = rng.uniform(0, 2 * np.pi)
        xs = np.linspace(-0.5, 0.5, size, dtype=np.float32)
        t = np.float32(np.cos(angle)) * xs[None, :] + np.float32(np.sin(angle)) * xs[:, None]
        return channel_affine(t, other - base, (base + other) * np.float32(0.5))
    if kind == 1:  # textured noise
        img = _octave_noise(rng, size)
        return channel_affine(img, rng.uniform(0.3, 1.0), base * np.float32(rng.uniform(0.0, 0.7)))
    img = channel_affine(_upsample(_noise_grid(rng, 4), size), 0.2, base * np.float32(0.8))
    _draw_clutter(img, rng, int(rng.integers(3, 12)))
    return img


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


DRAW = {"room": _room, "outdoor": _outdoor, "surface": _surface, "bokeh": _bokeh, "abstract": _abstract}


def draw_plate(rng: np.random.Generator, side: int, cfg: BackgroundConfig) -> np.ndarray:
    """One place of a kind drawn by ``cfg``'s weights: float32 (side, side, 3) in [0, 1]."""
    img = DRAW[KINDS[rng.choice(len(KINDS), p=cfg.weights())]](rng, side)
    return np.clip(img, 0, 1, out=img)


_PLATES: dict[tuple[BackgroundConfig, int], list[np.ndarray | None]] = {}


def plate(cfg: BackgroundConfig, side: int, index: int) -> np.ndarray:
    """Plate ``index`` of the set ``cfg`` describes, uint8 (side, side, 3), drawn on first use
    from its own seed and kept for the life of the process (the same in every worker)."""
    plates = _PLATES.setdefault((cfg, side), [None] * cfg.plates)
    if plates[index] is None:
        img = draw_plate(np.random.default_rng([cfg.plate_seed, index]), side, cfg)
        plates[index] = cv2.convertScaleAbs(img, alpha=255)
    return plates[index]


def draw_background(rng: np.random.Generator, size: int, cfg: BackgroundConfig) -> np.ndarray:
    """A random view of a random plate: a square crop of 1/PLATE_SCALE to all of it, maybe
    mirrored, with the brightness and colour of its own photo, maybe out of focus (float32
    (size, size, 3) in [0, 1], owned by the caller).

    A strongly blurred view is resampled to half resolution, blurred and upsampled: the blur
    removes what the lower resolution loses, for a quarter of the work.
    """
    side = size * PLATE_SCALE
    src = plate(cfg, side, int(rng.integers(cfg.plates)))
    crop = int(side * rng.uniform(1 / PLATE_SCALE, 1.0))
    x0, y0 = rng.integers(0, side - crop + 1, 2)
    flip = rng.uniform() < 0.5
    sigma = rng.uniform(*cfg.depth_of_field_sigma) if rng.uniform() < cfg.depth_of_field_p else 0.0
    work = size // 2 if sigma >= 1.5 else size
    # Bilinear (a shrink of at most PLATE_SCALE): cv2's area resampling is 10 times slower here.
    view = cv2.resize(src[y0:y0 + crop, x0:x0 + crop], (work, work), interpolation=cv2.INTER_LINEAR)
    if flip:
        view = cv2.flip(view, 1)
    gains = rng.uniform(0.7, 1.15) * rng.uniform(0.93, 1.07, 3) / 255
    img = channel_affine(view, gains.astype(np.float32), 0)
    if sigma:
        img = cv2.GaussianBlur(img, (0, 0), sigma * work / size)
    if work != size:
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR)
    return np.clip(img, 0, 1, out=img)
