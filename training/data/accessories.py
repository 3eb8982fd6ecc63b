"""The head's own frame, small z-buffered shells placed in it, and the things people wear or hold
in front of their faces: glasses, caps and hats, hands, microphones, face masks.

Shells (hair, clothes, hats) are grids of points built in the head frame, filled by a numba
scanline pass against a copy of the head's z-buffer into a (u, v, material + shade) buffer,
then coloured per pixel by one more pass and composited with soft edges. Glasses are
3D polylines tested segment by segment against the same z-buffer, so arms vanish behind the
head and hair. Hands, microphones and masks are flat cv2 drawings over the lower face.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numba
import numpy as np

from siamface.edge_runtime.camera import FLIP, euler_to_matrix

# Materials: pattern codes of the shading table (column 0 of a row).
SOLID, HAIR, STRIPES, CHECKS, OPENING, KNIT = 0, 1, 2, 3, 4, 5
TABLE_COLUMNS = 16  # kind, rgb, rgb2, freq, phase, wave amp, wave freq, param, spec, opacity, ambient, (unused)
MAX_MATERIALS = 8
# Fast math but for the no-infinity and no-NaN assumptions: z-buffers hold +inf where empty.
KEEP_INF = {"nsz", "arcp", "contract", "afn", "reassoc"}


@dataclass(frozen=True)
class HeadFrame:
    """The head upright in its own frame ("U"): the model's axes (+x to the image's right at zero
    yaw, +y up, +z towards the viewer) in pixels at the head's depth, origin arbitrary. Points
    map to image space (x, y pixels, z depth, larger farther) through the weak-perspective
    camera of the pose (``image = U @ rot.T``) or, given one, the renderer's pinhole camera. The
    cranium is fitted by an axis-aligned ellipsoid."""

    rot: np.ndarray        # (3, 3) float32, the camera's rotation with the axis flip
    landmarks: np.ndarray  # (68, 3) float32, in U
    centre: np.ndarray     # (3,) cranium ellipsoid centre: x mid, y at the brows, z mid
    radii: np.ndarray      # (3,) half-width, brows to crown, half-depth
    unit: float            # the cranium's half-width in pixels: sizes of things placed are multiples of it
    lens: np.ndarray       # float32 (focal, cx, cy, distance, scale) of the pinhole; focal 0: weak perspective

    @classmethod
    def fit(cls, verts: np.ndarray, landmarks: np.ndarray, angles: tuple[float, float, float],
            skull: np.ndarray, camera=None) -> "HeadFrame":
        """From image-space vertices, their landmarks (same space), the pose, the indices of head
        vertices (face and back of head) to fit the cranium on, and the renderer's pinhole camera
        (training.data.sampling.PinholeCamera; None: weak perspective)."""
        if camera is None:
            rot, lens = (FLIP @ euler_to_matrix(*angles)).astype(np.float32), np.float32([0, 0, 0, 1, 1])
        else:
            rot = np.asarray(camera.rotation, np.float32)
            lens = np.float32([camera.focal, camera.centre[0], camera.centre[1], camera.distance, camera.scale])
        lm = np.empty((len(landmarks), 3), np.float32)
        _unproject(np.ascontiguousarray(landmarks, np.float32), np.arange(len(landmarks)), rot, lens, lm)
        centre, radii = np.empty(3, np.float32), np.empty(3, np.float32)
        _fit_cranium(np.ascontiguousarray(verts, np.float32), np.ascontiguousarray(skull, np.int64), rot, lens,
                     np.float32(lm[17:27, 1].mean()), centre, radii)
        return cls(rot, lm, centre, radii, float(radii[0]), lens)

    def from_image(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) image-space points -> U (float32)."""
        pts = np.ascontiguousarray(points, np.float32)
        out = np.empty_like(pts)
        _unproject(pts, np.arange(len(pts)), self.rot, self.lens, out)
        return out

    def to_image(self, points: np.ndarray) -> np.ndarray:
        """(..., 3) points in U -> image space (x, y pixels, z depth), float32."""
        pts = np.ascontiguousarray(points, np.float32)
        out = np.empty(pts.shape, np.float32)
        _project(pts.reshape(-1, 3), self.rot, self.lens, np.float32(0), out.reshape(-1, 3))
        return out

    def ellipsoid(self, azimuth: np.ndarray, s: np.ndarray, inflate: np.ndarray | float) -> np.ndarray:
        """Points of the inflated cranium by azimuth (0 at the nose, +pi/2 at the image's right at
        zero yaw) and ``s`` (0 at the crown, 1 at the brow line; beyond 1 straight down, one head
        unit per unit of s, at the equator's radius). Returns (..., 3) in U."""
        azimuth, s = np.broadcast_arrays(azimuth, s)
        theta = np.minimum(s, 1.0) * (np.pi / 2)
        ring = np.sin(theta) * inflate
        out = np.empty(azimuth.shape + (3,), np.float32)
        out[..., 0] = self.centre[0] + self.radii[0] * ring * np.sin(azimuth)
        out[..., 1] = self.centre[1] + self.radii[1] * np.cos(theta) * inflate - np.maximum(s - 1.0, 0.0) * self.unit
        out[..., 2] = self.centre[2] + self.radii[2] * ring * np.cos(azimuth)
        return out


@numba.njit(cache=True, fastmath=True)
def _project(points, rot, lens, bias, out):
    """HeadFrame.to_image of (n, 3) points into out, depth pulled ``bias`` towards the viewer."""
    n = points.shape[0]
    f, cx, cy, d, s = lens[0], lens[1], lens[2], lens[3], lens[4]
    for i in range(n):
        x, y, z = points[i, 0], points[i, 1], points[i, 2]
        ix = rot[0, 0] * x + rot[0, 1] * y + rot[0, 2] * z
        iy = rot[1, 0] * x + rot[1, 1] * y + rot[1, 2] * z
        iz = rot[2, 0] * x + rot[2, 1] * y + rot[2, 2] * z
        if f > 0.0:  # camera space in cm relative to the pivot, then the pinhole
            zc = max(iz / s + d, 0.1 * d)
            ix, iy, iz = ix / s * f / zc + cx, iy / s * f / zc + cy, (zc - d) * s
        out[i, 0], out[i, 1], out[i, 2] = ix, iy, iz - bias


