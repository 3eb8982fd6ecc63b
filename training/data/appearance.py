"""Light on synthetic faces: a coloured spherical-harmonics environment, 0-2 directional lights
with soft self-shadows, and specular highlights, evaluated per vertex for the textured rasterizer.

Self-shadowing is precomputed once per mesh (``Occlusion``): whether each vertex of the mean head
sees the sky in each of N_DIRECTIONS directions, with the mouth closed and with each way of opening
it (MOUTH_OPENERS: the jaw dropped, the upper lip raised, the lower lip lowered), blended per photo
by its expression, so a grin's bared teeth are lit though the jaw stays shut. Blending states
that each open the mouth one way darkens a mouth opened several ways at once (a laugh: the jaw,
both lips and the smile together), so the light inside the mouth (teeth, gums, tongue, socket)
comes from a per-vertex model of the inner lips' opening, fitted to exact shadow maps of the
generator's own expressions (``Occlusion.inside_light``). Ambient occlusion
is the cosine-weighted share of visible directions; a directional light is shadowed by the
visibility of the directions nearest to it, blended, so shadows are soft (a nose shadow under a
hard side light, a dark mouth cavity, the eye sockets under the brows).

Spaces: lights and normals are in camera space (x right, y down, z away from the lens, cm);
``Occlusion`` is in model space (+y up, +z out of the face), and a light reaches it through the
camera's rotation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

from siamface.edge_runtime.morphable_model import MorphableModel
from siamface.training.data.rasterizer import cull_triangles, rasterize_ids, vertex_normals
from siamface.training.data.sampling import sample_expression

N_DIRECTIONS = 64          # sky directions of the visibility precomputation
OCCLUSION_GRID = 128       # depth-map pixels across the head, per direction (about 3 mm each)
SHADOW_BIAS_CM = 0.3       # a vertex is lit when at most this much behind the nearest surface,
SHADOW_OFFSET_CM = 0.5     # looked up this far out along its normal (no self-shadowing "acne")
SHADOW_NEIGHBOURS = 3      # directions blended for one light's shadow
AO_EXPONENT = 0.5          # ambient occlusion is applied as ao ** this: light bounces into creases and mouths
# The ways a mouth opens that the occlusion tracks: each an expression at 1 (blendshape names).
MOUTH_OPENERS = (("jawOpen",), ("mouthUpperUp_L", "mouthUpperUp_R"), ("mouthLowerDown_L", "mouthLowerDown_R"))
# Lit through the lips' opening: their light follows the opening's shape (Occlusion.inside_light).
MOUTH_INSIDE = ("teeth", "gums_tongue", "mouth_socket")
INSIDE_SAMPLES = 80        # expressions (the generator's) whose exact shadow maps fit that model
INSIDE_BOOST_MAX = 4.0     # a directional light's blended visibility inside the mouth scales with it, up to this
SH_BAND_GAIN = (np.pi, 2 * np.pi / 3, np.pi / 4)  # clamped-cosine convolution per SH band (Ramamoorthi 2001)


@dataclass(frozen=True)
class LightingConfig:
    """Light per photo (probabilities and ranges); YAML-friendly."""

    lights_p: tuple[float, float, float] = (0.2, 0.55, 0.25)  # chance of 0, 1 or 2 directional lights
    hard_side_p: float = 0.15       # a light is a hard side light (from 70-110 deg off the lens axis, dim room)
    backlight_p: float = 0.12       # a light is behind the head (rim light, face in its own shadow)
    ambient: tuple[float, float] = (0.25, 0.75)   # uniform part of the environment
    sky: tuple[float, float] = (0.0, 0.5)         # extra from above, times the ambient
    bounce: tuple[float, float] = (0.0, 0.3)      # extra from below (floor, table), times the ambient
    coloured_lobes: int = 2                       # up to this many coloured environment lobes (screens, signs)
    key: tuple[float, float] = (0.35, 0.9)        # directional light intensity
    specular: tuple[float, float] = (0.2, 1.0)    # highlight gain
    shininess: tuple[float, float] = (8.0, 60.0)  # Blinn-Phong exponent, log-uniform
    env_specular: tuple[float, float] = (0.0, 0.25)  # sheen reflected from the environment
    exposure: tuple[float, float] = (0.55, 1.0)   # mean diffuse light on the visible face after metering
    metering: float = 0.8                          # 0: raw light; 1: every face exposed to exactly its target


@dataclass(frozen=True)
class Lighting:
    """One photo's light, camera space."""

    sh: np.ndarray          # (9, 3) float32: irradiance per channel in real SH, diffuse(n) = sum_k sh[k] * Y_k(n)
    directions: np.ndarray  # (L, 3) float32 unit vectors towards each light
    colours: np.ndarray     # (L, 3) float32
    specular: float
    shininess: float
    env_specular: float
    exposure: float         # target mean diffuse light on the visible face
    metering: float         # how far auto-exposure goes towards it (0-1)


