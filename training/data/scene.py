"""Everything around and in front of a rendered head: the place behind, the person's hair and
clothes, what they wear or hold over the face, and what the camera does to the photo.

The renderer calls, per image: ``sample_background`` (the place), ``draw_behind`` (before the
head: another person at the crop's edge), rasterizes the head, ``draw_front`` (clothes, hair,
mask, glasses, hat, hand, microphone), then ``degrade`` (the camera). What belongs to the person
(the hair style and colour) is a ``HairStyle`` drawn once per identity; what belongs to the
moment (clothes, accessories, the hair of the day, place and camera) is drawn per image from
the generator passed in. Nothing here moves a label: the vertices and landmarks are only read.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING

import cv2
import numba
import numpy as np

from siamface.training.data.accessories import (CHECKS, CLOTH, HAIR, OPENING, SOLID, STRIPES, HeadFrame, ShellCanvas,
                                       draw_edge_face, draw_face_mask, draw_glasses, draw_hand, draw_hat,
                                       draw_microphone, skin_colour)
from siamface.training.data.backgrounds import BackgroundConfig, draw_background
from siamface.training.data.camera_effects import DegradationConfig, add_occluder, channel_affine, degrade, gaussian_noise

if TYPE_CHECKING:
    from siamface.training.data.sampling import PinholeCamera

__all__ = ["SceneConfig", "SceneContext", "HairStyle", "sample_hair_style", "sample_background", "draw_behind",
           "draw_front", "degrade", "DegradationConfig", "BackgroundConfig", "channel_affine", "gaussian_noise",
           "add_occluder"]

HAIR_KINDS = ("bald", "buzz", "short", "medium", "long")


@dataclass(frozen=True)
class SceneConfig:
    """Probabilities and ranges of the scene around a face (YAML-friendly: plain types, nested
    dataclasses). Hair kinds are relative weights per identity; the rest is per image."""

    background: BackgroundConfig = field(default_factory=BackgroundConfig)
    degradation: DegradationConfig = field(default_factory=DegradationConfig)
    # Hair, per identity
    bald_p: float = 0.06
    buzz_p: float = 0.1
    short_p: float = 0.36
    medium_p: float = 0.2
    long_p: float = 0.28
    fringe_p: float = 0.3
    curly_p: float = 0.15
    receding_p: float = 0.12
    hair_volume: tuple[float, float] = (0.04, 0.28)  # stand-off from the scalp, fraction of the head's half-width
    # Hair of the day, per image
    hair_volume_jitter: float = 0.15                 # volume times U(1 - j, 1 + j)
    tied_p: float = 0.2                              # long or medium hair tied back
    flyaway_p: float = 0.3                           # loose strands at the outline
    # Clothes, per image
    turtleneck_p: float = 0.07
    v_neck_p: float = 0.25
    jacket_p: float = 0.2
    pattern_p: float = 0.3                           # stripes or checks instead of a plain colour
    # Occluders and accessories, per image
    glasses_p: float = 0.2
    tinted_p: float = 0.25                           # of glasses: sunglasses
    reflection_p: float = 0.3                        # of glasses: a sheen across the lenses
    hat_p: float = 0.08
    mask_p: float = 0.05
    hand_p: float = 0.06
    microphone_p: float = 0.04
    edge_face_p: float = 0.08


@dataclass(frozen=True)
class HairStyle:
    """A person's hair, drawn once per identity. Lengths are in head units (the cranium's
    half-width, about 8 cm), measured down from the brow line."""

    kind: str                               # one of HAIR_KINDS
    colour: tuple[float, float, float]      # RGB in [0, 1]
    length: float                           # how far the back and sides fall: 0.8 nape .. 4.5 chest
    volume: float                           # stand-off from the scalp
    hairline: float                         # forehead hairline above the brows (0.55 usual, 1.1 receded)
    fringe: float                           # 0 none, else the share of the forehead it covers (1: to the brows)
    sweep: float                            # fringe and parting to one side: -1 .. 1
    curl: float                             # 0 straight .. 1 tight curls
    opening: float                          # long hair: half-angle (radians) of the opening round the face
    crown: float                            # 0 full head of hair .. 1 bald on top with a ring round the back
    opacity: float                          # below 1: the scalp shows through (buzz cuts)


def sample_hair_style(rng: np.random.Generator, colour: np.ndarray, cfg: SceneConfig | None = None) -> HairStyle:
    """One person's hair: a kind drawn by cfg's weights, then its shape; ``colour`` (3,) comes
    from the person's look (the texture helper's hair colour)."""
    cfg = cfg or SceneConfig()
    weights = np.array([cfg.bald_p, cfg.buzz_p, cfg.short_p, cfg.medium_p, cfg.long_p], np.float64)
    kind = HAIR_KINDS[rng.choice(len(HAIR_KINDS), p=weights / weights.sum())]
    curly = rng.uniform() < cfg.curly_p
    volume = rng.uniform(*cfg.hair_volume) * (1.6 if curly else 1.0)
    length = {"bald": 0.8, "buzz": 0.8, "short": rng.uniform(0.7, 1.1), "medium": rng.uniform(1.3, 2.2),
              "long": rng.uniform(2.4, 4.5)}[kind]
    receded = rng.uniform() < cfg.receding_p
    fringe = rng.uniform(0.35, 1.0) if kind in ("short", "medium", "long") and rng.uniform() < cfg.fringe_p else 0.0
    return HairStyle(
        kind=kind, colour=tuple(float(c) for c in np.clip(colour, 0, 1)), length=float(length),
        volume=float(0.015 if kind == "buzz" else volume * (0.5 if kind == "bald" else 1.0)),
        hairline=float(rng.uniform(0.5, 0.75) + (rng.uniform(0.2, 0.5) if receded else 0.0)),
        fringe=float(fringe), sweep=float(rng.uniform(-1, 1) if rng.uniform() < 0.6 else 0.0),
        curl=float(rng.uniform(0.4, 1.0) if curly else rng.uniform(0.0, 0.15)),
        opening=float(rng.uniform(0.8, 1.25)), crown=float(rng.uniform(0.75, 1.05) if kind == "bald" else 0.0),
        opacity=float(rng.uniform(0.55, 0.85) if kind == "buzz" else 1.0))


@dataclass
class SceneContext:
    """What the scene needs to know about the rendered head of one image (read only)."""

    size: int
    verts: np.ndarray                      # (V, 3) float32 image space: x right, y down, pixels, z larger farther
    landmarks: np.ndarray                  # (68, 3) float32, same space, iBUG 68 order
    angles: tuple[float, float, float]     # yaw, pitch, roll in radians (edge_runtime.camera conventions)
    zbuf: np.ndarray | None                # (size, size) float32 depth of the head, inf where empty; None before it
    region_vertices: dict[str, np.ndarray]  # region name -> vertex indices (needs "face" and "head_neck")
    hair: HairStyle
    light: np.ndarray | None = None        # (3,) towards the key light, camera axes (x right, y down, z away);
                                           # None: drawn here
    camera: PinholeCamera | None = None    # the renderer's perspective camera; None: the weak-perspective
                                           # camera of the angles


def sample_background(rng: np.random.Generator, size: int, cfg: SceneConfig | None = None) -> np.ndarray:
    """A place behind the person (float32 (size, size, 3) in [0, 1], owned by the caller)."""
    return draw_background(rng, size, (cfg or SceneConfig()).background)


def draw_behind(image: np.ndarray, ctx: SceneContext, cfg: SceneConfig, rng: np.random.Generator) -> None:
    """In place, before the head is rasterized: what is behind the person (someone else at the
    crop's edge). Clothes and hair are drawn in ``draw_front`` against the head's z-buffer: the
    render mesh has a neck and shoulder base that the clothes must cover and the chin must not."""
    if rng.uniform() < cfg.edge_face_p:
        draw_edge_face(image, rng)


def draw_front(image: np.ndarray, ctx: SceneContext, cfg: SceneConfig, rng: np.random.Generator) -> None:
    """In place, after the head: clothes below the neck, a face mask, hair, a hat, glasses, a hand
    and a microphone, each part hidden where the head (or an earlier part) is nearer."""
    frame = _frame(ctx)
    canvas = ShellCanvas.new(ctx.size, ctx.zbuf, _light(ctx, rng))
    torso = _draw_clothes(canvas, frame, cfg, rng)
    hat = rng.uniform() < cfg.hat_p
    hair = ctx.hair
    volume = hair.volume * rng.uniform(1 - cfg.hair_volume_jitter, 1 + cfg.hair_volume_jitter)
    if hat:
        volume = min(volume, 0.1)
    tied = hair.kind in ("medium", "long") and rng.uniform() < cfg.tied_p
    hair_grid = _draw_hair(canvas, frame, torso, hair, volume, tied, rng)
    if hat:
        draw_hat(canvas, frame, rng, 1.0 + volume + 0.05)
    if rng.uniform() < cfg.mask_p:
        draw_face_mask(image, ctx.landmarks, rng)
    canvas.composite(image)
    if hair_grid is not None and rng.uniform() < cfg.flyaway_p:
        _flyaways(image, canvas.zbuf, canvas.head, frame, hair, hair_grid, rng)
    if rng.uniform() < cfg.glasses_p:
        draw_glasses(image, frame, canvas.zbuf, rng, cfg.tinted_p, cfg.reflection_p)
    occluders = rng.uniform(size=2) < (cfg.hand_p, cfg.microphone_p)
    if occluders.any():
        skin = skin_colour(image, ctx.landmarks)
        if occluders[1]:
            draw_microphone(image, ctx.landmarks, skin, rng)
        if occluders[0]:
            draw_hand(image, ctx.landmarks, skin, rng)


def _frame(ctx: SceneContext) -> HeadFrame:
    skull = np.concatenate([ctx.region_vertices["face"][::7], ctx.region_vertices["head_neck"][::5]])
    return HeadFrame.fit(ctx.verts, ctx.landmarks, ctx.angles, skull, ctx.camera)


def _light(ctx: SceneContext, rng: np.random.Generator) -> np.ndarray:
    """Towards the light (x right, y down, z away from the lens): the renderer's key light, or one
    from the camera's side and above."""
    if ctx.light is not None:
        d = np.asarray(ctx.light, np.float64)
    else:
        d = np.array([rng.uniform(-0.7, 0.7), rng.uniform(-0.9, 0.1), -1.0])
    return (d / np.linalg.norm(d)).astype(np.float32)


@lru_cache(maxsize=8)
def _azimuths(cols: int) -> np.ndarray:
    """Column azimuths round the head, half a step off the nose (shared: never write to it)."""
    return (np.arange(cols, dtype=np.float32) + np.float32(0.5)) * np.float32(2 * np.pi / cols) - np.float32(np.pi)


# ---------------------------------------------------------------------------------------------
# Clothes

@dataclass(frozen=True)
class Torso:
    """The upper body under the head as elliptic rings in the head frame (U): the ring t head
    units below the neck's top has half-width and half-depth growing from the collar's to the
    shoulders' (``torso_ring``). ``params``: top y, centre x, centre z, unit (pixels), collar
    half-width and half-depth, shoulder half-width and half-depth (head units), drop to the
    shoulders (head units)."""

    params: np.ndarray  # float32 (9,)

    @classmethod
    def of(cls, frame: HeadFrame, rng: np.random.Generator) -> "Torso":
        u = frame.unit
        collar, shoulder, depth, drop = rng.uniform((0.85, 2.1, 1.2, 1.0), (0.98, 2.6, 1.4, 1.3))
        return cls(np.array([frame.landmarks[8, 1] - 0.15 * u, frame.centre[0], frame.centre[2] - 0.35 * u, u,
                             collar, collar * 0.85, shoulder, depth, drop], np.float32))


@numba.njit(cache=True, fastmath=True, inline="always")
def torso_ring(p, t):
    """(half-width, half-depth) in pixels of the torso ``p`` at t head units below the neck's top."""
    q = 1.0 - min(max(t / p[8], 0.0), 1.0)
    k = 1.0 - q * q
    return (p[4] + (p[6] - p[4]) * k) * p[3], (p[5] + (p[7] - p[5]) * k) * p[3]


@numba.njit(cache=True, fastmath=True)
def _torso_grid(p, azimuths, collar, bottom, out, uv):
    """Rows from each column's collar line down to ``bottom`` (head units), denser near the top."""
    rows, cols = out.shape[0], out.shape[1]
    for c in range(cols):
        sa, ca = np.sin(azimuths[c]), np.cos(azimuths[c])
        for r in range(rows):
            f = r / (rows - 1)
            t = collar[c] + (bottom - collar[c]) * f * f ** 0.6
            w, d = torso_ring(p, t)
            out[r, c, 0] = p[1] + w * sa
            out[r, c, 1] = p[0] - t * p[3]
            out[r, c, 2] = p[2] + d * ca
            uv[r, c, 0] = azimuths[c] / np.pi
            uv[r, c, 1] = t


def _draw_clothes(canvas: ShellCanvas, frame: HeadFrame, cfg: SceneConfig, rng: np.random.Generator) -> Torso:
    """A top (t-shirt, sweater, shirt or jacket over a shirt) from the neck down: the collar line
    dips at the front (more for a V-neck), a turtleneck rises up the neck."""
    torso = Torso.of(frame, rng)
    cols, rows = 24, 9
    az = _azimuths(cols)
    front = np.maximum(np.cos(az), 0)
    if rng.uniform() < cfg.turtleneck_p:
        collar = np.full(cols, -rng.uniform(0.3, 0.6))
    else:
        back = rng.uniform(0.0, 0.25)
        dip = rng.uniform(0.5, 1.1) * np.maximum(1 - np.abs(az) / 0.6, 0) if rng.uniform() < cfg.v_neck_p else \
            rng.uniform(0.1, 0.35) * front ** 2
        collar = back + dip
    pts, uv = np.empty((rows, cols, 3), np.float32), np.empty((rows, cols, 2), np.float32)
    _torso_grid(torso.params, az, collar.astype(np.float32), np.float32(4.0), pts, uv)
    colour = CLOTH[rng.integers(len(CLOTH))] * np.float32(rng.uniform(0.75, 1.1))
    other = CLOTH[rng.integers(len(CLOTH))] * np.float32(rng.uniform(0.75, 1.1))
    if rng.uniform() < cfg.jacket_p:
        m = canvas.material(OPENING, colour, other, param=rng.uniform(0.15, 0.3), spec=rng.uniform(0.1, 0.5))
    elif rng.uniform() < cfg.pattern_p:
        kind = STRIPES if rng.uniform() < 0.5 else CHECKS
        m = canvas.material(kind, colour, other, freq=rng.uniform(8, 25), phase=rng.uniform(0, 6),
                            param=rng.uniform(-0.3, 0.5))
    else:
        m = canvas.material(SOLID, colour)
    canvas.shell(pts, frame, uv, m, closed=True, inner=0.35, inner_rows=2)  # the inside shows at the collar
    return torso


# ---------------------------------------------------------------------------------------------
# Hair

# Short hair round the side of the head, by |azimuth| (radians from the nose): the temple, a
# sideburn in front of the ear, over the ear (its top is about a quarter head unit below the
# brows), behind it and towards the nape; as s of HeadFrame.ellipsoid. The first end is
# relative to the forehead hairline.
SIDE_AZIMUTHS = (0.95, 1.25, 1.4, 1.5, 1.58, 1.85, 2.05, 2.5)
SIDE_ENDS = (0.05, 1.0, 1.45, 1.45, 1.22, 1.22, 1.5, 1.7)


def _hair_bounds(style: HairStyle, frame: HeadFrame, az: np.ndarray, inflate: float, hanging: bool, tied: bool,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Where hair starts and ends down each column, as ``s`` of HeadFrame.ellipsoid."""
    ry = frame.radii[1] * inflate / frame.unit  # brows to crown in head units

    def s_at(height: float) -> float:  # s on the front meridian at ``height`` head units above the brows
        return math.acos(min(max(height / ry, 0.0), 1.0)) / (math.pi / 2)

    hairline = s_at(style.hairline)
    front = s_at(style.hairline * (1 - style.fringe)) if style.fringe else hairline
    knots = np.r_[hairline + SIDE_ENDS[0], np.float32(SIDE_ENDS[1:]) + rng.uniform(-0.08, 0.08, len(SIDE_ENDS) - 1),
                  1.0 + (0.8 if tied else style.length)]
    start, end = np.empty(len(az), np.float32), np.empty(len(az), np.float32)
    _hair_ends(az, front, style.sweep if style.fringe else 0.0, hanging, 1.0 + style.length, style.opening,
               style.crown, SIDE_KNOTS, knots.astype(np.float32), rng.uniform(0.0, 0.075, len(az)).astype(np.float32),
               start, end)
    return start, end


SIDE_KNOTS = np.array((0.6,) + SIDE_AZIMUTHS + (np.pi,), np.float32)  # a hairline value at 0.6 rad is 0


@numba.njit(cache=True, fastmath=True, inline="always")
def _ramp(x, lo, hi):
    t = min(max((x - lo) / (hi - lo), 0.0), 1.0)
    return t * t * (3 - 2 * t)


@numba.njit(cache=True, fastmath=True)
def _hair_ends(azimuths, front, sweep, hanging, hang, opening, crown, knots, values, ragged, start, end):
    """Per column: the fringe or hairline at the front (swept to one side), then either the long
    hair's fall beyond the face opening or the short cut's path round the ear (linear between
    ``values`` at ``knots``); ragged long ends; a bald crown; no sliver columns."""
    for c in range(azimuths.shape[0]):
        a = abs(azimuths[c])
        f = front + 0.15 * sweep * np.sin(azimuths[c])
        if hanging:
            e = f + (hang - f) * _ramp(a, opening - 0.2, opening + 0.2)
        elif a <= knots[0]:
            e = f
        else:
            k = 1
            while k < knots.shape[0] - 1 and knots[k] < a:
                k += 1
            lo = 0.0 if k == 1 else values[k - 2]
            e = lo + (values[k - 1] - lo) * (a - knots[k - 1]) / (knots[k] - knots[k - 1])
            if a < 1.0:
                e = max(e, f)
        if e > 1.2:
            e += ragged[c] * (e - 1.0)
        s0 = crown * (1.3 - 0.6 * _ramp(a, 0.9, 1.6)) if crown > 0 else 0.0  # bald: a ring above the ears
        start[c] = s0
        end[c] = s0 if e - s0 < 0.08 else e  # an empty column is culled


@numba.njit(cache=True, fastmath=True)
def _hair_grid(frame_centre, frame_radii, unit, azimuths, start, end, inflate, curl, phases, taper, u_shift,
               torso, drape, out, uv):
    """Points of the hair shell: column c runs from s = start[c] to end[c] (HeadFrame.ellipsoid's
    s), inflated, bumpy when curly, tapering (or flaring) below the brow line, and, when
    ``drape`` > 0, pushed out of the torso to lie on the shoulders and back."""
    rows, cols = out.shape[0], out.shape[1]
    cx, cy, cz = frame_centre[0], frame_centre[1], frame_centre[2]
    for c in range(cols):
        a = azimuths[c]
        sa, ca = np.sin(a), np.cos(a)
        bump_a = np.sin(a * 9.0 + phases[0])
        for r in range(rows):
            s = start[c] + (end[c] - start[c]) * r / (rows - 1)
            theta = min(s, 1.0) * (np.pi / 2)
            below = max(s - 1.0, 0.0)
            k = inflate * (1.0 + curl * 0.06 * (bump_a * np.sin(s * 11.0 + phases[1]) + 0.5))
            ring = np.sin(theta) * k * (1.0 + taper * below)
            x = cx + frame_radii[0] * ring * sa
            y = cy + frame_radii[1] * np.cos(theta) * k - below * unit
            z = cz + frame_radii[2] * ring * ca
            if drape > 0.0:
                t = (torso[0] - y) / torso[3]
                if t > 0.0:
                    w, d = torso_ring(torso, t)
                    px, pz = (x - torso[1]) / w, (z - torso[2]) / d
                    rr = np.sqrt(px * px + pz * pz) + 1e-6
                    if rr < drape:
                        x = torso[1] + px * drape / rr * w
                        z = torso[2] + pz * drape / rr * d
            out[r, c, 0], out[r, c, 1], out[r, c, 2] = x, y, z
            uv[r, c, 0] = a - u_shift
            uv[r, c, 1] = s


def _draw_hair(canvas: ShellCanvas, frame: HeadFrame, torso: Torso, style: HairStyle, volume: float, tied: bool,
               rng: np.random.Generator) -> np.ndarray | None:
    """The hair as a shell over the cranium (and, for long hair, down over the shoulders):
    columns by azimuth from the crown to each column's end, inflated by the volume, bumpy when
    curly, its ends uneven. Returns its grid points in image space (None if bald)."""
    if style.kind == "bald" and style.crown >= 1.0:
        return None
    hanging = style.kind in ("medium", "long") and not tied
    cols, rows = 40, (14 if hanging else 9)
    az = _azimuths(cols)
    start, end = _hair_bounds(style, frame, az, 1.0 + volume, hanging, tied, rng)
    pts, uv = np.empty((rows, cols, 3), np.float32), np.empty((rows, cols, 2), np.float32)
    _hair_grid(frame.centre, frame.radii, np.float32(frame.unit), az, start, end, np.float32(1.0 + volume),
               np.float32(style.curl if style.curl > 0.2 else 0.0),
               rng.uniform(0, 2 * np.pi, 2).astype(np.float32), np.float32(0.06 if hanging else -0.25),
               np.float32(style.sweep * 0.5), torso.params, np.float32(1.08 if hanging else 0.0), pts, uv)
    colour = np.asarray(style.colour, np.float32)
    sheen = colour * np.float32(0.6) + np.float32(0.35)
    m = canvas.material(HAIR, colour, sheen, freq=rng.uniform(25, 60), phase=rng.uniform(0, 6),
                        wave=(style.curl * 1.5, 10.0 + 10 * style.curl), param=rng.uniform(0.1, 0.3) * (1 - 0.5 * style.curl),
                        spec=rng.uniform(0.1, 0.45) * (1 - style.curl), opacity=style.opacity, ambient=0.25)
    projected = canvas.shell(pts, frame, uv, m, closed=True, inner=0.4, inner_rows=None if hanging else 0,
                             depth_bias=0.05 * frame.unit)  # (the inside of hanging hair shows behind the neck)
    if tied and rng.uniform() < 0.6:  # a bun or ponytail at the back
        _bun(canvas, frame, 1.0 + volume, m, rng)
    return projected


def _bun(canvas: ShellCanvas, frame: HeadFrame, inflate: float, material: int, rng: np.random.Generator) -> None:
    """A small ball of hair at the back of the head (a bun, or a ponytail's root seen from the front)."""
    centre = frame.ellipsoid(np.float32(np.pi), np.float32(rng.uniform(0.45, 0.95)), inflate * 1.02)
    r = frame.unit * rng.uniform(0.3, 0.5)
    az = np.linspace(-np.pi, np.pi, 10, endpoint=False)
    el = np.linspace(0, np.pi, 6)[:, None]
    pts = np.empty((6, 10, 3), np.float32)
    pts[..., 0] = centre[0] + r * np.sin(el) * np.sin(az)
    pts[..., 1] = centre[1] + r * np.cos(el)
    pts[..., 2] = centre[2] - r * 0.7 + r * np.sin(el) * np.cos(az)
    uv = np.stack(np.broadcast_arrays(az[None, :] * 2, el), -1).astype(np.float32)
    canvas.shell(pts, frame, uv, material, closed=True, inner_rows=0)


def _flyaways(image: np.ndarray, zbuf: np.ndarray, head: np.ndarray, frame: HeadFrame, style: HairStyle,
              grid: np.ndarray, rng: np.random.Generator) -> None:
    """Loose strands leaving the hair's outline outwards: thin slightly bent curves from visible
    points of the hair's grid (image space) among those farthest from its middle."""
    size = image.shape[0]
    ij = np.clip(np.rint(grid[:, :2]).astype(np.int64), 0, size - 1)
    pts = grid[zbuf[ij[:, 1], ij[:, 0]] >= grid[:, 2] - 0.1 * frame.unit]  # not hidden by the head or clothes
    if len(pts) < 10:
        return
    out = pts[:, :2] - pts[:, :2].mean(axis=0)
    dist = np.sqrt((out * out).sum(axis=1)) + 1e-6
    n = int(rng.integers(6, 20))
    picks = np.argsort(dist)[rng.integers(len(pts) - max(n, len(pts) // 4), len(pts), n)]  # the outer quarter
    out = out[picks] / dist[picks, None]
    length = frame.unit * rng.uniform(0.04, 0.14, (n, 1))
    bend = out[:, ::-1] * np.float32([-1, 1]) * rng.uniform(-0.6, 0.6, (n, 1))
    start = pts[picks, :2]
    tip = start + (out + bend) * length
    tip_ij = np.clip(np.rint(tip).astype(np.int64), 0, size - 1)
    keep = ~np.isfinite(head[tip_ij[:, 1], tip_ij[:, 0]])  # strands end off the face, over the background
    curves = np.stack([start, start + (out + 0.5 * bend) * (0.5 * length), tip], 1)[keep]
    colour = np.minimum(np.asarray(style.colour) * rng.uniform(0.8, 1.15), 1)
    cv2.polylines(image, list(np.rint(curves * 16).astype(np.int32)), False, tuple(colour.tolist()), 1, cv2.LINE_AA, 4)