@numba.njit(cache=True, fastmath=True)
def _unproject(points, rows, rot, lens, out):
    """HeadFrame.from_image of points[rows] into out (the inverse of _project without bias)."""
    f, cx, cy, d, s = lens[0], lens[1], lens[2], lens[3], lens[4]
    for k in range(rows.shape[0]):
        x, y, z = points[rows[k], 0], points[rows[k], 1], points[rows[k], 2]
        if f > 0.0:  # back through the pinhole to camera space (cm), relative to the pivot, in pixels
            zc = d + z / s
            x, y, z = (x - cx) * zc / f * s, (y - cy) * zc / f * s, (zc - d) * s
        for j in range(3):  # U = image @ rot
            out[k, j] = x * rot[0, j] + y * rot[1, j] + z * rot[2, j]


@numba.njit(cache=True, fastmath=True)
def _fit_cranium(verts, skull, rot, lens, brow, centre, radii):
    """The axis-aligned ellipsoid through the cranium (skull vertices above 15 % of the way from
    the brow line to the crown), centred at the brow line, then grown to enclose all of them."""
    pts = np.empty((skull.shape[0], 3), np.float32)
    _unproject(verts, skull, rot, lens, pts)
    top = pts[:, 1].max()
    floor = brow + 0.15 * (top - brow)
    lo = np.full(3, 3e38, np.float32)  # (fast math assumes no infinities)
    hi = np.full(3, -3e38, np.float32)
    for k in range(pts.shape[0]):
        if pts[k, 1] > floor:
            for j in range(3):
                lo[j], hi[j] = min(lo[j], pts[k, j]), max(hi[j], pts[k, j])
    centre[0], centre[1], centre[2] = (lo[0] + hi[0]) / 2, brow, (lo[2] + hi[2]) / 2
    radii[0], radii[1], radii[2] = (hi[0] - lo[0]) / 2, top - brow, (hi[2] - lo[2]) / 2
    worst = 0.0
    for k in range(pts.shape[0]):
        if pts[k, 1] > floor:
            r = 0.0
            for j in range(3):
                q = (pts[k, j] - centre[j]) / radii[j]
                r += q * q
            worst = max(worst, r)
    for j in range(3):
        radii[j] *= np.sqrt(worst)  # a skull is boxier than an ellipsoid: enclose it


@numba.njit(cache=True, fastmath=True)
def _grid_attributes(pts, uv, rows, cols, closed, light, material, inner, outside, inside):
    """Per grid point, (u, v, material + shade) for its outside and its inside: the shade is the
    outward normal's (central differences along the rows, down, and the columns, to the right
    seen from outside; in image space) cosine with the light, the inside's ``inner`` times the
    inward one's."""
    for r in range(rows):
        ru, rd = max(r - 1, 0), min(r + 1, rows - 1)
        for c in range(cols):
            cl, cr = c - 1, c + 1
            if closed:
                cl, cr = cl % cols, cr % cols
            else:
                cl, cr = max(cl, 0), min(cr, cols - 1)
            a, b = rd * cols + c, ru * cols + c
            d, e = r * cols + cr, r * cols + cl
            dx, dy, dz = pts[a, 0] - pts[b, 0], pts[a, 1] - pts[b, 1], pts[a, 2] - pts[b, 2]
            ex, ey, ez = pts[d, 0] - pts[e, 0], pts[d, 1] - pts[e, 1], pts[d, 2] - pts[e, 2]
            nx, ny, nz = dy * ez - dz * ey, dz * ex - dx * ez, dx * ey - dy * ex
            lit = (nx * light[0] + ny * light[1] + nz * light[2]) / (np.sqrt(nx * nx + ny * ny + nz * nz) + 1e-12)
            i = r * cols + c
            outside[i, 0], outside[i, 1] = uv[r, c, 0], uv[r, c, 1]
            inside[i, 0], inside[i, 1] = uv[r, c, 0], uv[r, c, 1]
            outside[i, 2] = material + min(max(lit, 0.0), 0.999)
            inside[i, 2] = material + min(max(-lit * inner, 0.0), 0.999)


@numba.njit(cache=True, fastmath=KEEP_INF, inline="always")
def _edge(a, b, c, x2, eps, mid_fy):
    """(direction, offset, slope) of where c + a (x - x2) + b fy = eps along a row (see _fill_triangle)."""
    if a > 0.0:
        return 1, x2 + (eps - c) / a, -b / a
    if a < 0.0:
        return -1, x2 + (eps - c) / a, -b / a
    return (0 if c + b * mid_fy >= eps else 2), 0.0, 0.0


@numba.njit(cache=True, fastmath=KEEP_INF, inline="always")
def _span(direction, x, lo, hi):
    """The pixel range [lo, hi] cut by one edge's crossing x (rounded outwards: pixels are then tested)."""
    if direction == 1:
        return max(lo, int(np.floor(x))), hi
    if direction == -1:
        return lo, min(hi, int(np.ceil(x)))
    return (lo, hi) if direction == 0 else (hi + 1, hi)