_BAND = np.array([0, 1, 1, 1, 2, 2, 2, 2, 2])  # the band of each SH coefficient


@numba.njit(cache=True, fastmath=True, inline="always")
def _sh_terms(x, y, z, out):
    """Real spherical harmonics of order 2 at the unit vector (x, y, z), into out (9,)."""
    out[0] = np.float32(0.282095)
    out[1], out[2], out[3] = np.float32(0.488603) * y, np.float32(0.488603) * z, np.float32(0.488603) * x
    out[4], out[5] = np.float32(1.092548) * x * y, np.float32(1.092548) * y * z
    out[6] = np.float32(0.315392) * (np.float32(3.0) * z * z - np.float32(1.0))
    out[7], out[8] = np.float32(1.092548) * x * z, np.float32(0.546274) * (x * x - y * y)


def environment_sh(ambient: np.ndarray, lobe_dirs: np.ndarray, lobe_colours: np.ndarray) -> np.ndarray:
    """Irradiance SH (9, 3) of a uniform ambient plus distant lights: a lobe of colour c from d
    lights a surface facing it by about c (its clamped cosine, band-limited to order 2)."""
    basis = np.empty((len(lobe_dirs), 9), np.float32)
    for d, out in zip(np.asarray(lobe_dirs, np.float32), basis):
        _sh_terms(d[0], d[1], d[2], out)
    sh = (basis * np.asarray(SH_BAND_GAIN, np.float32)[_BAND]).T @ np.asarray(lobe_colours, np.float32)
    sh[0] += np.asarray(ambient, np.float32) / np.float32(0.282095)
    return sh.astype(np.float32)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _between(lo_hi: tuple[float, float], u: float) -> float:
    return lo_hi[0] + (lo_hi[1] - lo_hi[0]) * u


def sample_lighting(rng: np.random.Generator, cfg: LightingConfig) -> Lighting:
    """One photo's light (scalar draws in one batch: this runs once per image)."""
    u = rng.random(20).tolist()
    n_lights = int(np.searchsorted(np.cumsum(cfg.lights_p), u[0] * sum(cfg.lights_p), side="right"))
    n_lobes = int(u[1] * (cfg.coloured_lobes + 1))
    # Colour temperatures (warm-cool axis plus a little of any hue): one per light, one for the room.
    tints = np.clip(1.0 + np.outer(np.clip(rng.standard_normal(n_lights + 1) * 0.5, -1, 1), [0.12, 0.0, -0.15])
                    + 0.03 * rng.standard_normal((n_lights + 1, 3)), 0.3, 1.5)
    directions, colours, harsh = np.empty((n_lights, 3)), np.empty((n_lights, 3)), False
    for k in range(n_lights):
        kind, side, az, el, strength = u[2 + 5 * k: 7 + 5 * k]
        # Azimuth from the lens axis (+ to the image's right): key lights 0-70 deg, hard side lights
        # 70-110, backlights 115-170; elevation -15 to 60 deg (+ up).
        if kind < cfg.hard_side_p:
            az, gain = 70 + 40 * az, 1.3
        elif kind < cfg.hard_side_p + cfg.backlight_p:
            az, gain = 115 + 55 * az, 1.3
        else:
            az, gain = 70 * az, 1.0
        harsh |= gain > 1.0
        az, el = math.radians(az if side < 0.5 else -az), math.radians(-15 + 75 * el)
        directions[k] = math.sin(az) * math.cos(el), -math.sin(el), -math.cos(az) * math.cos(el)
        colours[k] = tints[k] * _between(cfg.key, strength) * gain
    # Environment: uniform ambient, sky above, bounce below and a few coloured lobes; a darker
    # room around a hard light or a backlight.
    level = _between(cfg.ambient, u[12]) * (0.5 if harsh else 1.0)
    ambient = level * tints[-1]
    lobe_dirs = np.concatenate([[[0.0, -1.0, 0.0], [0.0, 1.0, 0.0]],
                                _unit(rng.normal(size=(n_lobes, 3)) * [1, 1, 0.6] - [0, 0, 0.5])])
    lobe_colours = np.concatenate([[ambient * _between(cfg.sky, u[13]) * [0.9, 0.95, 1.1],
                                    ambient * _between(cfg.bounce, u[14]) * [1.05, 1.0, 0.9]],
                                   rng.dirichlet([2, 2, 2], n_lobes) * 3 * level * rng.uniform(0.0, 0.3, (n_lobes, 1))])
    shininess = math.exp(_between((math.log(cfg.shininess[0]), math.log(cfg.shininess[1])), u[16]))
    return Lighting(environment_sh(ambient, lobe_dirs, lobe_colours), directions.astype(np.float32),
                    colours.astype(np.float32), _between(cfg.specular, u[15]), shininess,
                    _between(cfg.env_specular, u[17]), _between(cfg.exposure, u[18]), cfg.metering)


