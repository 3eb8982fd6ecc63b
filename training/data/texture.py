"""Procedural UV textures for synthetic faces: per identity what belongs to the person (skin, brows,
eyes, lips, scalp hair, beard, teeth), per photo what belongs to the moment (flush, make-up, shine).

The face model's UV layout (ict_face_model_v2.npz) is repacked into three square tiles (ATLAS_SPEC).
Everything that depends only on the layout (which part each texel shows, where it sits on the mean
face, distances to the brows, lips and eyes, noise banks, lists of the texels each feature can touch)
is computed once in TextureLayout.from_npz, so painting an identity is a numba pass over the texels
driven by a few dozen numbers drawn per person, and a photo's variation rewrites only the face.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields as dataclass_fields
from pathlib import Path
from typing import Callable

import cv2
import numba
import numpy as np
import scipy.sparse as sparse
from scipy.ndimage import distance_transform_edt, gaussian_filter
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from siamface.edge_runtime.errors import SiamfaceError
from siamface.edge_runtime.mirror_params import mirror_partners
from siamface.edge_runtime.unwrap import UnwrapTable
from siamface.training.face_model import project_landmarks

ATLAS_SPEC = """\
Atlas: float32 (n_tiles, R, R, 4); channels 0-2 RGB albedo in [0, 1], channel 3 specular strength in [0, 1].
A texture coordinate (u, v) from TextureLayout.uv lies in tile = floor(u) and is looked up bilinearly at
texel row = (1 - v) * R - 0.5, col = (u - tile) * R - 0.5 (texel centres at integers, clamped at the
tile's edges). Every triangle's three uv corners lie in one tile. Tiles: 0 face (face, forehead and
front of the scalp, ears, front of the neck), 1 head (back of the head and the neck, mouth socket, eye
sockets), 2 parts (quadrants: gums and tongue, teeth, eyeballs' sclera; then iris and eyelashes).
Texels outside the triangles repeat their nearest painted neighbours for a few texels, so bilinear
lookups at island edges do not bleed."""

TILE_NAMES = ("face", "head", "parts")
# Texel parts (what a texel shows), as painted by the kernels.
PART_NAMES = ("none", "skin", "mouth_socket", "eye_socket", "gums", "tongue", "teeth", "sclera", "iris",
              "eyelashes")
(NONE, SKIN, MOUTH_SOCKET, EYE_SOCKET, GUMS, TONGUE, TEETH, SCLERA, IRIS, LASHES) = range(len(PART_NAMES))
_REGION_PART = {"face": SKIN, "head_neck": SKIN, "mouth_socket": MOUTH_SOCKET, "eye_socket_left": EYE_SOCKET,
                "eye_socket_right": EYE_SOCKET, "sclera_left": SCLERA, "sclera_right": SCLERA, "iris_left": IRIS,
                "iris_right": IRIS, "gums_tongue": GUMS, "teeth": TEETH, "eyelashes_left": LASHES,
                "eyelashes_right": LASHES}
# Source parts moved into the parts tile: cell (u offset, v offset, size) of tile 2. The source uv of
# each lies in a unit square (its own UDIM tile, or tile 0 for the eyeballs), shrunk into the cell
# with a margin so that bilinear lookups stay inside it.
_CELLS = {"gums_tongue": (0.0, 0.5, 0.5), "teeth": (0.5, 0.5, 0.5), "sclera": (0.0, 0.0, 0.5),
          "iris": (0.5, 0.25, 0.25), "eyelashes": (0.75, 0.25, 0.25)}
_CELL_MARGIN = 0.03  # of the cell's size, on each side
DILATE_TEXELS = 4    # texels outside the triangles painted like their nearest neighbour

NOISE_NAMES = ("smooth", "medium", "fine", "spots", "strands_u", "strands_v", "veins")
(N_SMOOTH, N_MEDIUM, N_FINE, N_SPOTS, N_STRANDS_U, N_STRANDS_V, N_VEINS) = range(len(NOISE_NAMES))
# Per-texel fields (zero where they do not apply): cm above the brows and degrees of azimuth from
# the front (0) to the back (180) of the head; soft masks in [0, 1] (cheeks, T-zone, nose, ears,
# redness and freckle zones); signed distances to the eye openings and the lip outline and brow
# coordinates, in units of the eye's, the mouth's and the brow's length; beard-zone heights (cm);
# mouth depth; eyeball angles (degrees); distance between teeth (cm); eyelash root-to-tip.
FIELD_NAMES = ("height", "azimuth", "cheek", "tzone", "nose", "ear", "red", "freckle", "eye_d", "eye_up", "lip_d",
               "lip_up", "brow_t", "brow_d", "beard_h", "jaw_h", "depth", "eye_theta", "eye_psi", "tooth_gap",
               "lash_tip")
(F_HEIGHT, F_AZIMUTH, F_CHEEK, F_TZONE, F_NOSE, F_EAR, F_RED, F_FRECKLE, F_EYE_D, F_EYE_UP, F_LIP_D, F_LIP_UP,
 F_BROW_T, F_BROW_D, F_BEARD_H, F_JAW_H, F_DEPTH, F_EYE_THETA, F_EYE_PSI, F_TOOTH_GAP,
 F_LASH_TIP) = range(len(FIELD_NAMES))
# Texel lists the feature painters visit (TextureLayout.sites), in this order.
SITE_NAMES = ("lids", "freckles", "lips", "brows", "hair", "beard", "irises")
(SITE_LIDS, SITE_FRECKLES, SITE_LIPS, SITE_BROWS, SITE_HAIR, SITE_BEARD, SITE_IRISES) = range(len(SITE_NAMES))
FAR = np.float32(9.0)  # brow, lip and eye coordinates of texels far from them


@dataclass(frozen=True, eq=False)
class TextureLayout:
    """The repacked UV layout of a face model and everything per texel that painting needs.

    uv (U, 2) float32 and uv_triangles (T, 3) int32 (one row per face-model triangle, asset order)
    are what a renderer samples the atlas with; the rest is for the painters.
    """

    uv: np.ndarray              # (U, 2) float32, tile = floor(u)
    uv_triangles: np.ndarray    # (T, 3) int32 into uv
    resolution: int             # R: texels per tile side
    landmarks_uv: np.ndarray    # (68, 2) float32, uv of the 68 landmark vertices (tile 0)
    vertex_uv_index: np.ndarray  # (V,) int32: one uv entry per mesh vertex
    part: np.ndarray            # (n_tiles, R, R) uint8, index into PART_NAMES
    fields: np.ndarray          # (len(FIELD_NAMES), n_tiles, R, R) float32
    noise: np.ndarray           # (len(NOISE_NAMES), N, N) float32, tileable, N = max(R, 256)
    sites: tuple[np.ndarray, ...]  # per SITE_NAMES: int32 flat indices into (n_tiles, R, R)
    iris_degrees: float         # angle from the eye's axis at the iris rim
    mouth_degrees: float        # azimuth of the mouth corners (hairline and beard azimuths are in degrees)
    face_box: tuple[int, int, int, int]  # rows r0:r1, cols c0:c1 of tile 0 that per-photo changes touch
    mole_sites: np.ndarray      # (M,) int32 flat texel indices of tile 0 where moles may sit
    photo_sites: np.ndarray     # int32 flat texel indices of tile 0 that flush and make-up touch
    shine_box: np.ndarray       # (h, w) float32 over the face box: where sweat shows (0.5 + T-zone)

    @property
    def n_tiles(self) -> int:
        return self.part.shape[0]

    def vertex_uv(self, vertices: np.ndarray) -> np.ndarray:
        """uv (n, 2) of mesh vertices (one of their corners where seams give several)."""
        return self.uv[self.vertex_uv_index[np.asarray(vertices)]]

    def vertex_texels(self, n_vertices: int) -> np.ndarray:
        """(n_vertices,) int64: each mesh vertex's nearest texel as an index into the atlas's flat
        (n_tiles * R * R) texels, for reading per-vertex colours from an identity's atlas."""
        tile, texel = self.texel(self.vertex_uv(np.arange(n_vertices)))
        col, row = (np.clip(np.rint(texel[:, k]), 0, self.resolution - 1).astype(np.int64) for k in (0, 1))
        return (np.clip(tile, 0, self.n_tiles - 1) * self.resolution + row) * self.resolution + col

    def texel(self, uv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Tile index (...,) and (col, row) texel coordinates (..., 2) of uv points (ATLAS_SPEC)."""
        return _texel_coords(np.asarray(uv, np.float64), self.resolution)

    def part_mask(self, *names: str) -> np.ndarray:
        """(n_tiles, R, R) bool: texels that show any of the named parts (PART_NAMES)."""
        return np.isin(self.part, [PART_NAMES.index(n) for n in names])

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Every field as arrays (``from_arrays`` gives the same layout back): what a cache stores."""
        arrays = {k: np.asarray(v) for k, v in vars(self).items() if k != "sites"}
        return arrays | {f"sites_{i}": site for i, site in enumerate(self.sites)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "TextureLayout":
        """The layout ``to_arrays`` stored, with its scalars as the Python numbers ``from_npz`` gives."""
        sites = tuple(arrays[f"sites_{i}"] for i in range(sum(k.startswith("sites_") for k in arrays)))
        plain = {"resolution": int(arrays["resolution"]), "iris_degrees": float(arrays["iris_degrees"]),
                 "mouth_degrees": float(arrays["mouth_degrees"]),
                 "face_box": tuple(int(x) for x in arrays["face_box"])}
        return cls(**{f.name: arrays[f.name] for f in dataclass_fields(cls) if f.name not in plain and f.name != "sites"},
                   sites=sites, **plain)

    @classmethod
    def from_npz(cls, path: str | Path, resolution: int = 128) -> "TextureLayout":
        """Build from a version-2 face model (ict_face_model_v2.npz); about a second."""
        if resolution < 32 or resolution & (resolution - 1):
            raise SiamfaceError(f"texture resolution {resolution}: use a power of two >= 32 (128 is the default)")
        a = _load_v2(path)
        uv, uv_tris = _repack_uv(a)
        tri, weights, painted = _barycentric(uv, uv_tris, _rasterize_ids(uv, uv_tris, len(TILE_NAMES), resolution))
        verts = a["triangles"][tri]                                   # (n_tiles, R, R, 3) mesh vertices

        def interpolate(attr: np.ndarray) -> np.ndarray:
            """Per-vertex attributes (V, k) at every texel (n_tiles, R, R, k)."""
            return np.einsum("...k,...kc->...c", weights, attr[verts])

        part = np.where(painted, _triangle_parts(a, uv_tris)[tri], NONE).astype(np.uint8)
        vertex_uv_index = np.zeros(len(a["mean"]), np.int32)
        vertex_uv_index[a["triangles"][::-1].ravel()] = uv_tris[::-1].ravel()  # the first corner wins
        landmarks_uv = uv[vertex_uv_index[a["landmarks68"]]]
        fields, iris_degrees, mouth_degrees = _fields(a, part, interpolate, landmarks_uv, resolution)
        box = _face_box(landmarks_uv, resolution)
        r0, r1, c0, c1 = box
        return cls(uv=uv, uv_triangles=uv_tris, resolution=resolution, landmarks_uv=landmarks_uv,
                   vertex_uv_index=vertex_uv_index, part=part, fields=fields,
                   noise=_noise_bank(max(resolution, 256)), sites=_sites(part, fields, iris_degrees),
                   iris_degrees=iris_degrees, mouth_degrees=mouth_degrees, face_box=box,
                   mole_sites=_mole_sites(part, fields), photo_sites=_photo_sites(part, fields, box),
                   shine_box=(0.5 + fields[F_TZONE, 0, r0:r1, c0:c1]).astype(np.float32))


def sample_atlas(atlas: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear lookup (n, 4) of uv points (n, 2), exactly as ATLAS_SPEC says; a numpy reference
    for renderers and for checks (a renderer does this per pixel in its own loop)."""
    n_tiles, res = atlas.shape[0], atlas.shape[1]
    tile, texel = _texel_coords(np.asarray(uv, np.float64), res)
    tile = np.clip(tile, 0, n_tiles - 1)
    col, row = np.clip(texel[:, 0], 0, res - 1), np.clip(texel[:, 1], 0, res - 1)
    c0, r0 = np.minimum(col.astype(np.int64), res - 2), np.minimum(row.astype(np.int64), res - 2)
    fc, fr = (col - c0)[:, None], (row - r0)[:, None]
    top = atlas[tile, r0, c0] * (1 - fc) + atlas[tile, r0, c0 + 1] * fc
    bottom = atlas[tile, r0 + 1, c0] * (1 - fc) + atlas[tile, r0 + 1, c0 + 1] * fc
    return (top * (1 - fr) + bottom * fr).astype(np.float32)




_V2_KEYS = ("mean", "triangles", "uv", "uv_triangles", "vertex_region", "region_names", "landmarks68")


def _load_v2(path: str | Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in _V2_KEYS if k not in data.files]
            arrays = {k: data[k] for k in _V2_KEYS if k in data.files}
    except (OSError, ValueError) as exc:
        raise SiamfaceError(f"{path}: cannot read it as a face model ({exc}); pass ict_face_model_v2.npz") from None
    if missing:
        raise SiamfaceError(f"{path}: no {', '.join(missing)}; textures need the version-2 face model "
                            "(ict_face_model_v2.npz, see shared/assets/ict-face-model/README.md)")
    arrays["landmarks68"] = project_landmarks(arrays["landmarks68"])[0]  # brows painted where they are labelled
    return arrays


def _triangle_groups(a: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per triangle: its source tile (floor u) and the name of its majority region."""
    names = [str(n) for n in a["region_names"]]
    regions = a["vertex_region"][a["triangles"]]
    majority = np.where(regions[:, 1] == regions[:, 2], regions[:, 1], regions[:, 0])
    tile = np.floor(a["uv"][a["uv_triangles"][:, 0], 0]).astype(np.int64)
    return tile, np.array(names)[majority]


def _repack_uv(a: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """uv and uv_triangles with tiles 2, 3, 6 and the eyeballs (which overlap the face in tile 0)
    moved into cells of tile 2, moved corners on uv entries of their own; entries in asset order."""
    uv, uv_tris = a["uv"].astype(np.float32), a["uv_triangles"].astype(np.int32)
    tile, region = _triangle_groups(a)
    eyeball = np.char.startswith(region, "sclera") | np.char.startswith(region, "iris")
    groups = {"gums_tongue": tile == 2, "teeth": tile == 3, "eyelashes": tile == 6,
              "sclera": (tile == 0) & np.char.startswith(region, "sclera"),
              "iris": (tile == 0) & np.char.startswith(region, "iris")}
    unknown = ~((tile <= 1) & ~eyeball) & ~np.logical_or.reduce(list(groups.values()))
    if unknown.any():
        raise SiamfaceError(f"face model uv: {unknown.sum()} triangles outside the known tiles 0-3 and 6; "
                            "textures need the ICT v2 layout (shared/assets/ict-face-model/README.md)")
    parts, out_tris = [uv], uv_tris.copy()
    size = len(uv)
    for name, sel in groups.items():
        cu, cv, cell = _CELLS[name]
        used, inverse = np.unique(uv_tris[sel], return_inverse=True)
        src = uv[used]
        margin = _CELL_MARGIN * cell
        moved = np.column_stack([2 + cu + margin + (cell - 2 * margin) * (src[:, 0] - np.floor(src[:, 0])),
                                 cv + margin + (cell - 2 * margin) * src[:, 1]])
        out_tris[sel] = size + inverse.reshape(-1, 3)
        parts.append(moved.astype(np.float32))
        size += len(used)
    used, inverse = np.unique(out_tris, return_inverse=True)  # drop the entries no triangle uses now
    return np.concatenate(parts)[used], inverse.reshape(-1, 3).astype(np.int32)


def _triangle_parts(a: dict[str, np.ndarray], uv_tris: np.ndarray) -> np.ndarray:
    """Part per triangle: from its majority region; the tongue's uv islands (narrower than the
    teeth's arch, below the upper teeth) become TONGUE."""
    _, region = _triangle_groups(a)
    parts = np.array([_REGION_PART[r] for r in region], np.uint8)
    mean = a["mean"]
    teeth = np.unique(a["triangles"][parts == TEETH])
    upper_teeth_y = mean[teeth, 1][mean[teeth, 1] > mean[teeth, 1].mean()].mean()
    gums = np.flatnonzero(parts == GUMS)
    island = _components(uv_tris[gums])
    for k in np.unique(island):
        p = mean[np.unique(a["triangles"][gums[island == k]])]
        if np.abs(p[:, 0]).max() < 0.7 * np.abs(mean[teeth, 0]).max() and p[:, 1].max() < upper_teeth_y:
            parts[gums[island == k]] = TONGUE
    return parts


def _components(tris: np.ndarray) -> np.ndarray:
    """Connected-component label per triangle (triangles sharing an index are connected)."""
    used, local = np.unique(tris, return_inverse=True)
    rows = np.repeat(np.arange(len(tris)), 3)
    incidence = sparse.csr_matrix((np.ones(rows.size), (rows, local.ravel())), shape=(len(tris), len(used)))
    return connected_components(incidence @ incidence.T, directed=False)[1]


def _texel_coords(uv: np.ndarray, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """Tile index and (col, row) texel coordinates of uv points, per ATLAS_SPEC."""
    tile = np.floor(uv[..., 0])
    return tile.astype(np.int64), np.stack([(uv[..., 0] - tile) * resolution - 0.5,
                                            (1.0 - uv[..., 1]) * resolution - 0.5], axis=-1)


def _rasterize_ids(uv: np.ndarray, uv_tris: np.ndarray, n_tiles: int, resolution: int) -> np.ndarray:
    """Triangle index per texel (-1 where none covers its centre), later triangles on top."""
    ids = np.full((n_tiles, resolution, resolution), -1, np.int32)
    tiles, corners = _texel_coords(uv[uv_tris], resolution)
    fixed = np.round(corners * 16).astype(np.int32)  # 4 fractional bits (cv2's shift)
    for t in range(len(uv_tris)):
        cv2.fillConvexPoly(ids[tiles[t, 0]], fixed[t], t, lineType=cv2.LINE_8, shift=4)
    return ids


def _barycentric(uv: np.ndarray, uv_tris: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per texel: covering (or, within DILATE_TEXELS, nearest) triangle, its barycentric weights
    (clamped to the triangle) and whether the texel is painted at all."""
    from scipy.ndimage import distance_transform_edt

    n_tiles, res = ids.shape[:2]
    tri = np.empty_like(ids)
    painted = np.zeros(ids.shape, bool)
    for k in range(n_tiles):
        dist, (rows, cols) = distance_transform_edt(ids[k] < 0, return_indices=True)
        tri[k] = ids[k][rows, cols]
        painted[k] = (dist <= DILATE_TEXELS) & (tri[k] >= 0)
    tri[~painted] = 0
    _, corners = _texel_coords(uv[uv_tris[tri]], res)          # (n, R, R, 3, 2)
    row, col = np.meshgrid(np.arange(res), np.arange(res), indexing="ij")
    p = np.stack([col, row], axis=-1).astype(np.float64)[None]  # (1, R, R, 2)
    a, b, c = corners[..., 0, :], corners[..., 1, :], corners[..., 2, :]
    v0, v1, v2 = b - a, c - a, p - a
    d00, d01, d11 = (v0 * v0).sum(-1), (v0 * v1).sum(-1), (v1 * v1).sum(-1)
    d20, d21 = (v2 * v0).sum(-1), (v2 * v1).sum(-1)
    den = d00 * d11 - d01 * d01
    den = np.where(np.abs(den) < 1e-12, 1.0, den)  # degenerate triangles: weight on the first corner
    w1, w2 = (d11 * d20 - d01 * d21) / den, (d00 * d21 - d01 * d20) / den
    w = np.clip(np.stack([1 - w1 - w2, w1, w2], axis=-1), 0.0, None)
    w /= np.maximum(w.sum(-1, keepdims=True), 1e-12)
    return tri, w.astype(np.float32), painted


def _face_box(landmarks_uv: np.ndarray, resolution: int) -> tuple[int, int, int, int]:
    """Rows r0:r1 and columns c0:c1 of tile 0 around the brows, eyes, nose, mouth and jaw, with a
    margin: everything a photo's variation touches."""
    _, texels = _texel_coords(landmarks_uv.astype(np.float64), resolution)
    lo, hi = texels[17:].min(0), texels.max(0)
    pad = 0.25 * (hi - lo)
    c0, r0 = np.maximum(np.floor(lo - pad), 0).astype(int)
    c1, r1 = np.minimum(np.ceil(hi + pad) + 1, resolution).astype(int)
    return int(r0), int(r1), int(c0), int(c1)


def _mole_sites(part: np.ndarray, fields: np.ndarray) -> np.ndarray:
    """Tile-0 texels where a mole may sit: face skin off the ears, lips, eyes and brows."""
    f = fields[:, 0]
    return np.flatnonzero((part[0] == SKIN) & (f[F_EAR] < 0.5) & (f[F_LIP_D] < -0.05) & (f[F_EYE_D] > 0.3)
                          & (np.abs(f[F_BROW_D]) > 0.25) & (f[F_HEIGHT] < 4.0) & (f[F_AZIMUTH] < 80)
                          & (f[F_JAW_H] > -2)).astype(np.int32)


def _photo_sites(part: np.ndarray, fields: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """Tile-0 texels of the face box that per-photo flush and make-up can touch."""
    f, (r0, r1, c0, c1) = fields[:, 0], box
    inside = np.zeros(part.shape[1:], bool)
    inside[r0:r1, c0:c1] = True
    touch = (f[F_RED] > 0.02) | (f[F_LIP_D] > -0.06) | (f[F_EYE_D] < 0.6)
    return np.flatnonzero(inside & (part[0] == SKIN) & touch).astype(np.int32)


def _sites(part: np.ndarray, fields: np.ndarray, iris_degrees: float) -> tuple[np.ndarray, ...]:
    """The texels each feature painter can touch whatever an identity draws (SITE_NAMES)."""
    f, skin = fields, part == SKIN
    masks = {"lids": skin & (f[F_EYE_D] < 1.0),
             "freckles": f[F_FRECKLE] > 0.03,
             "lips": skin & (f[F_LIP_D] > -0.06),
             "brows": skin & (np.abs(f[F_BROW_D]) < 0.35) & (f[F_BROW_T] > -0.3) & (f[F_BROW_T] < 1.3),
             "hair": skin & (f[F_HEIGHT] > -10.0),
             "beard": skin & (f[F_BEARD_H] < 1.5) & (f[F_JAW_H] > -5.0) & (f[F_AZIMUTH] < 82),
             "irises": np.isin(part, [SCLERA, IRIS]) & (f[F_EYE_THETA] < 1.1 * iris_degrees + 2)}
    return tuple(np.flatnonzero(masks[name]).astype(np.int32) for name in SITE_NAMES)


@dataclass(frozen=True)
class _MeanFace:
    """The mean shape's landmarks and head frame that the fields are measured in (cm)."""

    mean: np.ndarray            # (V, 3) float64
    lm: np.ndarray              # (68, 3) landmark positions
    region: np.ndarray          # (V,) region index per vertex
    names: list[str]            # region names
    brow_y: float               # mean height of the brow landmarks
    z0: float                   # depth of the head's vertical axis (midway between forehead and back)

    @classmethod
    def of(cls, a: dict[str, np.ndarray]) -> "_MeanFace":
        mean, names, region = a["mean"].astype(np.float64), [str(n) for n in a["region_names"]], a["vertex_region"]
        lm = mean[a["landmarks68"]]
        brow_y = float(lm[17:27, 1].mean())
        level = np.abs(mean[:, 1] - brow_y) < 1.0
        front = mean[level & (region == names.index("face")), 2].max()
        back = mean[level & np.isin(region, [names.index("face"), names.index("head_neck")]), 2].min()
        return cls(mean, lm, region, names, brow_y, float(0.5 * (front + back)))

    def mask(self, *names: str) -> np.ndarray:
        return np.isin(self.region, [self.names.index(n) for n in names])

    def azimuth(self, p: np.ndarray) -> np.ndarray:
        """Degrees around the head's vertical axis: 0 at the front, 180 at the back, both sides alike."""
        return np.degrees(np.arctan2(np.abs(p[..., 0]), p[..., 2] - self.z0))


def _fields(a: dict[str, np.ndarray], part: np.ndarray, interpolate: Callable[[np.ndarray], np.ndarray],
            landmarks_uv: np.ndarray, resolution: int) -> tuple[np.ndarray, float, float]:
    """The per-texel fields (FIELD_NAMES), the iris's angular radius and the mouth corners'
    azimuth (degrees), from the mean shape and the landmarks."""
    face = _MeanFace.of(a)
    pos = interpolate(face.mean)
    fields = np.zeros((len(FIELD_NAMES),) + part.shape, np.float32)
    fields[[F_EYE_D, F_BROW_D]], fields[[F_LIP_D, F_BROW_T]] = FAR, -FAR  # far from eyes, brows, lips
    _head_fields(fields, face, part == SKIN, pos)
    _face_tile_fields(fields, face, part[0] == SKIN, pos[0], landmarks_uv, resolution)
    inside = np.isin(part, [MOUTH_SOCKET, GUMS, TONGUE, TEETH])  # 0 at the lips, 1 deep in the mouth
    fields[F_DEPTH] = np.where(inside, np.clip((face.lm[62, 2] - pos[..., 2]) / 7.0, 0.0, 1.0), 0)
    radius = _eye_fields(fields, face, np.isin(part, [SCLERA, IRIS]), interpolate)
    _lash_fields(fields, face, part == LASHES, interpolate)
    gaps = _tooth_gaps(face.mean, a["triangles"][face.mask("teeth")[a["triangles"][:, 0]]])
    fields[F_TOOTH_GAP] = np.where(part == TEETH, interpolate(np.where(np.isfinite(gaps), gaps, 0)[:, None])[..., 0], 0)
    # The iris is about 0.42 of the eye opening wide (11.7 of 28-30 mm in adults).
    eye_width = 0.5 * (np.linalg.norm(face.lm[39] - face.lm[36]) + np.linalg.norm(face.lm[45] - face.lm[42]))
    iris_degrees = float(np.degrees(np.arcsin(0.21 * eye_width / radius)))
    return fields, iris_degrees, float(face.azimuth(face.lm[[48, 54]]).mean())


def _head_fields(fields: np.ndarray, face: _MeanFace, skin: np.ndarray, pos: np.ndarray) -> None:
    """Skin of both head tiles: height above the brows and azimuth (hairline), soft masks from 3D
    distances to points of the mean face (cheeks, T-zone, nose), the beard zone's heights."""
    lm, y = face.lm, pos[..., 1]
    skin_v = face.mask("face")
    fields[F_HEIGHT] = np.where(skin, y - face.brow_y, 0)
    fields[F_AZIMUTH] = np.where(skin, face.azimuth(pos), 0)
    cheeks = [_surface_point(face.mean, skin_v, e[:, 0].mean(), 0.5 * (e[4:, 1].mean() + lm[33, 1]))
              for e in (lm[36:42], lm[42:48])]
    forehead = _surface_point(face.mean, skin_v, 0.0, face.brow_y + 3.5)
    glabella = 0.5 * (lm[21] + lm[22])
    front = skin & (pos[..., 2] > face.z0)
    fields[F_CHEEK] = front * np.maximum(*[_gauss(np.linalg.norm(pos - c, axis=-1), 1.7) for c in cheeks])
    fields[F_TZONE] = front * np.maximum.reduce([_gauss(_segment_distance(pos, forehead, glabella), 1.6),
                                                 _gauss(_segment_distance(pos, glabella, lm[30]), 0.8),
                                                 0.6 * _gauss(np.linalg.norm(pos - lm[8], axis=-1), 1.2)])
    nostrils = np.maximum(*[_gauss(np.linalg.norm(pos - lm[j], axis=-1), 0.6) for j in (31, 35)])
    fields[F_NOSE] = front * np.maximum(_gauss(np.linalg.norm(pos - lm[30], axis=-1), 1.0), 0.8 * nostrils)
    fields[F_FRECKLE] = front * np.minimum(1.3 * fields[F_CHEEK] + fields[F_NOSE] + 0.5 * fields[F_TZONE], 1.0)
    # Beard zone: height above the line from the nose base over the mouth corners and cheeks to the
    # sideburns, and above the jaw line (negative under the chin and on the neck).
    knot_y = [lm[33, 1] + 0.15, lm[48, 1] + 1.0, lm[2, 1] + 0.4, lm[1, 1]]
    fields[F_BEARD_H] = np.where(skin, y - np.interp(fields[F_AZIMUTH], face.azimuth(lm[[33, 48, 3, 1]]), knot_y), 0)
    fields[F_JAW_H] = np.where(skin, y - np.interp(fields[F_AZIMUTH], face.azimuth(lm[8:17]), lm[8:17, 1]), 0)


def _face_tile_fields(fields: np.ndarray, face: _MeanFace, skin: np.ndarray, pos: np.ndarray,
                      landmarks_uv: np.ndarray, resolution: int) -> None:
    """Tile 0 in texel space, from the landmarks' uv: eye openings, lip outline and brows (in units
    of the eye's width, the mouth's width and the brow's length), the ears, then redness."""
    _, lmt = _texel_coords(landmarks_uv.astype(np.float64), resolution)
    row, col = np.meshgrid(np.arange(resolution), np.arange(resolution), indexing="ij")
    eye_d = np.full(skin.shape, FAR, np.float32)
    eye_up = np.zeros(skin.shape, np.float32)
    for ring in (lmt[36:42], lmt[42:48]):
        width = np.linalg.norm(ring[3] - ring[0])
        d = -_signed_polygon_distance(ring, resolution) / width
        closer = d < eye_d
        eye_d = np.where(closer, d, eye_d)
        eye_up = np.where(closer, (ring[:, 1].mean() - row) / width, eye_up)
    mouth_width = np.linalg.norm(lmt[54] - lmt[48])
    fields[F_EYE_D, 0] = np.where(skin, eye_d, FAR)
    fields[F_EYE_UP, 0] = np.where(skin, eye_up, 0)
    fields[F_LIP_D, 0] = np.where(skin, _signed_polygon_distance(lmt[48:60], resolution) / mouth_width, -FAR)
    fields[F_LIP_UP, 0] = np.where(skin, (lmt[60:68, 1].mean() - row) / mouth_width, 0)
    texels = np.stack([col, row], axis=-1).astype(np.float64)
    for line in (lmt[21:16:-1], lmt[22:27]):  # each brow from its inner end outwards
        side = (col < lmt[27, 0]) == (line[-1, 0] < lmt[27, 0])
        t, d = _polyline_coords(texels, line)
        near = side & skin & (np.abs(d) < 1.0) & (t > -0.5) & (t < 1.5)
        fields[F_BROW_T, 0] = np.where(near, t, fields[F_BROW_T, 0])
        fields[F_BROW_D, 0] = np.where(near, d, fields[F_BROW_D, 0])
    fields[F_EAR, 0] = _ear_mask(pos, skin, face.brow_y, face.mean[face.mask("face")])
    fields[F_RED] = np.minimum(fields[F_CHEEK] + 0.8 * fields[F_NOSE] + 0.7 * fields[F_EAR], 1.0)


def _eye_fields(fields: np.ndarray, face: _MeanFace, eye: np.ndarray,
                interpolate: Callable[[np.ndarray], np.ndarray]) -> float:
    """Eyeballs: angle from each eye's axis and azimuth around it (degrees, in the eye's own frame);
    returns the eyeball's radius (cm)."""
    local = np.zeros_like(face.mean)
    radius = []
    for side in ("left", "right"):
        ball = face.mask(f"sclera_{side}", f"iris_{side}")
        centre = face.mean[face.mask(f"sclera_{side}")].mean(axis=0)
        axis = face.mean[ball][np.argmax(face.mean[ball, 2])] - centre
        radius.append(np.linalg.norm(axis))
        axis /= radius[-1]
        up = np.array([0.0, 1.0, 0.0]) - axis[1] * axis
        up /= np.linalg.norm(up)
        d = face.mean[ball] - centre
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        local[ball] = np.column_stack([d @ np.cross(up, axis), d @ up, d @ axis])
    ex, ey, ez = np.moveaxis(interpolate(local), -1, 0)
    fields[F_EYE_THETA] = np.where(eye, np.degrees(np.arctan2(np.hypot(ex, ey), ez)), 0)
    fields[F_EYE_PSI] = np.where(eye, np.degrees(np.arctan2(ey, ex)), 0)
    return float(np.mean(radius))


def _lash_fields(fields: np.ndarray, face: _MeanFace, lashes: np.ndarray,
                 interpolate: Callable[[np.ndarray], np.ndarray]) -> None:
    """Eyelashes: distance from their root on the lid (0 to 1 at the longest), and +1 where that
    root is nearer the upper lid's landmarks than the lower lid's (-1)."""
    lm, strips = face.lm, face.mask("eyelashes_left", "eyelashes_right")
    skin_v = face.mask("face")
    tip, upper = np.zeros(len(face.mean)), np.zeros(len(face.mean))
    tip[strips], nearest = cKDTree(face.mean[skin_v]).query(face.mean[strips])
    root = face.mean[skin_v][nearest]

    def lid_distance(ids: list[int]) -> np.ndarray:
        return np.min([_segment_distance(root, lm[p], lm[q]) for p, q in zip(ids[:-1], ids[1:])], axis=0)

    upper[strips] = np.where(np.minimum(lid_distance([36, 37, 38, 39]), lid_distance([42, 43, 44, 45]))
                             < np.minimum(lid_distance([39, 40, 41, 36]), lid_distance([45, 46, 47, 42])), 1.0, -1.0)
    fields[F_LASH_TIP] = np.where(lashes, interpolate(tip[:, None] / tip.max())[..., 0], 0)
    fields[F_EYE_UP] = np.where(lashes, interpolate(upper[:, None])[..., 0], fields[F_EYE_UP])


def _gauss(dist: np.ndarray, sigma: float) -> np.ndarray:
    return np.exp(-0.5 * (dist / sigma) ** 2)


def _segment_distance(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance of points (..., 3) to the segment a-b."""
    ab = b - a
    t = np.clip(((points - a) @ ab) / (ab @ ab), 0.0, 1.0)
    return np.linalg.norm(points - (a + t[..., None] * ab), axis=-1)


def _polyline_coords(points: np.ndarray, line: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates of 2D texel points (..., 2) (col, row) along a polyline: t from 0 at its first
    point to 1 at its last (extrapolated beyond), d the signed distance across it, positive up
    (towards smaller rows); both in units of the polyline's length."""
    seg = np.diff(line, axis=0)
    length = np.linalg.norm(seg, axis=1)
    start = np.concatenate([[0.0], np.cumsum(length)[:-1]])
    best = np.full(points.shape[:-1], np.inf)
    t = np.zeros(points.shape[:-1])
    d = np.zeros(points.shape[:-1])
    for i, (a, ab, n) in enumerate(zip(line[:-1], seg, length)):
        s = ((points - a) @ ab) / (n * n)
        s = np.clip(s, -np.inf if i == 0 else 0.0, np.inf if i == len(seg) - 1 else 1.0)
        offset = points - (a + s[..., None] * ab)
        dist = np.linalg.norm(offset, axis=-1)
        normal = np.array([ab[1], -ab[0]]) / n
        normal = normal if normal[1] < 0 else -normal  # pointing up
        closer = dist < best
        best = np.where(closer, dist, best)
        t = np.where(closer, (start[i] + s * n) / length.sum(), t)
        d = np.where(closer, (offset @ normal) / length.sum(), d)
    return t, d


def _signed_polygon_distance(polygon: np.ndarray, resolution: int) -> np.ndarray:
    """Signed distance (texels, positive inside) of each texel of a tile to a polygon given in
    texel coordinates (col, row)."""
    mask = np.zeros((resolution, resolution), np.uint8)
    cv2.fillPoly(mask, [np.round(polygon * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
    inside = cv2.distanceTransform(mask, cv2.DIST_L2, 5)
    outside = cv2.distanceTransform(1 - mask, cv2.DIST_L2, 5)
    return np.where(mask > 0, inside - 0.5, 0.5 - outside).astype(np.float32)


def _surface_point(mean: np.ndarray, skin: np.ndarray, x: float, y: float) -> np.ndarray:
    """The front-most skin vertex near (x, y): a point on the face's surface."""
    near = skin & (np.abs(mean[:, 0] - x) < 0.6) & (np.abs(mean[:, 1] - y) < 0.6)
    return mean[near][np.argmax(mean[near, 2])]


def _ear_mask(pos: np.ndarray, face: np.ndarray, brow_y: float, skin_points: np.ndarray) -> np.ndarray:
    """Soft ear mask on the face tile: the convex hull (in uv) of the texels that stick out
    furthest sideways below the brows, per side, softened over a few texels."""
    wide = face & (np.abs(pos[..., 0]) > 0.87 * np.abs(skin_points[:, 0]).max()) & (pos[..., 1] < brow_y - 1.5)
    mask = np.zeros(face.shape, np.float32)
    for side in (pos[..., 0] < 0, pos[..., 0] >= 0):
        rows, cols = np.nonzero(wide & side)
        if len(rows) >= 3:
            hull = cv2.convexHull(np.column_stack([cols, rows]).astype(np.int32))
            cv2.fillConvexPoly(mask, hull, 1.0)
    soft = cv2.GaussianBlur(mask, (0, 0), 1.5)
    return np.clip(2.0 * soft, 0.0, 1.0) * face


def _tooth_gaps(mean: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Per vertex of the teeth ``triangles``: distance (cm) to the nearest vertex of another tooth
    (inf elsewhere); small where teeth touch, which is where the dark gaps between them show."""
    label = np.zeros(len(mean), np.int64)
    label[triangles] = _components(triangles)[:, None]
    verts = np.unique(triangles)
    gap = np.full(len(mean), np.inf, np.float32)
    for k in np.unique(label[verts]):
        own, other = verts[label[verts] == k], verts[label[verts] != k]
        gap[own] = cKDTree(mean[other]).query(mean[own])[0]
    return gap


def _noise_bank(size: int, seed: int = 0) -> np.ndarray:
    """Tileable noise planes (NOISE_NAMES), each zero-mean with unit standard deviation; identities
    read them at their own offsets, so every person gets a different pattern at no cost. Feature
    sizes are in texels of a 256-texel tile, whatever the size."""
    rng = np.random.default_rng(seed)
    white = rng.standard_normal((len(NOISE_NAMES), size, size))
    sigmas = {"smooth": (8, 8), "medium": (2.5, 2.5), "fine": (0.6, 0.6), "spots": (1.2, 1.2),
              "strands_u": (0.5, 3.0), "strands_v": (3.0, 0.5), "veins": (2.0, 2.0)}
    scale = size / 256
    bank = np.stack([gaussian_filter(white[k], np.multiply(sigmas[name], scale), mode="wrap")
                     for k, name in enumerate(NOISE_NAMES)])
    bank -= bank.mean(axis=(1, 2), keepdims=True)
    bank /= bank.std(axis=(1, 2), keepdims=True)
    veins = NOISE_NAMES.index("veins")
    bank[veins] = np.clip(1.0 - np.abs(bank[veins]) / 0.25, 0.0, 1.0)  # thin lines where the field crosses 0
    return bank.astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Painting. An identity is a few colours (COLOUR_NAMES) and numbers (SCALAR_NAMES) drawn by
# paint_identity. _paint gives every texel its part's base colour in one pass, then paints the
# features (lids, freckles, lips, brows, hair, beard, irises) over precomputed lists of the only
# texels they can touch (TextureLayout.sites), which keeps an identity at about a millisecond.

COLOUR_NAMES = ("skin", "flush", "eye_shade", "freckle", "lip", "brow", "hair", "grey", "beard", "lashes", "iris",
                "iris_inner", "sclera", "teeth", "gums", "tongue", "socket", "mole")
(C_SKIN, C_FLUSH, C_EYE_SHADE, C_FRECKLE, C_LIP, C_BROW, C_HAIR, C_GREY, C_BEARD, C_LASHES, C_IRIS, C_IRIS_INNER,
 C_SCLERA, C_TEETH, C_GUMS, C_TONGUE, C_SOCKET, C_MOLE) = range(len(COLOUR_NAMES))
SCALAR_NAMES = ("mottle", "blotch", "pores", "redness", "eye_shade", "freckles", "freckle_threshold", "shine",
                "tzone_shine", "lip_shift", "lip_shine", "brow_inner", "brow_outer", "brow_offset", "brow_arch",
                "brow_arch_at", "brow_start", "brow_end", "brow_density", "brow_strands", "hair_density",
                "hair_soft", "hair_shine", "grey", "widows_peak", "beard_density", "beard_top", "beard_neck",
                "moustache", "chin", "cheeks", "beard_length", "mouth_degrees", "iris_degrees", "pupil_degrees",
                "limbus", "veins", "teeth_gaps", "lash_length")
(S_MOTTLE, S_BLOTCH, S_PORES, S_REDNESS, S_EYE_SHADE, S_FRECKLES, S_FRECKLE_THRESHOLD, S_SHINE, S_TZONE_SHINE,
 S_LIP_SHIFT, S_LIP_SHINE, S_BROW_INNER, S_BROW_OUTER, S_BROW_OFFSET, S_BROW_ARCH, S_BROW_ARCH_AT, S_BROW_START,
 S_BROW_END, S_BROW_DENSITY, S_BROW_STRANDS, S_HAIR_DENSITY, S_HAIR_SOFT, S_HAIR_SHINE, S_GREY, S_WIDOWS_PEAK,
 S_BEARD_DENSITY, S_BEARD_TOP, S_BEARD_NECK, S_MOUSTACHE, S_CHIN, S_CHEEKS, S_BEARD_LENGTH, S_MOUTH_DEGREES,
 S_IRIS_DEGREES, S_PUPIL_DEGREES, S_LIMBUS, S_VEINS, S_TEETH_GAPS, S_LASH_LENGTH) = range(len(SCALAR_NAMES))
HAIRLINE_STEP = 22.5  # degrees of azimuth between the hairline's knots (0 = front ... 180 = back)
_f = np.float32  # kernels keep to float32 arithmetic
_F0, _F1 = _f(0.0), _f(1.0)


@numba.njit(cache=True, fastmath=True, inline="always")
def _clip01(x):
    return min(max(x, _F0), _F1)


@numba.njit(cache=True, fastmath=True, inline="always")
def _mix(out, i, col, c, a):
    """Texel i of out (n, 4) moves towards colour c by a."""
    for j in range(3):
        out[i, j] += a * (col[c, j] - out[i, j])


@numba.njit(cache=True, fastmath=True, inline="always")
def _at(i, shift, step):
    """Noise-bank row and column of flat texel index i (tiles of 2**shift texels a side)."""
    m = (1 << shift) - 1
    return ((i >> shift) & m) * step, (i & m) * step


@numba.njit(cache=True, fastmath=True, inline="always")
def _nz(noise, offsets, plane, r, c):
    """Noise plane at bank position (r, c), shifted by this identity's offset for the plane."""
    m = noise.shape[1] - 1
    return noise[plane, (r + offsets[plane, 0]) & m, (c + offsets[plane, 1]) & m]


@numba.njit(cache=True, fastmath=True, inline="always")
def _knots(knots, x):
    """Piecewise-linear function with knots every HAIRLINE_STEP degrees, at x degrees."""
    q = x / _f(HAIRLINE_STEP)
    i = min(int(q), knots.shape[0] - 2)
    return knots[i] + (q - i) * (knots[i + 1] - knots[i])


@numba.njit(cache=True, fastmath=True)
def _base(out, part, f, noise, offsets, col, s, shift, step):
    """Every texel: its part's colour and shine (skin before its features, the sclera before the
    iris). One loop without calls: each texel is a few dozen operations."""
    for i in range(part.shape[0]):
        p = part[i]
        nr, nc = _at(i, shift, step)
        if p == SKIN:  # tone with mottling, blotches and pores, redness; shine, most on the T-zone
            shade = (_F1 + s[S_MOTTLE] * _nz(noise, offsets, N_SMOOTH, nr, nc)
                     + s[S_BLOTCH] * _nz(noise, offsets, N_MEDIUM, nr, nc)
                     + s[S_PORES] * _nz(noise, offsets, N_FINE, nr, nc))
            red = s[S_REDNESS] * f[F_RED, i]
            for j in range(3):
                v = col[C_SKIN, j] * shade
                out[i, j] = v + red * (col[C_FLUSH, j] - v)
            out[i, 3] = s[S_SHINE] * (_F1 + s[S_TZONE_SHINE] * f[F_TZONE, i])
        elif p == SCLERA or p == IRIS:  # white, veined towards the corners, darker towards the lids
            theta = f[F_EYE_THETA, i]
            vein = _nz(noise, offsets, N_VEINS, nr, nc) * s[S_VEINS] * _clip01((theta - s[S_IRIS_DEGREES] - 8) / _f(40))
            shade = _F1 - _f(0.25) * _clip01((theta - 60) / _f(40))
            for j in range(3):
                v = col[C_SCLERA, j]
                out[i, j] = shade * (v + vein * ((_f(0.75) if j == 0 else _f(0.15)) - v))
            out[i, 3] = _f(0.6)
        elif p == LASHES:  # strands from the root; the lid's skin between them and towards the tips
            length = s[S_LASH_LENGTH] * (_F1 if f[F_EYE_UP, i] > 0 else _f(0.4))  # lower lashes are short
            strands = _clip01(_f(0.6) + _f(0.5) * _nz(noise, offsets, N_STRANDS_V, nr, nc))
            a = _clip01(_F1 - f[F_LASH_TIP, i] / length) * strands
            for j in range(3):
                lid = col[C_SKIN, j] + _f(0.5) * s[S_EYE_SHADE] * (col[C_EYE_SHADE, j] - col[C_SKIN, j])
                out[i, j] = lid + a * (col[C_LASHES, j] - lid)
            out[i, 3] = _f(0.15)
        elif p == NONE:
            for j in range(4):
                out[i, j] = _F0
        else:  # the mouth and eye sockets: teeth dark where they meet; the socket darker deeper inside
            # Teeth, gums and tongue keep their albedo however deep they sit: the shadow maps already
            # darken what the lips hide (appearance.Occlusion). The socket's far end stands for the
            # throat, an opening the mesh closes, so it alone darkens with depth.
            depth, grain = f[F_DEPTH, i], _nz(noise, offsets, N_FINE, nr, nc)
            if p == TEETH:
                gap = s[S_TEETH_GAPS] * _clip01(_F1 - f[F_TOOTH_GAP, i] / _f(0.1))
                shade = (_F1 - gap) * (_F1 + _f(0.03) * grain)
                colour, spec = C_TEETH, _f(0.5)
            elif p == GUMS:
                colour, shade, spec = C_GUMS, _F1 + _f(0.05) * grain, _f(0.4)
            elif p == TONGUE:
                colour, shade, spec = C_TONGUE, _F1 + _f(0.12) * grain, _f(0.5)
            elif p == MOUTH_SOCKET:
                colour, shade, spec = C_SOCKET, _F1 - _f(0.9) * depth, _f(0.3)
            else:
                colour, shade, spec = C_SOCKET, _f(0.4), _f(0.2)
            for j in range(3):
                out[i, j] = col[colour, j] * shade
            out[i, 3] = spec


@numba.njit(cache=True, fastmath=True)
def _lids(out, sites, f, col, s):
    """Around the eyes: darker (most under them), a dark lash line on the upper lid, moist pink
    lid margins inside the opening."""
    for i in sites:
        eye_d, up = f[F_EYE_D, i], f[F_EYE_UP, i] > 0
        if eye_d < 0:
            _mix(out, i, col, C_LIP, _f(0.5) * _clip01(-eye_d * 12))
            out[i, 3] = max(out[i, 3], _f(0.7))
            continue
        around = _clip01(_F1 - eye_d / _f(0.7)) * (_f(0.6) if up else _F1)
        _mix(out, i, col, C_EYE_SHADE, s[S_EYE_SHADE] * around)
        _mix(out, i, col, C_LASHES, _clip01(_F1 - eye_d / _f(0.06)) * (_f(0.9) if up else _f(0.3)))


@numba.njit(cache=True, fastmath=True)
def _freckles(out, sites, f, noise, offsets, col, s, shift, step):
    for i in sites:
        nr, nc = _at(i, shift, step)
        spot = _nz(noise, offsets, N_SPOTS, nr, nc)
        a = _clip01((spot - s[S_FRECKLE_THRESHOLD]) * _f(1.5)) * s[S_FRECKLES] * f[F_FRECKLE, i]
        _mix(out, i, col, C_FRECKLE, a)


@numba.njit(cache=True, fastmath=True)
def _lips(out, sites, f, noise, offsets, col, s, shift, step):
    """Lips inside their outline (shifted for fuller or thinner lips), lighter lower lip, moist inside."""
    for i in sites:
        nr, nc = _at(i, shift, step)
        lip_d = f[F_LIP_D, i]
        a = _clip01((lip_d + s[S_LIP_SHIFT]) / _f(0.05) + _f(0.5))
        wet = _clip01(lip_d * _f(6.0))
        lift = (_f(0.06) if f[F_LIP_UP, i] < 0 else _F0) + _f(0.04) * _nz(noise, offsets, N_FINE, nr, nc)
        for j in range(3):
            lip = col[C_LIP, j] * (_F1 + lift - _f(0.1) * wet)
            out[i, j] += a * (lip - out[i, j])
        out[i, 3] += a * (s[S_LIP_SHINE] * (_f(0.7) + _f(0.3) * wet) - out[i, 3])


@numba.njit(cache=True, fastmath=True)
def _brows(out, cover, sites, f, noise, offsets, col, s, shift, step):
    """Brows along the brow landmarks: thickness from the inner end to the tail, an arch, hairs."""
    for i in sites:
        nr, nc = _at(i, shift, step)
        t, d = f[F_BROW_T, i], f[F_BROW_D, i]
        span = _clip01(t)
        at = s[S_BROW_ARCH_AT]
        bend = (span - at) / (at if span < at else _F1 - at)
        half = _f(0.5) * (s[S_BROW_INNER] + span * (s[S_BROW_OUTER] - s[S_BROW_INNER]))
        # The landmarks run along the brow's upper part; the arch varies around theirs.
        centre = (s[S_BROW_OFFSET] - _f(0.5) * half + s[S_BROW_ARCH] * (_F1 - bend * bend)
                  - _f(0.25) * _clip01(t - _F1))
        hairs = _nz(noise, offsets, N_STRANDS_U, nr, nc)
        edge = half - abs(d - centre) + _f(0.01) * hairs  # hairs stray over the outline
        body = _f(0.75) + _f(0.25) * _clip01(t * 5) * _clip01((s[S_BROW_END] - t) * 3)  # sparser ends
        a = (body * _clip01(edge / _f(0.06) + _f(0.5)) * _clip01((t - s[S_BROW_START]) / _f(0.15))
             * _clip01((s[S_BROW_END] - t) / _f(0.08)) * s[S_BROW_DENSITY]
             * _clip01(_F1 - s[S_BROW_STRANDS] * _f(0.12) * (_F1 - hairs)))
        _mix(out, i, col, C_BROW, a)
        out[i, 3] += a * (_f(0.15) - out[i, 3])
        cover[i] = max(cover[i], a)


@numba.njit(cache=True, fastmath=True)
def _hair(out, cover, sites, f, noise, offsets, col, s, hairline, crown, shift, step):
    """Scalp hair above the hairline (and, when bald, below the crown line), not on the ears."""
    for i in sites:
        nr, nc = _at(i, shift, step)
        h, az = f[F_HEIGHT, i], f[F_AZIMUTH, i]
        line = _knots(hairline, az) - s[S_WIDOWS_PEAK] * _clip01(_F1 - az / _f(7.0))
        if h < line - 1:
            continue
        jitter = _f(0.25) * _nz(noise, offsets, N_MEDIUM, nr, nc) + _f(0.1) * _nz(noise, offsets, N_FINE, nr, nc)
        a = (_clip01((h - line + jitter) / s[S_HAIR_SOFT]) * _clip01((_knots(crown, az) - h + jitter) / s[S_HAIR_SOFT])
             * (_F1 - f[F_EAR, i]) * s[S_HAIR_DENSITY])
        if a <= 0:
            continue
        strand = _nz(noise, offsets, N_STRANDS_V, nr, nc)
        grey = s[S_GREY] * _clip01(_f(0.7) + _f(0.3) * _nz(noise, offsets, N_STRANDS_V, nr + 101, nc + 57))
        for j in range(3):
            hair = (col[C_HAIR, j] + grey * (col[C_GREY, j] - col[C_HAIR, j])) * (_f(0.88) + _f(0.15) * strand)
            out[i, j] += a * (hair - out[i, j])
        out[i, 3] += a * (s[S_HAIR_SHINE] * (_f(0.7) + _f(0.3) * strand) - out[i, 3])
        cover[i] = max(cover[i], a)


@numba.njit(cache=True, fastmath=True)
def _beard(out, cover, sites, f, noise, offsets, col, s, shift, step):
    """Facial hair in its zone (below the cheek line, above the neck limit, off the lips and ears):
    moustache above the mouth, chin below it, cheeks and jaw beside; stubble or longer."""
    mouth = s[S_MOUTH_DEGREES]
    soft = _f(2.0) - s[S_BEARD_LENGTH] * _f(1.5)  # stubble fades out, a beard ends
    for i in sites:
        nr, nc = _at(i, shift, step)
        az = f[F_AZIMUTH, i]
        jitter = _f(0.3) * _nz(noise, offsets, N_MEDIUM, nr, nc)
        cheeks = _clip01((az - mouth) / _f(10.0))  # 0 over the mouth: the moustache keeps to the upper lip
        top = s[S_BEARD_TOP] * cheeks - f[F_BEARD_H, i] + jitter
        zone = (_clip01(top / (_f(0.3) + cheeks * (soft - _f(0.3))))
                * _clip01((f[F_JAW_H, i] + s[S_BEARD_NECK] + jitter) / soft) * _clip01((82 - az) / _f(6.0))
                * (_F1 - f[F_EAR, i]) * _clip01(-(f[F_LIP_D, i] + _f(0.03)) / _f(0.03)))
        if zone <= 0:
            continue
        lip_up = f[F_LIP_UP, i]
        above = _clip01(lip_up * 12) * _clip01((mouth + 3 - az) / _f(4.0))
        chin = _clip01(-lip_up * 12) * _clip01((mouth + 6 - az) / _f(4.0))
        style = s[S_MOUSTACHE] * above + s[S_CHIN] * chin + s[S_CHEEKS] * (_F1 - above - chin)
        if s[S_BEARD_LENGTH] < 0.3:  # stubble is thickest around the mouth
            style *= _f(0.7) + _f(0.3) * (above + chin)
        length = s[S_BEARD_LENGTH]  # strands when long, grain when short
        hairs = length * _nz(noise, offsets, N_STRANDS_V, nr, nc) + (_F1 - length) * _nz(noise, offsets, N_FINE, nr, nc)
        a = zone * style * s[S_BEARD_DENSITY] * _clip01(_f(0.85) + _f(0.15) * hairs)
        _mix(out, i, col, C_BEARD, a)
        out[i, 3] += a * (_f(0.12) - out[i, 3])
        cover[i] = max(cover[i], a)


@numba.njit(cache=True, fastmath=True)
def _irises(out, sites, f, noise, col, s):
    """Pupil, iris (radial fibres, lighter collarette) and limbal ring over the sclera."""
    m = noise.shape[1] - 1
    iris_deg, pupil_deg = s[S_IRIS_DEGREES], s[S_PUPIL_DEGREES]
    for i in sites:
        theta, psi = f[F_EYE_THETA, i], f[F_EYE_PSI, i]
        a = _clip01((iris_deg - theta) / _f(1.5) + _f(0.5))
        if a <= 0:
            continue
        fibre = noise[N_STRANDS_V, int(theta * 4) & m, int((psi + 180) * _f(0.7)) & m]
        rr = _clip01((theta - pupil_deg) / (iris_deg - pupil_deg))
        ring = (_F1 - s[S_LIMBUS] * _clip01((rr - _f(0.75)) * 4)) * (_f(0.85) + _f(0.2) * fibre)
        pupil = _clip01((pupil_deg - theta) / _f(1.0) + _f(0.5))
        for j in range(3):
            iris = col[C_IRIS_INNER, j] + _clip01(rr * _f(2.5) - _f(0.3)) * (col[C_IRIS, j] - col[C_IRIS_INNER, j])
            iris = iris * ring + pupil * (_f(0.02) - iris * ring)
            out[i, j] += a * (iris - out[i, j])
        out[i, 3] += a * (_f(0.9) - out[i, 3])


@numba.njit(cache=True, fastmath=True)
def _moles(out, sites, radii, darkness, colour, res):
    """Small dark discs around flat texel indices sites (tile 0); colour multiplies the skin."""
    for m in range(sites.shape[0]):
        r0, c0 = sites[m] // res, sites[m] % res
        reach = int(radii[m]) + 2
        for r in range(max(r0 - reach, 0), min(r0 + reach + 1, res)):
            for c in range(max(c0 - reach, 0), min(c0 + reach + 1, res)):
                a = darkness[m] * _clip01(radii[m] + _f(0.5) - np.sqrt(_f((r - r0) ** 2 + (c - c0) ** 2)))
                for j in range(3):
                    out[r * res + c, j] *= _F1 - a * (_F1 - colour[j])


@numba.njit(cache=True)
def _paint(out, cover, part, f, noise, offsets, col, s, hairline, crown, sites, res):
    """The whole atlas, flat: out (n_tiles * R * R, 4); cover gets where hair hides the skin."""
    shift, step = int(np.log2(res)), noise.shape[1] // res
    _base(out, part, f, noise, offsets, col, s, shift, step)
    _lids(out, sites[SITE_LIDS], f, col, s)
    if s[S_FRECKLES] > 0:
        _freckles(out, sites[SITE_FRECKLES], f, noise, offsets, col, s, shift, step)
    _lips(out, sites[SITE_LIPS], f, noise, offsets, col, s, shift, step)
    _brows(out, cover, sites[SITE_BROWS], f, noise, offsets, col, s, shift, step)
    if s[S_HAIR_DENSITY] > 0:
        _hair(out, cover, sites[SITE_HAIR], f, noise, offsets, col, s, hairline, crown, shift, step)
    if s[S_BEARD_DENSITY] > 0:
        _beard(out, cover, sites[SITE_BEARD], f, noise, offsets, col, s, shift, step)
    _irises(out, sites[SITE_IRISES], f, noise, col, s)
    for i in range(out.shape[0]):
        for j in range(4):
            out[i, j] = _clip01(out[i, j])


# Skin albedo from very light to very dark (sRGB-like, as the shading multiplies it); undertones
# and brightness vary around each.
SKIN_TONES = np.array([[0.96, 0.80, 0.71], [0.91, 0.73, 0.61], [0.84, 0.64, 0.50], [0.76, 0.56, 0.41],
                       [0.66, 0.46, 0.33], [0.53, 0.35, 0.25], [0.40, 0.26, 0.18], [0.29, 0.19, 0.13],
                       [0.20, 0.13, 0.10]], np.float32)
UNDERTONE = np.array([-0.02, 0.0, -0.04], np.float32)  # log-RGB direction: + golden/olive, - pink
# Hair colours with their shares among the lightest and the darkest skins (interpolated by tone).
HAIR_COLOURS = np.array([[0.035, 0.030, 0.028], [0.10, 0.07, 0.05], [0.22, 0.14, 0.08], [0.38, 0.27, 0.16],
                         [0.52, 0.40, 0.24], [0.72, 0.60, 0.40], [0.45, 0.18, 0.08], [0.28, 0.11, 0.06]], np.float32)
HAIR_SHARES = np.array([[0.12, 0.25, 0.22, 0.14, 0.10, 0.08, 0.05, 0.04], [0.70, 0.25, 0.05, 0, 0, 0, 0, 0]])
IRIS_COLOURS = np.array([[0.16, 0.09, 0.04], [0.32, 0.18, 0.07], [0.42, 0.35, 0.16], [0.28, 0.40, 0.24],
                         [0.28, 0.44, 0.62], [0.42, 0.50, 0.56], [0.52, 0.36, 0.12]], np.float32)
IRIS_SHARES = np.array([[0.15, 0.2, 0.15, 0.12, 0.25, 0.1, 0.03], [0.7, 0.27, 0.03, 0, 0, 0, 0]])
LIPSTICKS = np.array([[0.62, 0.08, 0.12], [0.78, 0.30, 0.38], [0.66, 0.40, 0.36], [0.40, 0.10, 0.20],
                      [0.85, 0.35, 0.30]], np.float32)
EYESHADOWS = np.array([[0.35, 0.25, 0.20], [0.30, 0.30, 0.33], [0.50, 0.35, 0.45], [0.55, 0.42, 0.30]], np.float32)
FACIAL_HAIR = ("none", "stubble", "moustache", "goatee", "beard")
FACIAL_HAIR_SHARES = np.array([0.4, 0.1, 0.15, 0.35])  # of the styles, among identities with facial hair
HAIRLINES = ("full", "receding", "widows_peak", "bald", "shaved")


@dataclass(frozen=True)
class TextureConfig:
    """Shares of identities (and, for make-up, of photos) that show each feature."""

    facial_hair: float = 0.35   # stubble, moustache, goatee or beard
    bald: float = 0.10          # a bald crown with hair on the sides and back
    shaved: float = 0.05        # a buzz cut over the whole scalp
    receding: float = 0.25
    widows_peak: float = 0.12
    freckles: float = 0.4       # among the lightest skins; fewer as the tone darkens
    grey: float = 0.15
    max_moles: int = 6
    makeup: float = 0.35        # per photo, among identities without facial hair


@dataclass(eq=False)
class Look:
    """One identity's texture and what other painters (hair volume, accessories) match it to.

    ``atlas`` is the texture to render with (ATLAS_SPEC). vary_photo rewrites its face box in
    place from the identity's own copy of it, so the identity outside that box never changes.
    """

    atlas: np.ndarray          # (n_tiles, R, R, 4) float32
    hair_colour: np.ndarray    # (3,) float32, the scalp hair's mean colour
    skin_colour: np.ndarray    # (3,) float32
    tone: float                # 0 lightest ... 1 darkest skin
    iris_colour: np.ndarray    # (3,) float32
    facial_hair: str           # one of FACIAL_HAIR
    hairline: str              # one of HAIRLINES
    layout: TextureLayout = field(repr=False)
    config: TextureConfig = field(repr=False)
    colours: np.ndarray = field(repr=False)     # (len(COLOUR_NAMES), 3) the palette painted with
    scalars: np.ndarray = field(repr=False)     # (len(SCALAR_NAMES),) the numbers painted with
    base_face: np.ndarray = field(repr=False)   # the identity's texels of tile 0's face box
    bare: np.ndarray = field(repr=False)        # 1 - hair cover (brows, scalp, beard) over the face box


def _choose(rng: np.random.Generator, weights: np.ndarray) -> int:
    """An index drawn with probabilities proportional to weights (one uniform draw)."""
    cumulative = np.cumsum(weights)
    return int(np.searchsorted(cumulative, rng.uniform() * cumulative[-1], side="right"))


def _pick(rng: np.random.Generator, colours: np.ndarray, shares: np.ndarray, tone: float) -> np.ndarray:
    """A colour drawn with shares interpolated between the lightest and the darkest skin."""
    return colours[_choose(rng, (1 - tone) * shares[0] + tone * shares[1])] * rng.uniform(0.85, 1.15)


def _hairline(rng: np.random.Generator, cfg: TextureConfig) -> tuple[str, np.ndarray, np.ndarray, float, float]:
    """Kind, hairline and crown knots (cm above the brows every HAIRLINE_STEP degrees from the
    front), widow's peak depth (cm) and hair density."""
    kind = HAIRLINES[_choose(rng, _shares(cfg))]
    front = rng.uniform(3.8, 6.3)
    recede = rng.uniform(1.0, 4.0) if kind in ("receding", "bald") else rng.uniform(0.0, 0.6)
    sideburn = rng.uniform(-6.5, -2.8)
    nape = rng.uniform(-9.5, -7.5)
    line = np.array([front, front + 0.2 + 0.3 * recede, front + recede, sideburn + 1.0, sideburn,
                     -4.5, -6.5, nape + 0.5, nape], np.float32)
    crown = np.full(9, 99.0, np.float32)
    if kind == "bald":  # hair on the sides and the back only
        crown[:] = np.array([-20, -20, -20, 1.5, 2.5, 3.5, 4.0, 4.5, 4.5]) + rng.uniform(-1.5, 1.0)
    peak = rng.uniform(0.6, 1.6) if kind == "widows_peak" else 0.0
    density = rng.uniform(0.25, 0.45) if kind == "shaved" else rng.uniform(0.8, 1.0)
    return kind, line, crown, peak, density


def _shares(cfg: TextureConfig) -> np.ndarray:
    rest = cfg.receding + cfg.widows_peak + cfg.bald + cfg.shaved
    if rest > 1:
        raise SiamfaceError(f"texture config: receding + widows_peak + bald + shaved = {rest:.2f}; keep it <= 1")
    return np.array([1 - rest, cfg.receding, cfg.widows_peak, cfg.bald, cfg.shaved])


def _facial_hair(rng: np.random.Generator, cfg: TextureConfig, s: np.ndarray) -> str:
    """Style and its scalars: density, zone limits, which parts grow, stubble or longer."""
    if rng.uniform() >= cfg.facial_hair:
        return "none"
    style = FACIAL_HAIR[1 + _choose(rng, FACIAL_HAIR_SHARES)]
    long = style != "stubble"
    s[S_BEARD_DENSITY] = rng.uniform(0.6, 0.95) if long else rng.uniform(0.15, 0.45)
    s[S_BEARD_LENGTH] = rng.uniform(0.4, 1.0) if long else rng.uniform(0.0, 0.25)
    s[S_BEARD_TOP] = rng.uniform(-1.0, 0.8)
    s[S_BEARD_NECK] = rng.uniform(1.0, 4.0) if style in ("stubble", "beard") else rng.uniform(0.0, 1.2)
    s[S_MOUSTACHE] = 1.0 if style != "goatee" else float(rng.uniform() < 0.7)
    s[S_CHIN] = float(style != "moustache")
    s[S_CHEEKS] = float(style in ("stubble", "beard"))
    return style


def paint_identity(layout: TextureLayout, rng: np.random.Generator, cfg: TextureConfig = TextureConfig()) -> Look:
    """One person's texture: skin tone and its variation, freckles, moles, brows, eyes, lips,
    scalp hair and hairline, facial hair, teeth and mouth; everything drawn from rng."""
    tone = float(rng.uniform())
    x = tone * (len(SKIN_TONES) - 1)
    lo = min(int(x), len(SKIN_TONES) - 2)
    skin = SKIN_TONES[lo] + (x - lo) * (SKIN_TONES[lo + 1] - SKIN_TONES[lo])
    skin = skin * np.exp(rng.uniform(-1, 1) * UNDERTONE) * rng.uniform(0.95, 1.05)
    hair = _pick(rng, HAIR_COLOURS, HAIR_SHARES, tone)
    grey = rng.uniform(0.2, 1.0) if rng.uniform() < cfg.grey else 0.0
    iris = _pick(rng, IRIS_COLOURS, IRIS_SHARES, tone)
    col = np.empty((len(COLOUR_NAMES), 3), np.float32)
    col[C_SKIN] = skin
    col[C_FLUSH] = skin * [1.08, 0.78, 0.78]
    col[C_EYE_SHADE] = skin * [0.72, 0.62, 0.64]
    col[C_FRECKLE] = skin * [0.78, 0.62, 0.52]
    lip_tint = (1 - tone) * np.array([0.88, 0.62, 0.63]) + tone * np.array([0.82, 0.66, 0.70])  # pink to brown
    col[C_LIP] = skin * lip_tint * rng.uniform(0.85, 1.05)
    col[C_HAIR] = hair
    col[C_GREY] = np.array([0.72, 0.71, 0.69]) * rng.uniform(0.8, 1.15)
    col[C_BROW] = (hair + 0.5 * grey * (col[C_GREY] - hair)) * rng.uniform(0.6, 0.95)
    col[C_BEARD] = (hair + grey * (col[C_GREY] - hair)) * rng.uniform(0.75, 1.05)
    col[C_LASHES] = np.minimum(hair * 0.5, 0.08)
    col[C_IRIS] = iris
    col[C_IRIS_INNER] = iris * rng.uniform(0.9, 1.4, size=3) + [0.05, 0.03, 0.0]
    col[C_SCLERA] = np.array([0.78, 0.74, 0.70]) * rng.uniform(0.85, 1.05)  # lids and lashes shade it in photos
    col[C_TEETH] = np.array([0.93, 0.91, 0.85]) + rng.uniform() ** 1.5 * np.array([-0.15, -0.21, -0.33])
    col[C_GUMS] = np.array([0.80, 0.45, 0.47]) + tone * rng.uniform(0.2, 0.8) * np.array([-0.35, -0.21, -0.22])
    col[C_TONGUE] = np.array([0.70, 0.38, 0.40]) * rng.uniform(0.8, 1.05)
    col[C_SOCKET] = np.array([0.30, 0.10, 0.10]) * rng.uniform(0.6, 1.2)
    col[C_MOLE] = [0.45, 0.33, 0.28]

    s = np.zeros(len(SCALAR_NAMES), np.float32)
    s[S_MOTTLE], s[S_BLOTCH], s[S_PORES] = rng.uniform(0.01, 0.04), rng.uniform(0.005, 0.025), rng.uniform(0.01, 0.03)
    s[S_REDNESS] = rng.uniform(0.05, 0.35) * (1 - 0.6 * tone)
    s[S_EYE_SHADE] = rng.uniform(0.1, 0.5)
    if rng.uniform() < cfg.freckles * (1 - tone) ** 2:
        s[S_FRECKLES], s[S_FRECKLE_THRESHOLD] = rng.uniform(0.3, 0.9), rng.uniform(0.6, 1.6)
    s[S_SHINE], s[S_TZONE_SHINE] = rng.uniform(0.15, 0.45), rng.uniform(0.2, 1.0)
    s[S_LIP_SHIFT], s[S_LIP_SHINE] = rng.uniform(-0.03, 0.03), rng.uniform(0.4, 0.7)
    s[S_BROW_INNER], s[S_BROW_OUTER] = rng.uniform(0.12, 0.26), rng.uniform(0.05, 0.12)
    s[S_BROW_OFFSET], s[S_BROW_ARCH] = rng.uniform(-0.04, 0.03), rng.uniform(-0.03, 0.05)
    s[S_BROW_ARCH_AT] = rng.uniform(0.4, 0.75)
    s[S_BROW_START], s[S_BROW_END] = rng.uniform(-0.12, 0.05), rng.uniform(0.85, 1.12)
    s[S_BROW_DENSITY], s[S_BROW_STRANDS] = rng.uniform(0.5, 0.9), rng.uniform(0.4, 1.0)
    hairline, line, crown, s[S_WIDOWS_PEAK], s[S_HAIR_DENSITY] = _hairline(rng, cfg)
    s[S_HAIR_SOFT], s[S_HAIR_SHINE], s[S_GREY] = rng.uniform(0.3, 0.9), rng.uniform(0.2, 0.45), grey
    beard = _facial_hair(rng, cfg, s)
    s[S_MOUTH_DEGREES] = layout.mouth_degrees
    s[S_IRIS_DEGREES] = layout.iris_degrees * rng.uniform(0.93, 1.07)
    s[S_PUPIL_DEGREES] = s[S_IRIS_DEGREES] * rng.uniform(0.28, 0.45)
    s[S_LIMBUS], s[S_VEINS], s[S_TEETH_GAPS] = rng.uniform(0.1, 0.5), rng.uniform(0.0, 0.5), rng.uniform(0.3, 0.9)
    offsets = rng.integers(0, layout.noise.shape[1], size=(len(NOISE_NAMES), 2))

    s[S_LASH_LENGTH] = rng.uniform(0.4, 0.9)
    res = layout.resolution
    atlas = np.empty((layout.n_tiles, res, res, 4), np.float32)
    cover = np.zeros((layout.n_tiles, res, res), np.float32)
    flat = atlas.reshape(-1, 4)
    _paint(flat, cover.reshape(-1), layout.part.reshape(-1), layout.fields.reshape(len(FIELD_NAMES), -1),
           layout.noise, offsets, col, s, line, crown, layout.sites, res)
    n = int(rng.integers(0, cfg.max_moles + 1))
    if n:
        _moles(flat, layout.mole_sites[rng.integers(0, len(layout.mole_sites), n)],
               (rng.uniform(0.4, 1.4, n) * res / 256).astype(np.float32), rng.uniform(0.4, 0.9, n).astype(np.float32),
               col[C_MOLE], res)
    r0, r1, c0, c1 = layout.face_box
    return Look(atlas=atlas, hair_colour=hair.astype(np.float32), skin_colour=col[C_SKIN].copy(), tone=tone,
                iris_colour=col[C_IRIS].copy(), facial_hair=beard, hairline=hairline, layout=layout, config=cfg,
                colours=col, scalars=s, base_face=atlas[0, r0:r1, c0:c1].copy(), bare=1.0 - cover[0, r0:r1, c0:c1])


# Per-photo colours (rows) and amounts (entries) for _vary.
(V_FLUSH, V_LIPSTICK, V_SHADOW, V_BLUSH) = range(4)
(A_FLUSH, A_LIPSTICK, A_LIP_SHIFT, A_LINER, A_SHADOW, A_BLUSH, A_GLOSS) = range(7)


@numba.njit(cache=True, fastmath=True)
def _vary(box, base, bare, shine_box, tone, shine, sites, f, r0, c0, res, col, amount):
    """Tile 0's face box (h, w, 4) from the identity's base: bare skin (not under hair) toned,
    shine scaled, then flush, blush, eye make-up and lipstick at sites (flat tile-0 indices)."""
    for r in range(box.shape[0]):
        for c in range(box.shape[1]):
            for j in range(3):
                box[r, c, j] = _clip01(base[r, c, j] * (_F1 + bare[r, c] * (tone[j] - _F1)))
            box[r, c, 3] = _clip01(base[r, c, 3] * (_F1 + shine * shine_box[r, c]))
    if not amount.any():
        return
    for i in sites:
        r, c = i // res - r0, i % res - c0
        px = box[r, c]
        cheek, eye_d = f[F_CHEEK, i], f[F_EYE_D, i]
        flush = amount[A_FLUSH] * bare[r, c] * f[F_RED, i]
        blush = amount[A_BLUSH] * bare[r, c] * cheek
        lip = amount[A_LIPSTICK] * _clip01((f[F_LIP_D, i] + amount[A_LIP_SHIFT]) / _f(0.04) + _f(0.5))
        liner, shadow = _F0, _F0
        if _F0 < eye_d < _f(0.6):
            up = f[F_EYE_UP, i] > 0
            liner = amount[A_LINER] * _clip01(_F1 - eye_d / (_f(0.1) if up else _f(0.05)))
            shadow = amount[A_SHADOW] * bare[r, c] * _clip01((_f(0.6) - eye_d) * 4) * (_F1 if up else _F0)
        for j in range(3):
            v = px[j] + flush * (col[V_FLUSH, j] - px[j]) + blush * (col[V_BLUSH, j] - px[j])
            v += shadow * (col[V_SHADOW, j] - v)
            v += lip * (col[V_LIPSTICK, j] - v)
            px[j] = _clip01(v + liner * (_f(0.03) - v))
        px[3] += lip * (amount[A_GLOSS] - px[3])


def vary_photo(look: Look, rng: np.random.Generator) -> np.ndarray:
    """What belongs to the moment: a slight skin-tone shift, flush, sweat or matte shine, make-up.
    Rewrites the face box of look.atlas from the identity's own copy and returns look.atlas."""
    lay = look.layout
    col = np.zeros((4, 3), np.float32)
    amount = np.zeros(7, np.float32)
    tone = np.exp(rng.normal(0.0, 0.03) + rng.normal(0.0, 0.01, 3)).astype(np.float32)
    shine = _f(rng.uniform(-0.3, 0.8))
    col[V_FLUSH] = look.colours[C_FLUSH]
    if rng.uniform() < 0.5:
        amount[A_FLUSH] = rng.uniform(0.0, 0.5) ** 2 * (1 - 0.6 * look.tone)
    if look.facial_hair == "none" and rng.uniform() < look.config.makeup:
        if rng.uniform() < 0.7:
            col[V_LIPSTICK] = LIPSTICKS[rng.integers(len(LIPSTICKS))] * rng.uniform(0.7, 1.1)
            amount[A_LIPSTICK], amount[A_LIP_SHIFT] = rng.uniform(0.4, 0.9), rng.uniform(-0.02, 0.03)
            amount[A_GLOSS] = rng.uniform(0.4, 0.9)
        if rng.uniform() < 0.5:
            amount[A_LINER] = rng.uniform(0.4, 0.9)
        if rng.uniform() < 0.4:
            col[V_SHADOW], amount[A_SHADOW] = EYESHADOWS[rng.integers(len(EYESHADOWS))], rng.uniform(0.15, 0.5)
        if rng.uniform() < 0.4:
            col[V_BLUSH], amount[A_BLUSH] = look.colours[C_SKIN] * [1.1, 0.75, 0.8], rng.uniform(0.1, 0.3)
    r0, r1, c0, c1 = lay.face_box
    _vary(look.atlas[0, r0:r1, c0:c1], look.base_face, look.bare, lay.shine_box, tone, shine, lay.photo_sites,
          lay.fields[:, 0].reshape(len(FIELD_NAMES), -1), r0, c0, lay.resolution, col, amount)
    return look.atlas


def face_unwrap_table(path: str | Path, resolution: int = 64, mirror: bool = False) -> UnwrapTable:
    """The unwrap table (edge_runtime.unwrap) of the face's box in tile 0 at ``resolution`` texels
    per tile side: brows to chin and cheek to cheek with the margin per-photo variation uses
    (``_face_box``), each texel's covering triangle read from the version-2 face model's UV map.
    Tile 0 holds the face proper, whose vertices the version-1 model (the bundle's decoder) has.
    With ``mirror``, each painted texel's partner is the painted texel nearest its point's mirror
    image on the mean face (the UV layout itself is not symmetric), or none (-1) where that is
    farther than the texel spacing: the box's edge whose mirror side lies outside it."""
    a = _load_v2(path)
    uv, uv_tris = _repack_uv(a)
    tri, weights, painted = _barycentric(uv, uv_tris, _rasterize_ids(uv, uv_tris, len(TILE_NAMES), resolution))
    vertex_uv_index = np.zeros(len(a["mean"]), np.int32)
    vertex_uv_index[a["triangles"][::-1].ravel()] = uv_tris[::-1].ravel()
    r0, r1, c0, c1 = _face_box(uv[vertex_uv_index[a["landmarks68"]]], resolution)
    vertices = a["triangles"][tri[0, r0:r1, c0:c1]].astype(np.int32)
    keep = painted[0, r0:r1, c0:c1]
    vertices[~keep] = vertices[keep][0]  # unread, but a valid vertex
    weights = weights[0, r0:r1, c0:c1]
    partners = None
    if mirror:
        grid = np.einsum("hwk,hwkc->hwc", weights, a["mean"][vertices])
        both = keep[:, 1:] & keep[:, :-1]
        spacing = np.median(np.linalg.norm(np.diff(grid, axis=1), axis=-1)[both])
        texels = np.flatnonzero(keep.ravel())
        index, distance = mirror_partners(grid[keep], np.arange(len(texels)))
        partners = np.full(keep.size, -1, np.int32)
        partners[texels] = np.where(distance <= spacing, texels[index], -1)
        partners = partners.reshape(keep.shape)
    return UnwrapTable(vertices, weights, keep, partners)