@numba.njit(cache=True, fastmath=KEEP_INF, inline="always")
def _fill_triangle(pts, attrs, i0, i1, i2, buf, zbuf, box):
    """Scanline fill of one image-space triangle, nearer than zbuf, with its attributes (u, v,
    code) interpolated. Each row's x range comes from the three edges (lines in y, set up once),
    so only about the triangle's own pixels are tested."""
    size = zbuf.shape[0]
    x0, y0, x1, y1, x2, y2 = pts[i0, 0], pts[i0, 1], pts[i1, 0], pts[i1, 1], pts[i2, 0], pts[i2, 1]
    area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
    if area == 0.0:
        return
    ylo = max(int(np.ceil(min(y0, min(y1, y2)))), 0)
    yhi = min(int(np.floor(max(y0, max(y1, y2)))), size - 1)
    xmin = max(int(np.ceil(min(x0, min(x1, x2)))), 0)
    xmax = min(int(np.floor(max(x0, max(x1, x2)))), size - 1)
    if ylo > yhi or xmin > xmax:
        return
    box[0], box[1] = min(box[0], xmin), max(box[1], xmax)
    box[2], box[3] = min(box[2], ylo), max(box[3], yhi)
    inv = 1.0 / area
    a0, b0 = (y1 - y2) * inv, (x2 - x1) * inv  # barycentric w = a (x - x2) + b (y - y2) (+ 1 for w2)
    a1, b1 = (y2 - y0) * inv, (x0 - x2) * inv
    eps = -1e-4
    # Where each w crosses eps along a row: x = offset + slope * (y - y2), a lower bound if the
    # edge's a > 0, an upper one if a < 0; an edge parallel to the rows excludes all or nothing.
    d0, o0, s0 = _edge(a0, b0, 0.0, x2, eps, 0.5 * (ylo + yhi) - y2)
    d1, o1, s1 = _edge(a1, b1, 0.0, x2, eps, 0.5 * (ylo + yhi) - y2)
    d2, o2, s2 = _edge(-a0 - a1, -b0 - b1, 1.0, x2, eps, 0.5 * (ylo + yhi) - y2)
    z2, dz0, dz1 = pts[i2, 2], pts[i0, 2] - pts[i2, 2], pts[i1, 2] - pts[i2, 2]
    for py in range(ylo, yhi + 1):
        fy = py - y2
        lo, hi = _span(d0, o0 + s0 * fy, xmin, xmax)
        lo2, hi2 = _span(d1, o1 + s1 * fy, xmin, xmax)
        lo3, hi3 = _span(d2, o2 + s2 * fy, xmin, xmax)
        lo, hi = max(lo, max(lo2, lo3)), min(hi, min(hi2, hi3))
        q0, q1 = b0 * fy, b1 * fy
        for px in range(lo, hi + 1):
            fx = px - x2
            w0, w1 = a0 * fx + q0, a1 * fx + q1
            w2 = 1.0 - w0 - w1
            if min(w0, min(w1, w2)) < eps:
                continue
            z = z2 + w0 * dz0 + w1 * dz1
            if z < zbuf[py, px]:
                zbuf[py, px] = z
                for k in range(3):
                    buf[py, px, k] = attrs[i2, k] + w0 * (attrs[i0, k] - attrs[i2, k]) + w1 * (attrs[i1, k] - attrs[i2, k])


@numba.njit(cache=True, fastmath=KEEP_INF)
def _fill_grid(pts, attrs, inner_attrs, rows, cols, closed, inner_rows, buf, zbuf, box):
    """Each quad of the grid as two triangles: drawn with ``attrs`` where their outside faces the
    camera, with ``inner_attrs`` where their inside does (only in the first ``inner_rows`` rows)."""
    for r in range(rows - 1):
        for c in range(cols if closed else cols - 1):
            p00, p01 = r * cols + c, r * cols + (c + 1) % cols
            p10, p11 = p00 + cols, p01 + cols
            for i0, i1, i2 in ((p00, p10, p01), (p01, p10, p11)):
                facing = (pts[i1, 0] - pts[i0, 0]) * (pts[i2, 1] - pts[i0, 1]) - \
                    (pts[i2, 0] - pts[i0, 0]) * (pts[i1, 1] - pts[i0, 1])
                if facing < 0.0:    # the outside faces the camera (as the rasterizer's front faces)
                    _fill_triangle(pts, attrs, i0, i1, i2, buf, zbuf, box)
                elif facing > 0.0 and r < inner_rows:
                    _fill_triangle(pts, inner_attrs, i0, i1, i2, buf, zbuf, box)


@dataclass
class ShellCanvas:
    """Where shells are rasterized for one image: the z-buffer (a copy of the head's), the
    (u, v, material + shade) buffer and the material table."""

    head: np.ndarray         # the head's z-buffer (read only)
    zbuf: np.ndarray         # the head's and the shells' so far
    buf: np.ndarray
    table: np.ndarray
    light: np.ndarray        # (3,) unit, image space, towards the light
    box: np.ndarray          # x0, x1, y0, y1 touched so far (inclusive), int64
    materials: int = 0

    @classmethod
    def new(cls, size: int, zbuf: np.ndarray | None, light: np.ndarray) -> "ShellCanvas":
        head = np.full((size, size), np.inf, np.float32) if zbuf is None else np.ascontiguousarray(zbuf, np.float32)
        return cls(head, head.copy(), np.zeros((size, size, 3), np.float32),
                   np.zeros((MAX_MATERIALS + 1, TABLE_COLUMNS), np.float32),
                   np.asarray(light, np.float32), np.array([size, -1, size, -1]))

    def material(self, kind: int, colour, colour2=None, freq: float = 0.0, phase: float = 0.0,
                 wave: tuple[float, float] = (0.0, 0.0), param: float = 0.0, spec: float = 0.0,
                 opacity: float = 1.0, ambient: float = 0.3) -> int:
        """Registers a material; returns its code (1..MAX_MATERIALS)."""
        self.materials += 1
        m = self.materials
        c2 = colour if colour2 is None else colour2
        self.table[m, :14] = (kind, *colour, *c2, freq, phase, wave[0], wave[1], param, spec, opacity)
        self.table[m, 14] = ambient
        return m

    def shell(self, points_u: np.ndarray, frame: HeadFrame, uv: np.ndarray, material: int, closed: bool,
              inner: float = 0.45, inner_rows: int | None = None, depth_bias: float = 0.0) -> np.ndarray:
        """Rasterizes a (rows, cols, 3) grid of U points with (rows, cols, 2) texture coordinates;
        its outside faces run down the rows and to the right along the columns (``closed`` joins
        the last column to the first). The inside of the first ``inner_rows`` rows (all by
        default) is drawn too where it faces the camera, ``inner`` times darker; ``depth_bias``
        pixels pull the shell towards the viewer. Returns the points in image space (rows * cols, 3)."""
        rows, cols = points_u.shape[:2]
        n = rows * cols
        pts = np.empty((n, 3), np.float32)
        _project(points_u.reshape(-1, 3), frame.rot, frame.lens, np.float32(depth_bias), pts)
        attrs, inside = np.empty((n, 3), np.float32), np.empty((n, 3), np.float32)
        _grid_attributes(pts, uv, rows, cols, closed, self.light, np.float32(material), np.float32(inner), attrs, inside)
        _fill_grid(pts, attrs, inside, rows, cols, closed, rows - 1 if inner_rows is None else inner_rows,
                   self.buf, self.zbuf, self.box)
        return pts

    def composite(self, image: np.ndarray) -> None:
        """Colours the rasterized pixels and blends them into ``image`` with a one-pixel soft edge."""
        x0, x1, y0, y1 = self.box
        if x1 < x0:
            return
        size = image.shape[0]
        x0, y0, x1, y1 = max(x0 - 2, 0), max(y0 - 2, 0), min(x1 + 3, size), min(y1 + 3, size)
        layer = np.zeros((y1 - y0, x1 - x0, 4), np.float32)
        _shade_materials(self.buf[y0:y1, x0:x1], self.table, layer)
        bare = ~np.isfinite(self.head[y0:y1, x0:x1])  # no head there
        _blend_soft(image[y0:y1, x0:x1], layer, self.buf[y0:y1, x0:x1], bare)