def fibonacci_sphere(n: int) -> np.ndarray:
    """n nearly evenly spread unit vectors (n, 3)."""
    k = np.arange(n) + 0.5
    z = 1 - 2 * k / n
    r = np.sqrt(1 - z * z)
    phi = np.pi * (1 + 5 ** 0.5) * k
    return np.column_stack([r * np.cos(phi), r * np.sin(phi), z])


@numba.njit(cache=True, fastmath=True)
def _light_view(rel, e1, e2, d, px_per_cm, half, view):
    """Vertices (V, 3) seen from direction d: pixels of an orthographic grid, depth -rel . d."""
    for v in range(rel.shape[0]):
        x, y, z = rel[v, 0], rel[v, 1], rel[v, 2]
        view[v, 0] = (x * e1[0] + y * e1[1] + z * e1[2]) * px_per_cm + half
        view[v, 1] = (x * e2[0] + y * e2[1] + z * e2[2]) * px_per_cm + half
        view[v, 2] = -(x * d[0] + y * d[1] + z * d[2])


@numba.njit(cache=True, fastmath=True)
def _lit_from(view, zbuf, bias, out):
    """1 where a vertex is at most ``bias`` behind the depth map at its nearest pixel."""
    top = zbuf.shape[0] - 1
    for v in range(view.shape[0]):
        col = min(max(int(np.rint(view[v, 0])), 0), top)
        row = min(max(int(np.rint(view[v, 1])), 0), top)
        out[v] = view[v, 2] <= zbuf[row, col] + bias


