"""Per-identity appearance (albedo per vertex) and per-image lighting for synthetic faces.

Regions come from the face-model asset (mouth socket, eye sockets, sclera, iris) and from
its 68 landmarks on the mean shape (lips, brows, hairline), computed once per model.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numba
import numpy as np
from matplotlib.path import Path as PolygonPath

from edge_runtime.morphable_model import MorphableModel

# Skin anchors from light to dark (RGB, 0..1); a tone t in [0, 1] interpolates along them.
SKIN_TONES = np.array([[0.96, 0.82, 0.72], [0.89, 0.70, 0.57], [0.78, 0.56, 0.42], [0.62, 0.43, 0.30],
                       [0.45, 0.30, 0.20], [0.30, 0.19, 0.13], [0.20, 0.13, 0.09]], np.float32)
IRIS_COLOURS = np.array([[0.30, 0.18, 0.08], [0.18, 0.10, 0.05], [0.25, 0.40, 0.60], [0.30, 0.45, 0.30],
                         [0.45, 0.35, 0.20], [0.40, 0.45, 0.50]], np.float32)
HAIR_COLOURS = np.array([[0.05, 0.04, 0.03], [0.18, 0.11, 0.06], [0.35, 0.22, 0.12], [0.65, 0.50, 0.28],
                         [0.55, 0.25, 0.10], [0.60, 0.60, 0.60], [0.85, 0.85, 0.82]], np.float32)
BROW_WIDTH = (0.25, 0.55)  # range of the distance (cm) from the brow landmarks over which brows fade out


@dataclass(frozen=True)
class FaceRegions:
    """Vertex masks and coordinates that appearance needs, from the mean shape."""

    skin: np.ndarray          # bool (V,)
    lips: np.ndarray          # bool (V,)
    brow_dist: np.ndarray     # float (V,), cm to the nearest brow landmark segment
    height_above_brows: np.ndarray  # float (V,), cm
    depth: np.ndarray         # float (V,), model z (cm)
    dark: np.ndarray          # bool (V,), mouth interior and eye sockets
    eyeball: np.ndarray       # bool (V,), sclera and iris
    eye_radius: np.ndarray    # float (V,), 0 at the pupil centre, 1 at the iris rim, inf elsewhere
    smooth: np.ndarray        # (V, 6) low-frequency functions for skin variation

    @classmethod
    def from_model(cls, model: MorphableModel) -> "FaceRegions":
        v = model.mean
        lm = v[model.landmarks68]
        skin = model.region_mask("face")
        outer_lip = PolygonPath(lm[48:60, :2])
        lips = skin & outer_lip.contains_points(v[:, :2]) & (v[:, 2] > lm[48:60, 2].min() - 1.0)
        brow_dist = np.minimum(_polyline_distance(v[:, :2], lm[17:22, :2]),
                               _polyline_distance(v[:, :2], lm[22:27, :2]))
        brow_dist[v[:, 2] < lm[17:27, 2].min() - 1.0] = np.inf
        # The sclera mesh includes the cornea in front of the iris, so the iris and pupil are
        # painted on whichever eyeball vertices face forward within the iris disc.
        eye_radius = np.full(len(v), np.inf, np.float32)
        for side in ("left", "right"):
            iris = model.region_mask(f"iris_{side}")
            ball = iris | model.region_mask(f"sclera_{side}")
            front = iris & (v[:, 2] >= np.percentile(v[iris, 2], 70))
            centre = v[front, :2].mean(axis=0)
            r = np.linalg.norm(v[:, :2] - centre, axis=1) / np.linalg.norm(v[front, :2] - centre, axis=1).max()
            facing = ball & (v[:, 2] >= v[front, 2].min())
            eye_radius[facing] = r[facing]
        phases = np.random.default_rng(0).uniform(0, 2 * np.pi, size=(6, 3))
        freqs = np.array([0.35, 0.5, 0.7, 0.9, 1.2, 1.5])[:, None]
        smooth = np.sin(v[:, None, :] * freqs[None] + phases[None]).mean(axis=2)
        return cls(skin=skin, lips=lips, brow_dist=brow_dist.astype(np.float32),
                   height_above_brows=(v[:, 1] - lm[17:27, 1].mean()).astype(np.float32),
                   depth=v[:, 2].astype(np.float32), dark=model.region_mask("mouth_socket", "eye_socket_left", "eye_socket_right"),
                   eyeball=model.region_mask("sclera_left", "sclera_right", "iris_left", "iris_right"),
                   eye_radius=eye_radius, smooth=smooth.astype(np.float32))

    @cached_property
    def indices(self) -> dict[str, np.ndarray]:
        """Vertex indices of the regions sample_albedo paints (indexing beats masks there)."""
        masks = {"lips": self.lips, "near_brows": self.brow_dist < BROW_WIDTH[1], "eyeball": self.eyeball,
                 "iris": self.eye_radius < 1.0, "pupil": self.eye_radius < 0.4, "dark": self.dark}
        return {name: np.flatnonzero(mask) for name, mask in masks.items()}


def _polyline_distance(points: np.ndarray, line: np.ndarray) -> np.ndarray:
    """Distance of each 2D point to a polyline."""
    best = np.full(len(points), np.inf)
    for a, b in zip(line[:-1], line[1:]):
        ab = b - a
        t = np.clip(((points - a) @ ab) / (ab @ ab), 0.0, 1.0)
        best = np.minimum(best, np.linalg.norm(points - (a + t[:, None] * ab), axis=1))
    return best


def sample_albedo(regions: FaceRegions, rng: np.random.Generator) -> np.ndarray:
    """Per-vertex RGB albedo of one identity: skin tone, lips, brows, hair, eyes, dark mouth."""
    tone = rng.uniform(0.0, 1.0) * (len(SKIN_TONES) - 1)
    lo = int(np.floor(tone))
    hi = min(lo + 1, len(SKIN_TONES) - 1)
    skin = SKIN_TONES[lo] + (tone - lo) * (SKIN_TONES[hi] - SKIN_TONES[lo])
    skin = skin * rng.uniform(0.95, 1.05, size=3)
    variation = 1.0 + regions.smooth @ rng.normal(0.0, 0.12, size=regions.smooth.shape[1])
    albedo = np.clip(skin[None] * variation[:, None], 0.0, 1.0).astype(np.float32)

    lip_colour = skin * np.array([0.85, 0.55, 0.55]) * rng.uniform(0.8, 1.0)
    albedo[regions.indices["lips"]] = lip_colour

    brow_width = rng.uniform(*BROW_WIDTH)
    brow_colour = HAIR_COLOURS[rng.integers(0, 3)] * rng.uniform(0.8, 1.2)
    near = regions.indices["near_brows"]  # the brow weight is 0 elsewhere
    brow = np.clip(1.0 - regions.brow_dist[near] / brow_width, 0.0, 1.0)[:, None] * rng.uniform(0.5, 0.9)
    albedo[near] = albedo[near] * (1 - brow) + brow_colour[None] * brow

    if rng.uniform() > 0.15:  # not bald: a hairline that drops towards the back of the head
        front, back = rng.uniform(3.0, 5.5), rng.uniform(-2.5, 0.5)
        w = np.clip((regions.depth - 2.0) / 7.0, 0.0, 1.0)
        hairline = back + w * (front - back)
        hair = regions.skin & (regions.height_above_brows > hairline)
        albedo[hair] = HAIR_COLOURS[rng.integers(0, len(HAIR_COLOURS))] * rng.uniform(0.85, 1.15)

    albedo[regions.indices["eyeball"]] = rng.uniform(0.7, 0.88) * np.array([1.0, 0.96, 0.93])
    albedo[regions.indices["iris"]] = IRIS_COLOURS[rng.integers(0, len(IRIS_COLOURS))]
    albedo[regions.indices["pupil"]] = 0.03
    albedo[regions.indices["dark"]] = np.array([0.12, 0.04, 0.04]) * rng.uniform(0.5, 1.2)
    return np.clip(albedo, 0.0, 1.0, out=albedo)


@dataclass(frozen=True)
class Lighting:
    """Ambient plus directional lights (image-space directions towards the light), coloured."""

    ambient: np.ndarray      # (3,)
    directions: np.ndarray   # (L, 3) unit
    colours: np.ndarray      # (L, 3)
    specular: float
    shininess: float


def sample_lighting(rng: np.random.Generator) -> Lighting:
    n = int(rng.integers(1, 3))
    # Mostly from the front (the viewer is at -z in image space), from any side.
    dirs = np.column_stack([rng.uniform(-1, 1, n), rng.uniform(-1, 0.6, n), -rng.uniform(0.2, 1.2, n)])
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    tint = rng.uniform(0.85, 1.15, size=(n, 3))
    colours = tint * rng.uniform(0.4, 0.9, size=(n, 1))
    ambient = rng.uniform(0.25, 0.6) * rng.uniform(0.9, 1.1, size=3)
    f32 = np.float32
    return Lighting(ambient.astype(f32), dirs.astype(f32), colours.astype(f32),
                    float(rng.uniform(0.0, 0.25)), float(rng.uniform(8, 32)))


def shade(albedo: np.ndarray, normals: np.ndarray, light: Lighting, used: np.ndarray | None = None) -> np.ndarray:
    """Blinn-Phong per vertex; normals in image space (outward, -z faces the viewer).

    With a vertex mask ``used`` (e.g. from ``visible_triangles``) only those vertices are shaded
    and the others are left black.
    """
    f32 = np.float32
    used = np.ones(len(albedo), np.bool_) if used is None else used
    return _blinn_phong(albedo, normals.astype(f32, copy=False), used, light.ambient.astype(f32, copy=False),
                        light.directions.astype(f32, copy=False), light.colours.astype(f32, copy=False),
                        f32(light.specular), f32(light.shininess))


SPECULAR_CUTOFF = 0.5  # h**shininess < 0.5**8 = 1/256 below it (shininess >= 8): skip the pow


@numba.njit(cache=True, fastmath=True)
def _blinn_phong(albedo, normals, used, ambient, dirs, colours, specular, shininess):
    half = dirs.copy()  # halfway vectors between each light and the viewer (-z)
    for k in range(dirs.shape[0]):
        half[k, 2] -= 1.0
        half[k] /= np.sqrt(half[k, 0] ** 2 + half[k, 1] ** 2 + half[k, 2] ** 2)
    out = np.zeros_like(albedo)
    for v in range(albedo.shape[0]):
        if not used[v]:
            continue
        nx, ny, nz = normals[v, 0], normals[v, 1], normals[v, 2]
        r, g, b = ambient[0], ambient[1], ambient[2]
        spec = np.float32(0.0)
        for k in range(dirs.shape[0]):
            d = max(nx * dirs[k, 0] + ny * dirs[k, 1] + nz * dirs[k, 2], np.float32(0.0))
            r += d * colours[k, 0]
            g += d * colours[k, 1]
            b += d * colours[k, 2]
            h = nx * half[k, 0] + ny * half[k, 1] + nz * half[k, 2]
            if h > SPECULAR_CUTOFF:
                spec += np.exp2(shininess * np.log2(h))  # h ** shininess, cheaper than pow
        out[v, 0] = albedo[v, 0] * r + specular * spec
        out[v, 1] = albedo[v, 1] * g + specular * spec
        out[v, 2] = albedo[v, 2] * b + specular * spec
    return out