LUT_SIZE = 1024  # one period of each periodic function below, sampled
_PHASE = np.linspace(0, 2 * np.pi, LUT_SIZE, endpoint=False)
SIN_LUT = np.sin(_PHASE).astype(np.float32)
# Strand clumps: three harmonics, so that the pattern does not look like regular stripes.
STRAND_LUT = (0.5 * np.sin(_PHASE) + 0.3 * np.sin(3 * _PHASE + 1.3) + 0.2 * np.sin(7 * _PHASE + 2.1)).astype(np.float32)
_TO_INDEX = LUT_SIZE / (2 * np.pi)


@numba.njit(cache=True, fastmath=True, inline="always")
def _lut(table, x):
    return table[int(x * _TO_INDEX) & (LUT_SIZE - 1)]


@numba.njit(cache=True, fastmath=True)
def _shade_materials(buf, table, layer):
    """layer (h, w, 4) <- premultiplied colour and opacity of each rasterized pixel of buf
    (periodic patterns from lookup tables: a sine per pixel would cost most of the time)."""
    for y in range(buf.shape[0]):
        for x in range(buf.shape[1]):
            code = buf[y, x, 2]
            if code < 1.0:
                continue
            m = int(code)
            lit = code - m
            t = table[m]
            kind = int(t[0])
            u, v = buf[y, x, 0], buf[y, x, 1]
            k = t[14] + (1.0 - t[14]) * lit   # ambient + diffuse
            second = 0.0                      # how much of colour 2
            if kind == HAIR:
                uu = u * t[7] + t[9] * _lut(SIN_LUT, v * t[10] + t[8]) + 1.7 * _lut(SIN_LUT, u * t[7] * 0.17 + 2.0 * t[8])
                k *= 1.0 + t[11] * _lut(STRAND_LUT, uu)
                lit2 = lit * lit
                second = t[12] * lit2 * lit2 * lit2 * lit2  # sheen
            elif kind == STRIPES:
                second = 1.0 if _lut(SIN_LUT, v * t[7] + t[8]) > t[11] else 0.0
            elif kind == CHECKS:
                a = _lut(SIN_LUT, v * t[7] + t[8]) > t[11]
                b = _lut(SIN_LUT, u * t[7] * 3.0 + t[8]) > t[11]
                second = 0.5 * a + 0.5 * b
            elif kind == OPENING:             # a jacket open over a shirt: a V down the front
                second = 1.0 if abs(u) < t[11] * (v - t[12]) else 0.0
            elif kind == KNIT:
                k *= 1.0 + t[11] * _lut(SIN_LUT, u * t[7])
                second = 1.0 if v > t[12] else 0.0  # a folded band at the bottom
            a = t[13]
            for c in range(3):
                col = t[1 + c] * (1.0 - second) + t[4 + c] * second
                layer[y, x, c] = min(max(col * k, 0.0), 1.0) * a
            layer[y, x, 3] = a


@numba.njit(cache=True, fastmath=True)
def _blend_soft(image, layer, buf, bare):
    """image <- image * (1 - alpha) + colour, in place, from the premultiplied layer blurred by a
    1-2-1 kernel (a one-pixel soft edge). The edge does not spill onto the head where the head hid
    the shell: there the head's own edge stays sharp."""
    h, w = image.shape[0], image.shape[1]
    for y in range(h):
        for x in range(w):
            if buf[y, x, 2] < 1.0 and not bare[y, x]:
                continue
            if 0 < y < h - 1 and 0 < x < w - 1 and min(layer[y - 1, x, 3], layer[y + 1, x, 3],
                                                       layer[y, x - 1, 3], layer[y, x + 1, 3]) >= layer[y, x, 3] > 0.0:
                a = layer[y, x, 3]  # inside a shell (as opaque as its neighbours): no edge to soften
                for c in range(3):
                    image[y, x, c] = image[y, x, c] * (1.0 - a) + layer[y, x, c]
                continue
            r = g = b = a = 0.0
            for dy in range(-1, 2):
                yy = min(max(y + dy, 0), h - 1)
                for dx in range(-1, 2):
                    xx = min(max(x + dx, 0), w - 1)
                    k = (2 - abs(dy)) * (2 - abs(dx)) / 16.0
                    r += k * layer[yy, xx, 0]
                    g += k * layer[yy, xx, 1]
                    b += k * layer[yy, xx, 2]
                    a += k * layer[yy, xx, 3]
            if a > 0.0:
                image[y, x, 0] = image[y, x, 0] * (1.0 - a) + r
                image[y, x, 1] = image[y, x, 1] * (1.0 - a) + g
                image[y, x, 2] = image[y, x, 2] * (1.0 - a) + b


# ---------------------------------------------------------------------------------------------
# Glasses

FRAME_COLOURS = np.array([[0.05, 0.05, 0.05], [0.25, 0.15, 0.08], [0.55, 0.45, 0.30], [0.75, 0.72, 0.65],
                          [0.45, 0.10, 0.10], [0.10, 0.15, 0.35], [0.70, 0.60, 0.35]], np.float32)


# Lens shapes: (squareness of the superellipse: 2 round .. 5 rectangular, how much deeper the lower
# half is: aviators).
LENS_SHAPES = ((2.0, 0.0), (2.5, 0.0), (3.2, 0.0), (4.5, 0.0), (2.4, 0.35), (3.0, 0.2))
LENS_POINTS = 20
INNER_TOPS = (2, 8)  # outline points at the top of each lens's inner side (left lens, right lens)