def _visibility(verts: np.ndarray, normals: np.ndarray, tris: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """(V, D) uint8: 1 where vertex v is not hidden from direction d by the mesh (shadow maps)."""
    rel = (verts - (verts.max(0) + verts.min(0)) / 2).astype(np.float32)
    probe = rel + np.float32(SHADOW_OFFSET_CM) * normals
    grid = OCCLUSION_GRID
    px_per_cm = np.float32((grid - 1) / (2 * np.linalg.norm(rel, axis=1).max()))
    out = np.zeros((len(directions), len(verts)), np.uint8)
    view, probe_view = np.empty_like(rel), np.empty_like(rel)
    zbuf = np.empty((grid, grid), np.float32)
    tri_id = np.empty((grid, grid), np.int32)
    bary = np.empty((grid, grid, 2), np.float32)
    ones = np.ones(len(verts), np.float32)
    for j, d in enumerate(directions):
        # Looking from the light: (e1, e2, -d) is a proper rotation, as the model -> image flip is.
        e1 = _unit(np.cross(d, [0.0, 1.0, 0.0] if abs(d[1]) < 0.9 else [1.0, 0.0, 0.0]))
        e2 = np.cross(-d, e1)
        axes = tuple(a.astype(np.float32) for a in (e1, e2, d))
        _light_view(rel, *axes, px_per_cm, np.float32(grid / 2), view)
        _light_view(probe, *axes, px_per_cm, np.float32(grid / 2), probe_view)
        visible, boxes = cull_triangles(view, tris, grid, grid)
        zbuf.fill(np.inf)
        rasterize_ids(view, ones, tris, visible, boxes, zbuf, tri_id, bary)
        _lit_from(probe_view, zbuf, np.float32(SHADOW_BIAS_CM), out[j])
    return np.ascontiguousarray(out.T)


def _ambient_occlusion(verts: np.ndarray, tris: np.ndarray, directions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(V, D) visibility and (V,) ambient occlusion (AO_EXPONENT applied) of one shape."""
    normals = vertex_normals(np.ascontiguousarray(verts, np.float32), tris)
    v = _visibility(np.asarray(verts, np.float64), normals, tris, directions)
    cosine = np.maximum(normals @ directions.T.astype(np.float32), 0)
    return v, ((v * cosine).sum(1) / np.maximum(cosine.sum(1), 1e-6)) ** AO_EXPONENT


@numba.njit(cache=True)
def lip_features(rest: np.ndarray, basis: np.ndarray, expression: np.ndarray) -> np.ndarray:
    """(6,) float32: what the light inside a mouth follows, from the inner lips (landmarks 60-67,
    model space, cm) of the closed mouth ``rest`` (8, 3) moved by ``expression`` (E,) along
    ``basis`` (E, 8, 3): 1, the opening's frontal area (cm^2) and its root, how far the upper lip
    rose and the lower fell (cm, averaged over 61-63 and 65-67), and the opening's width (cm)."""
    lips = rest.astype(np.float64)
    for e in range(expression.shape[0]):
        if expression[e] != 0.0:
            lips += expression[e] * basis[e]
    area = 0.0
    for i in range(8):
        j = (i + 7) % 8
        area += lips[i, 0] * lips[j, 1] - lips[i, 1] * lips[j, 0]
    area = 0.5 * abs(area)
    rise = max((lips[1:4, 1] - rest[1:4, 1]).mean(), 0.0)
    fall = max((rest[5:8, 1] - lips[5:8, 1]).mean(), 0.0)
    return np.array([1.0, area, math.sqrt(area), rise, fall, lips[4, 0] - lips[0, 0]], np.float32)


@dataclass(frozen=True)
class Occlusion:
    """Per-vertex visibility of the mean head from N_DIRECTIONS model-space directions in 1 + S
    mouth states (closed, then each of MOUTH_OPENERS at full strength), and the ambient occlusion
    that follows from it."""

    directions: np.ndarray  # (D, 3) float32, model space
    visibility: np.ndarray  # (V, D, 1 + S) uint8, 0 or 1 (a direction's states side by side: one load)
    ambient: np.ndarray     # (1 + S, V) float32 in [0, 1]
    openers: np.ndarray     # (S, 2) int32: each opener's blendshape indices (one repeated for the jaw)
    inside: np.ndarray      # (V,) int32: a MOUTH_INSIDE vertex's column in inside_light, else -1
    inside_light: np.ndarray  # (F, I) float32: its ambient occlusion = lip_features(...) @ this
    lips: np.ndarray        # (8, 3) float32: the inner lips (landmarks 60-67) of the mean shape
    lips_basis: np.ndarray  # (E, 8, 3) float32: their expression deltas

    @classmethod
    def of_mesh(cls, mesh: MorphableModel) -> "Occlusion":
        """Shadow maps of the mean shape, neutral and with each opener at 1, and the inside's light
        model from INSIDE_SAMPLES more; about 12 s of CPU (then cached)."""
        directions = fibonacci_sphere(N_DIRECTIONS)
        tris = np.ascontiguousarray(mesh.triangles, np.uint32)
        openers = np.array([[mesh.exp_names.index(n) for n in (names * 2)[:2]] for names in MOUTH_OPENERS], np.int32)
        regions = [i for i, n in enumerate(mesh.region_names) if n in MOUTH_INSIDE]
        inside_ids = np.flatnonzero(np.isin(mesh.vertex_region, regions))
        lip_ids = np.asarray(mesh.landmarks68)[60:68]
        lips, lips_basis = mesh.mean[lip_ids].astype(np.float32), mesh.exp_basis[:, lip_ids].astype(np.float32)
        states = []
        for pair in [[]] + list(openers):
            w = np.zeros(len(mesh.exp_names), np.float32)
            w[pair] = 1.0
            states.append(w)
        rng = np.random.default_rng(0)
        samples = states + [sample_expression(rng, tuple(mesh.exp_names)) for _ in range(INSIDE_SAMPLES)]
        vis, ambient, features, exact = [], [], [], []
        for k, w in enumerate(samples):  # the states are samples of the inside's model too
            v, a = _ambient_occlusion(mesh.mean + mesh.expression_offsets(w), tris, directions)
            if k < len(states):
                vis.append(v)
                ambient.append(a)
            features.append(lip_features(lips, lips_basis, w))
            exact.append(a[inside_ids])
        inside_light = np.linalg.lstsq(np.array(features), np.array(exact), rcond=None)[0]
        inside = np.full(len(mesh.mean), -1, np.int32)
        inside[inside_ids] = np.arange(len(inside_ids))
        return cls(directions.astype(np.float32), np.stack(vis, axis=-1), np.stack(ambient).astype(np.float32),
                   openers, inside, inside_light.astype(np.float32), lips, lips_basis)

    def lip_features(self, expression: np.ndarray) -> np.ndarray:
        """(F,) float32 lip_features of the mean shape's inner lips under a photo's expression weights."""
        return lip_features(self.lips, self.lips_basis, np.asarray(expression, np.float32))

    def inside_ambient(self, expression: np.ndarray) -> np.ndarray:
        """(I,) float32 ambient occlusion of the mouth's inside for a photo's expression weights
        (what ``shade`` computes for the inside vertices it draws)."""
        return np.clip(self.lip_features(expression) @ self.inside_light, 0.0, 1.0).astype(np.float32)

    def mouth_states(self, expression: np.ndarray) -> np.ndarray:
        """(1 + S,) float32 blend of the precomputed states for a photo's expression weights: each
        opener's mean weight (clipped to [0, 1]), scaled down to sum at most 1, the rest closed."""
        open_ = np.clip(np.asarray(expression, np.float32)[self.openers], 0.0, 1.0).mean(axis=1)
        open_ /= max(1.0, float(open_.sum()))
        return np.concatenate([[1.0 - open_.sum()], open_]).astype(np.float32)

    def neighbours(self, model_dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For light directions (L, 3) in model space: the SHADOW_NEIGHBOURS nearest sample
        directions (L, K) int32 and their blend weights (L, K) float32 (nearer weighs more)."""
        cos = model_dirs @ self.directions.T
        order = np.argsort(-cos, axis=1)[:, : SHADOW_NEIGHBOURS + 1]
        near = np.take_along_axis(cos, order, axis=1)
        w = np.maximum(near[:, :-1] - near[:, -1:], 1e-6)
        return order[:, :-1].astype(np.int32), (w / w.sum(1, keepdims=True)).astype(np.float32)


def shade(normals: np.ndarray, positions: np.ndarray, used: np.ndarray, light: Lighting, occlusion: Occlusion,
          rotation: np.ndarray, expression: np.ndarray, metered: np.ndarray,
          albedo: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-vertex (diffuse (V, 3), specular (V, 3)) light of camera-space unit ``normals`` and
    ``positions`` (cm), for the vertices in ``used`` (others stay 0): ambient-occluded environment
    plus shadowed directional lights; Blinn-Phong highlights plus a sheen of the environment. ``rotation``
    maps model to camera space; the photo's ``expression`` weights blend the mouth's occlusion states.
    ``albedo`` (V, 3), the surface's colour at each vertex, lets the ambient light bounce inside
    cavities (``bounced``); None: no bounce (visibility alone).

    Then auto-exposure, as a camera meters a face: both terms are scaled towards making the mean
    diffuse light of the ``metered`` vertices (V,) bool (the visible skin) ``light.exposure``."""
    f32 = np.float32
    idx, weights = occlusion.neighbours(light.directions.astype(np.float64) @ np.asarray(rotation))
    diffuse = np.zeros_like(normals)
    specular = np.zeros_like(normals)
    if albedo is None:
        albedo = np.zeros_like(normals)
    total, count = _shade(normals, positions, used, metered, light.sh, light.directions, light.colours, idx, weights,
                          occlusion.visibility, occlusion.ambient, occlusion.mouth_states(expression),
                          occlusion.inside, occlusion.inside_light, occlusion.lip_features(expression), albedo,
                          f32(light.specular), f32(light.shininess), f32(light.env_specular), diffuse, specular)
    if count and light.metering:  # metered on the mean over channels (brightness, not colour)
        gain = f32(np.clip((light.exposure / max(total / count, 1e-3)) ** light.metering, 0.2, 5.0))
        diffuse *= gain
        specular *= gain
    return diffuse, specular


@numba.njit(cache=True, fastmath=True, inline="always")
def bounced(ao, albedo):
    """Ambient light reaching a point of visibility ``ao`` once its surroundings' reflections are
    counted (the cubic fit of Jimenez et al. 2016, "Practical real-time strategies for accurate
    indirect occlusion", per colour channel of ``albedo``): shadow maps count only the sky a point
    sees, but inside a mouth the teeth and the pink walls light each other. Never below ``ao``;
    1 stays 1; albedo 0 leaves ``ao``."""
    a = np.float32(2.0404) * albedo - np.float32(0.3324)
    b = np.float32(-4.7951) * albedo + np.float32(0.6417)
    c = np.float32(2.7552) * albedo + np.float32(0.6903)
    return min(max(ao, ((ao * a + b) * ao + c) * ao), np.float32(1.0))


@numba.njit(cache=True, fastmath=True)
def _shade(normals, positions, used, metered, sh, dirs, colours, idx, weights, visibility, ambient, mouth,
           inside, inside_light, lips, albedo, gain, shininess, env_gain, diffuse, specular):
    """Fills diffuse and specular of the used vertices; returns the sum of the metered vertices'
    diffuse (over channels) and their count. ``mouth`` (states,) blends the occlusion states; only
    those with a weight are read (most photos: the closed mouth alone). Inside the mouth
    (``inside`` >= 0) the ambient occlusion is the model's (``lips``: the photo's lip_features, times
    ``inside_light``, clipped to [0, 1]), and directional light through the blended states scales
    by its ratio to the blend's (at most INSIDE_BOOST_MAX). The ambient term bounces off ``albedo``
    (V, 3)."""
    active = np.flatnonzero(mouth)
    zero = np.float32(0.0)
    basis = np.empty(9, np.float32)
    total, count = 0.0, 0
    for v in range(normals.shape[0]):
        if not used[v]:
            continue
        nx, ny, nz = normals[v, 0], normals[v, 1], normals[v, 2]
        px, py, pz = positions[v, 0], positions[v, 1], positions[v, 2]
        inv = np.float32(1.0) / np.sqrt(px * px + py * py + pz * pz)
        vx, vy, vz = -px * inv, -py * inv, -pz * inv          # towards the lens
        ao = zero
        for m in active:
            ao += mouth[m] * ambient[m, v]
        boost = np.float32(1.0)
        slot = inside[v]
        if slot >= 0:
            model = zero
            for f in range(lips.shape[0]):
                model += lips[f] * inside_light[f, slot]
            model = min(max(model, zero), np.float32(1.0))
            boost = min(model / max(ao, np.float32(0.01)), np.float32(INSIDE_BOOST_MAX))
            ao = model
        _sh_terms(nx, ny, nz, basis)
        for ch in range(3):
            d = zero
            for k in range(9):
                d += sh[k, ch] * basis[k]
            d = bounced(ao, albedo[v, ch]) * max(d, zero)
            diffuse[v, ch] = d
            specular[v, ch] = env_gain * d                     # the environment's sheen
        for k in range(dirs.shape[0]):
            lx, ly, lz = dirs[k, 0], dirs[k, 1], dirs[k, 2]
            d = nx * lx + ny * ly + nz * lz
            if d <= zero:
                continue
            lit = zero
            for j in range(idx.shape[1]):
                seen = visibility[v, idx[k, j]]
                for m in active:
                    lit += weights[k, j] * mouth[m] * np.float32(seen[m])
            lit = min(lit * boost, np.float32(1.0))
            hx, hy, hz = lx + vx, ly + vy, lz + vz
            h = max((nx * hx + ny * hy + nz * hz) / np.sqrt(hx * hx + hy * hy + hz * hz), zero)
            spec = gain * h / (shininess - shininess * h + h)  # Schlick's h ** shininess
            for ch in range(3):
                diffuse[v, ch] += lit * d * colours[k, ch]
                specular[v, ch] += lit * spec * colours[k, ch]
        if metered[v]:
            total += diffuse[v, 0] + diffuse[v, 1] + diffuse[v, 2]
            count += 3
    return total, count