@lru_cache(maxsize=len(LENS_SHAPES))
def _lens_outline(shape: int) -> np.ndarray:
    """(LENS_POINTS, 2) outline of a lens of half-width and half-height 1 round its centre, +y up."""
    squareness, drop = LENS_SHAPES[shape]
    t = np.linspace(0, 2 * np.pi, LENS_POINTS, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    x = np.sign(c) * np.abs(c) ** (2 / squareness)
    y = np.sign(s) * np.abs(s) ** (2 / squareness)
    return np.stack([x, np.where(y < 0, y * (1 + drop), y)], -1).astype(np.float32)


@numba.njit(cache=True, fastmath=KEEP_INF)
def _visible_runs(pts, ends, zbuf, bias, runs):
    """Runs of consecutive segments of the polylines in ``pts`` (image space; polyline k ends at
    point ends[k] - 1) whose midpoints are in front of zbuf, as (first point, last point) rows of
    ``runs``; returns how many."""
    size = zbuf.shape[0]
    n, first, start = 0, 0, -1
    for k in range(ends.shape[0]):
        for i in range(first, ends[k] - 1):
            x = min(max(int(0.5 * (pts[i, 0] + pts[i + 1, 0]) + 0.5), 0), size - 1)
            y = min(max(int(0.5 * (pts[i, 1] + pts[i + 1, 1]) + 0.5), 0), size - 1)
            if 0.5 * (pts[i, 2] + pts[i + 1, 2]) < zbuf[y, x] + bias:
                start = i if start < 0 else start
            elif start >= 0:
                runs[n, 0], runs[n, 1], n, start = start, i, n + 1, -1
        if start >= 0:
            runs[n, 0], runs[n, 1], n, start = start, ends[k] - 1, n + 1, -1
        first = ends[k]
    return n


GLASSES_RANGES = (np.array([0.36, 0.22, -0.05, 0.0, 0.0, 0.0]), np.array([0.5, 0.36, 0.08, 0.1, 0.6, 0.04]))
POLYLINE_ENDS = np.cumsum([LENS_POINTS + 1, LENS_POINTS + 1, 8, 8, 6])  # rims, arms, bridge
_ARM = np.linspace(0, 1, 8, dtype=np.float32)[:, None]            # along a temple arm
_BOW = np.sin(np.linspace(0, np.pi, 8, dtype=np.float32))          # its outward bow round the temple
_BRIDGE = np.linspace(0, 1, 6, dtype=np.float32)[:, None]
_ARCH = np.sin(np.linspace(0, np.pi, 6, dtype=np.float32))


def draw_glasses(image: np.ndarray, frame: HeadFrame, zbuf: np.ndarray, rng: np.random.Generator,
                 tinted_p: float, reflection_p: float) -> None:
    """3D frames in front of the eyes, arms back to the ears, lenses clear, tinted or reflecting;
    every part tested against ``zbuf`` (the head, hair and clothes) so what is behind is hidden."""
    lm, unit = frame.landmarks, frame.unit
    eyes = lm[36:48].reshape(2, 6, 3).mean(axis=1)
    iod = float(np.linalg.norm(eyes[1] - eyes[0]))
    # Half-width and half-height of a lens; its lift above the eyes, its plane's distance in front
    # of them, how much it wraps round the face, how far apart the lenses are (iod units).
    width, height, lift, depth, wrap, spread = rng.uniform(*GLASSES_RANGES)
    outline = _lens_outline(int(rng.integers(len(LENS_SHAPES)))) * np.float32([width * iod, height * iod])
    plane_z = max(float(lm[27, 2]), float(eyes[:, 2].max())) + iod * depth
    colour = tuple((FRAME_COLOURS[rng.integers(len(FRAME_COLOURS))] * rng.uniform(0.8, 1.2)).tolist())
    thick = int(max(1, round(unit * rng.uniform(0.02, 0.06))))
    side = np.float32([-1, 1])
    rims = np.empty((2, LENS_POINTS + 1, 3), np.float32)               # closed outlines
    rims[:, :-1, 0] = (eyes[:, 0] + side * iod * spread)[:, None] + outline[:, 0]
    rims[:, :-1, 1] = (eyes[:, 1] + iod * lift)[:, None] + outline[:, 1]
    rims[:, :-1, 2] = plane_z - wrap / iod * 0.25 * (rims[:, :-1, 0] - frame.centre[0]) ** 2
    rims[:, -1] = rims[:, 0]
    outer = rims[[0, 1], np.argmax(rims[:, :-1, 0] * side[:, None], axis=1)]  # each rim's outermost point
    ears = np.stack([frame.centre[0] + side * frame.radii[0] * 1.02, outer[:, 1] - 0.05 * unit,
                     np.full(2, frame.centre[2] - 0.05 * frame.radii[2])], -1)
    arms = outer[:, None] + _ARM[None] * (ears - outer)[:, None]
    arms[..., 0] += side[:, None] * _BOW * np.float32(unit * 0.08)
    tops = rims[[0, 1], INNER_TOPS]
    bridge = tops[0] + _BRIDGE * (tops[1] - tops[0])
    bridge[:, 1] += _ARCH * np.float32(iod * 0.05)
    bridge[:, 2] = np.maximum(bridge[:, 2], lm[27, 2] + iod * 0.03)
    bias = unit * 0.08
    lines = frame.to_image(np.concatenate([rims[0], rims[1], arms[0], arms[1], bridge]))
    runs = np.empty((len(lines), 2), np.int64)
    fixed = np.rint(lines[:, :2] * 16).astype(np.int32)
    segments = [fixed[a:b + 1] for a, b in runs[:_visible_runs(lines, POLYLINE_ENDS, zbuf, np.float32(bias), runs)]]
    tint = np.float32(rng.uniform(0.05, 0.35)) * rng.uniform(0.7, 1.1, 3).astype(np.float32)
    tint_alpha = rng.uniform(0.6, 0.92) if rng.uniform() < tinted_p else 0.0
    sheen = tuple(rng.uniform((-1, 2, 0, 0.15), (1, 5, 6, 0.5))) if rng.uniform() < reflection_p else None
    _fill_lenses(image, frame.to_image(rims[:, :-1]), zbuf, bias, tint, tint_alpha, sheen)
    if segments:
        cv2.polylines(image, segments, False, colour, thick, cv2.LINE_AA, 4)


def _fill_lenses(image: np.ndarray, lenses: np.ndarray, zbuf: np.ndarray, bias: float, tint: np.ndarray,
                 tint_alpha: float, sheen: tuple[float, float, float, float] | None) -> None:
    """Tints (sunglasses), brightens with a diagonal sheen (a window or screen reflected) or
    faintly greys (clear glass) the visible parts of the lenses (image-space outlines (2, n, 3)):
    where each is nearer than zbuf."""
    size = image.shape[0]
    x0, y0 = np.maximum(np.floor(lenses[..., :2].reshape(-1, 2).min(axis=0)).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(lenses[..., :2].reshape(-1, 2).max(axis=0)).astype(int) + 1, size)
    if x1 <= x0 or y1 <= y0:
        return
    masks = np.zeros((2, y1 - y0, x1 - x0), np.float32)
    for mask, lens in zip(masks, lenses):
        cv2.fillPoly(mask, [np.rint((lens[:, :2] - [x0, y0]) * 16).astype(np.int32)], 1.0, cv2.LINE_AA, 4)
    _tint_lenses(image[y0:y1, x0:x1], masks, zbuf[y0:y1, x0:x1], lenses[:, :, 2].mean(axis=1) - bias, tint,
                 np.float32(tint_alpha), np.float32(sheen or (0, 0, 0, 0)))


@numba.njit(cache=True, fastmath=KEEP_INF)
def _tint_lenses(region, masks, zbuf, depths, tint, tint_alpha, sheen):
    """region <- the lenses over it, where each lens (coverage mask, depth) is nearer than zbuf:
    towards ``tint`` by tint_alpha, then towards white along a diagonal band (sheen: slope,
    frequency, phase, strength; strength 0 for none), or a faint grey-blue for clear glass."""
    h, w = region.shape[0], region.shape[1]
    slope, freq, phase, strength = sheen[0], sheen[1], sheen[2], sheen[3]
    for y in range(h):
        for x in range(w):
            m = 0.0
            for k in range(2):
                if zbuf[y, x] > depths[k]:
                    m += masks[k, y, x]
            if m <= 0.0:
                continue
            m = min(m, 1.0)
            for c in range(3):
                v = region[y, x, c]
                if tint_alpha > 0.0:
                    v += m * tint_alpha * (tint[c] - v)
                if strength > 0.0:
                    band = max(np.cos((x * slope + y) / max(h, 1) * freq + phase), 0.0)
                    v += band * m * strength * (0.95 - v)
                elif tint_alpha == 0.0:
                    v += m * 0.06 * (0.85 - v)
                region[y, x, c] = v


# ---------------------------------------------------------------------------------------------
# Caps and hats

HAT_COLOURS = np.array([[0.08, 0.08, 0.10], [0.12, 0.16, 0.35], [0.60, 0.10, 0.10], [0.85, 0.85, 0.82],
                        [0.45, 0.40, 0.30], [0.20, 0.35, 0.20], [0.55, 0.45, 0.35], [0.35, 0.35, 0.38]], np.float32)


def draw_hat(canvas: ShellCanvas, frame: HeadFrame, rng: np.random.Generator, inflate: float) -> None:
    """A baseball cap, a beanie or a brimmed hat as shells over the cranium, ``inflate`` times
    its radius (outside the hair). Rasterized into ``canvas``; composited with the rest."""
    kind = rng.choice(3, p=(0.5, 0.3, 0.2))
    colour = HAT_COLOURS[rng.integers(len(HAT_COLOURS))] * np.float32(rng.uniform(0.8, 1.15))
    cols, rows = 24, 6
    az = np.linspace(-np.pi, np.pi, cols, endpoint=False)
    front = (1 + np.cos(az)) / 2                         # 1 at the front, 0 at the back
    band = (0.62 + 0.12 * (1 - front)) if kind == 0 else (0.86 + 0.1 * (1 - front)) if kind == 1 else \
        np.full(cols, 0.72)
    band = band + rng.uniform(-0.05, 0.05)
    s = np.linspace(0, 1, rows)[:, None] * band[None, :]
    crown = frame.ellipsoid(az[None, :], s, inflate * (1.08 if kind == 2 else 1.0))
    if kind == 1:
        m = canvas.material(KNIT, colour, colour * 0.85, freq=40.0, param=0.15, spec=band.mean() * 0.8, ambient=0.35)
    else:
        m = canvas.material(SOLID, colour, ambient=0.3)
    uv = np.stack(np.broadcast_arrays(az[None, :], s), -1)
    canvas.shell(crown, frame, uv, m, closed=True, inner_rows=0)
    if kind == 1:
        return
    edge = crown[-1]                                      # the band all round
    outward = edge - np.array([frame.centre[0], edge[:, 1].mean(), frame.centre[2]], np.float32)
    outward[:, 1] = 0
    outward /= np.linalg.norm(outward, axis=1, keepdims=True) + 1e-6
    if kind == 0:                                         # a visor at the front
        reach = frame.unit * rng.uniform(0.7, 1.1) * np.clip(front * 1.6 - 0.6, 0, 1) ** 0.5
        tilt = rng.uniform(0.05, 0.35)
    else:                                                 # a brim all round
        reach = np.full(cols, frame.unit * rng.uniform(0.3, 0.8))
        tilt = rng.uniform(-0.1, 0.3)
    t = np.linspace(0, 1, 3)[:, None, None]
    brim = edge[None] + t * reach[None, :, None] * (outward[None] + np.float32([0, -tilt, 0]))
    brim_colour = colour * np.float32(rng.uniform(0.7, 1.0))
    mb = canvas.material(SOLID, brim_colour, ambient=0.3)
    uv = np.zeros(brim.shape[:2] + (2,), np.float32)
    canvas.shell(brim.astype(np.float32), frame, uv, mb, closed=True, inner=0.3)


# ---------------------------------------------------------------------------------------------
# Hands, microphones, masks: flat shapes over the lower face

def skin_colour(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The rendered face's colour: the median of the pixels at the cheeks and nose bridge."""
    size = image.shape[0]
    picks = (landmarks[[1, 15, 29, 31, 35]] + landmarks[[31, 35, 30, 48, 54]]) / 2  # between jaw/nose/mouth
    col = np.clip(np.rint(picks[:, 0]).astype(int), 0, size - 1)
    row = np.clip(np.rint(picks[:, 1]).astype(int), 0, size - 1)
    return np.median(image[row, col], axis=0).astype(np.float32)


def _tuple(c) -> tuple[float, float, float]:
    return (float(c[0]), float(c[1]), float(c[2]))


def draw_hand(image: np.ndarray, landmarks: np.ndarray, skin: np.ndarray, rng: np.random.Generator) -> None:
    """A hand over the lower face: on the chin, across the mouth or against a cheek; a palm and
    four fingers and a thumb (round-capped thick lines), edges a little darker."""
    lm = landmarks[:, :2]
    face_h = float(np.linalg.norm(lm[8] - lm[27]))
    anchor = lm[[8, 57, 62, 3, 13, 4, 12]][rng.integers(7)] + rng.normal(0, 0.08 * face_h, 2)
    angle = rng.uniform(-0.9, 0.9) + (np.pi if rng.uniform() < 0.15 else 0.0)  # fingers point up (image -y)
    up = np.array([np.sin(angle), -np.cos(angle)])
    across = np.array([-up[1], up[0]])
    palm_w, palm_h = face_h * rng.uniform(0.33, 0.45), face_h * rng.uniform(0.38, 0.5)
    wrist = anchor - up * palm_h * rng.uniform(0.3, 1.0)
    palm_c = wrist + up * palm_h / 2
    tone = skin * np.float32(rng.uniform(0.85, 1.1))
    edge = _tuple(tone * 0.72)
    fill = _tuple(np.minimum(tone, 1))
    finger_w = max(2, int(round(palm_w / 4.2)))
    bends = rng.uniform(0.0, 0.6)
    fingers = []
    for k, length in enumerate(rng.uniform(0.75, 1.0, 4) * np.array([0.8, 0.95, 1.0, 0.9])):
        base = wrist + up * palm_h + across * palm_w * (k - 1.5) / 4.0
        tip = base + (up * np.cos(bends) + across * np.sin(bends) * 0.3) * palm_h * length * 0.85
        fingers.append((base, tip))
    thumb_base = wrist + up * palm_h * 0.35 - across * palm_w * 0.5
    fingers.append((thumb_base, thumb_base + (up * 0.6 - across * 0.8) * palm_h * 0.55))
    box = cv2.boxPoints((tuple(palm_c), (palm_w, palm_h), np.degrees(angle)))
    forearm = np.array([wrist - across * palm_w * 0.42, wrist + across * palm_w * 0.42,
                        wrist + across * palm_w * 0.5 - up * face_h * 2, wrist - across * palm_w * 0.5 - up * face_h * 2])
    for colour, grow in ((edge, 1.15), (fill, 1.0)):  # palm and forearm: an outline, then the fill
        for poly in (forearm, box):
            centre = poly.mean(axis=0)
            cv2.fillConvexPoly(image, np.rint((centre + (poly - centre) * grow) * 16).astype(np.int32), colour,
                               cv2.LINE_AA, 4)
    for base, tip in fingers:  # each finger outlined over the last, so the gaps between them show
        ends = tuple(np.rint(base * 16).astype(int)), tuple(np.rint(tip * 16).astype(int))
        cv2.line(image, *ends, edge, finger_w + 2, cv2.LINE_AA, 4)
        cv2.line(image, *ends, fill, finger_w, cv2.LINE_AA, 4)
    sleeve = _tuple(CLOTH[rng.integers(len(CLOTH))])
    cuff = wrist - up * face_h * rng.uniform(0.25, 0.6)
    sleeve_poly = np.array([cuff - across * palm_w * 0.7, cuff + across * palm_w * 0.7,
                            cuff + across * palm_w - up * face_h * 3, cuff - across * palm_w - up * face_h * 3])
    cv2.fillConvexPoly(image, np.rint(sleeve_poly * 16).astype(np.int32), sleeve, cv2.LINE_AA, 4)


CLOTH = np.array([[0.10, 0.10, 0.12], [0.85, 0.85, 0.82], [0.20, 0.25, 0.45], [0.55, 0.15, 0.15],
                  [0.45, 0.45, 0.45], [0.25, 0.40, 0.30], [0.70, 0.60, 0.45], [0.30, 0.45, 0.65],
                  [0.60, 0.35, 0.50], [0.90, 0.75, 0.30]], np.float32)


def draw_microphone(image: np.ndarray, landmarks: np.ndarray, skin: np.ndarray, rng: np.random.Generator) -> None:
    """A handheld microphone (mesh ball on a dark handle, often in a hand) before the mouth, or a
    headset boom from the ear to the corner of the mouth."""
    lm = landmarks[:, :2]
    face_h = float(np.linalg.norm(lm[8] - lm[27]))
    if rng.uniform() < 0.3:  # headset: a thin boom from the ear to the mouth corner
        ear, mouth = (lm[0], lm[48]) if rng.uniform() < 0.5 else (lm[16], lm[54])
        mid = (ear + mouth) / 2 + rng.normal(0, 0.05 * face_h, 2)
        curve = np.array([ear, mid, mouth + (mouth - ear) * 0.08])
        cv2.polylines(image, [np.rint(curve * 16).astype(np.int32)], False, (0.08, 0.08, 0.08),
                      max(1, int(face_h * 0.03)), cv2.LINE_AA, 4)
        cv2.circle(image, tuple(np.rint(curve[-1] * 16).astype(int)), int(face_h * 0.06 * 16), (0.1, 0.1, 0.1), -1,
                   cv2.LINE_AA, 4)
        return
    head = lm[62] + np.array([rng.uniform(-0.25, 0.25), rng.uniform(0.15, 0.6)]) * face_h
    r = face_h * rng.uniform(0.13, 0.22)
    angle = rng.uniform(-0.7, 0.7)
    down = np.array([np.sin(angle), np.cos(angle)])
    end = head + down * face_h * 3
    handle = _tuple(np.full(3, rng.uniform(0.03, 0.25)))
    cv2.line(image, tuple(np.rint(head * 16).astype(int)), tuple(np.rint(end * 16).astype(int)), handle,
             max(2, int(r * 1.1)), cv2.LINE_AA, 4)
    grey = rng.uniform(0.25, 0.6)
    cv2.circle(image, tuple(np.rint(head * 16).astype(int)), int(r * 16), (grey, grey, grey), -1, cv2.LINE_AA, 4)
    _mesh_texture(image, head, r, grey)
    if rng.uniform() < 0.6:  # the hand holding it
        grip = head + down * r * rng.uniform(1.8, 2.6)
        tone = _tuple(np.minimum(skin * np.float32(rng.uniform(0.85, 1.1)), 1))
        across = np.array([-down[1], down[0]])
        for k in range(4):
            p = grip + down * r * 0.55 * k
            cv2.line(image, tuple(np.rint((p - across * r * 0.9) * 16).astype(int)),
                     tuple(np.rint((p + across * r * 0.9) * 16).astype(int)), tone, max(2, int(r * 0.5)), cv2.LINE_AA, 4)


def _mesh_texture(image: np.ndarray, centre: np.ndarray, r: float, grey: float) -> None:
    """Darker grid lines and a highlight inside a microphone's ball."""
    size = image.shape[0]
    x0, y0 = int(max(centre[0] - r, 0)), int(max(centre[1] - r, 0))
    x1, y1 = int(min(centre[0] + r + 1, size)), int(min(centre[1] + r + 1, size))
    if x1 <= x0 or y1 <= y0:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dx, dy = (xx - centre[0]) / r, (yy - centre[1]) / r
    inside = (dx * dx + dy * dy < 0.9).astype(np.float32)
    grid = ((np.sin(xx * 2.2) > 0.6) | (np.sin(yy * 2.2) > 0.6)).astype(np.float32) * inside
    light = np.clip(1 - ((dx + 0.35) ** 2 + (dy + 0.35) ** 2) * 2, 0, 1) * inside * np.float32(0.35)
    region = image[y0:y1, x0:x1]
    region *= (1 - grid * np.float32(0.5))[..., None]
    region += light[..., None]
    np.minimum(region, 1, out=region)


MASK_COLOURS = np.array([[0.55, 0.75, 0.88], [0.92, 0.93, 0.93], [0.10, 0.10, 0.12], [0.35, 0.50, 0.75],
                         [0.85, 0.75, 0.80], [0.30, 0.30, 0.32]], np.float32)


def draw_face_mask(image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator) -> None:
    """A surgical or cloth mask over nose, mouth and chin: the hull of the lower face's landmarks
    (pushed out under the chin), shaded across, with pleats and ear loops."""
    lm = landmarks[:, :2]
    face_h = float(np.linalg.norm(lm[8] - lm[27]))
    centre = lm[[30, 51, 57]].mean(axis=0)
    jaw = lm[1:16] + (lm[1:16] - centre) * np.float32(0.06)
    under = lm[6:11] + (lm[6:11] - lm[30]) * np.float32(0.12)
    top = lm[[1, 28, 29, 15]] if rng.uniform() < 0.8 else lm[[2, 29, 30, 14]]  # over the nose, or slipped
    pts = np.concatenate([jaw, under, top, lm[30:36]])
    hull = cv2.convexHull(np.rint(pts * 16).astype(np.int32))
    colour = MASK_COLOURS[rng.integers(len(MASK_COLOURS))] * np.float32(rng.uniform(0.85, 1.05))
    size = image.shape[0]
    mask = np.zeros((size, size), np.float32)
    cv2.fillConvexPoly(mask, hull, 1.0, cv2.LINE_AA, 4)
    xs = np.arange(size, dtype=np.float32)
    across = np.clip((xs - lm[30, 0]) / max(face_h, 1), -1, 1)
    shade = np.float32(0.9) - np.float32(rng.uniform(0.0, 0.25)) * across * np.sign(rng.uniform(-1, 1))
    layer = np.minimum(colour[None, None, :] * shade[None, :, None], 1).astype(np.float32)
    if rng.uniform() < 0.6:  # pleats: darker horizontal folds
        for k in (0.3, 0.5, 0.7):
            y = lm[29, 1] + (lm[8, 1] - lm[29, 1]) * k
            cv2.line(layer, (0, int(y * 16)), (size * 16, int((y + rng.uniform(-2, 2)) * 16)),
                     _tuple(colour * 0.75), 1, cv2.LINE_AA, 4)
    image += mask[..., None] * (layer - image)
    loop = _tuple(np.minimum(colour * 1.05, 1))
    for a, b in ((lm[2], lm[0]), (lm[14], lm[16])):
        ear = b + (b - lm[30]) * 0.08
        cv2.line(image, tuple(np.rint(a * 16).astype(int)), tuple(np.rint(ear * 16).astype(int)), loop, 1, cv2.LINE_AA, 4)


# ---------------------------------------------------------------------------------------------
# Another person at the edge of the crop

NEIGHBOUR_SKIN = np.array([[0.92, 0.76, 0.65], [0.80, 0.60, 0.46], [0.62, 0.43, 0.30], [0.42, 0.28, 0.19],
                           [0.28, 0.18, 0.12]], np.float32)
NEIGHBOUR_HAIR = np.array([[0.05, 0.04, 0.03], [0.20, 0.12, 0.07], [0.45, 0.30, 0.15], [0.70, 0.55, 0.30],
                           [0.55, 0.55, 0.55]], np.float32)


def draw_edge_face(image: np.ndarray, rng: np.random.Generator) -> None:
    """Part of someone else's head and shoulders at the left or right edge of the crop, out of
    focus (drawn before the subject, who hides what overlaps)."""
    size = image.shape[0]
    side = -1 if rng.uniform() < 0.5 else 1
    r = size * rng.uniform(0.22, 0.4)
    cx = (size / 2) + side * (size / 2 + r * rng.uniform(-0.3, 0.5))
    cy = size * rng.uniform(0.1, 0.7)
    skin = NEIGHBOUR_SKIN[rng.integers(len(NEIGHBOUR_SKIN))] * np.float32(rng.uniform(0.6, 1.0))
    hair = NEIGHBOUR_HAIR[rng.integers(len(NEIGHBOUR_HAIR))]
    shirt = CLOTH[rng.integers(len(CLOTH))] * np.float32(rng.uniform(0.6, 1.0))
    turn = rng.uniform(-0.4, 0.4) * r  # the features shift as the neighbour turns
    patch, cover = image.copy(), np.zeros(image.shape[:2], np.float32)

    def ellipse(centre, axes, colour, arc=(0, 360)):
        args = ((int(centre[0] * 16), int(centre[1] * 16)), (int(axes[0] * 16), int(axes[1] * 16)), 0, *arc)
        cv2.ellipse(patch, *args, _tuple(colour), -1, cv2.LINE_AA, 4)
        cv2.ellipse(cover, *args, 1.0, -1, cv2.LINE_AA, 4)

    ellipse((cx, cy + r * 2.2), (r * 2.2, r * 1.2), shirt)
    ellipse((cx, cy + r * 0.9), (r * 0.45, r * 0.6), skin * 0.85)
    ellipse((cx, cy), (r * 0.78, r), skin)
    ellipse((cx, cy - r * 0.15), (r * 0.85, r * 0.95), hair, (180, 360))
    for ex in (-0.33, 0.33):
        ellipse((cx + turn + ex * r, cy + 0.05 * r), (r * 0.12, r * 0.06), skin * 0.35)
    ellipse((cx + turn, cy + 0.55 * r), (r * 0.22, r * 0.04), skin * 0.5)
    sigma = rng.uniform(0.8, 2.5)
    blurred, alpha = cv2.GaussianBlur(patch, (0, 0), sigma), cv2.GaussianBlur(cover, (0, 0), sigma)
    image += alpha[..., None] * (blurred - image)
