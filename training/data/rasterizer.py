"""Z-buffered triangle rasterizing for the synthetic faces, compiled with numba: textured and lit.

Vertices are in image space (x right, y down, pixel centres at integers, smaller z nearer).
Triangles are counter-clockwise seen from outside in model space; in image space (y flipped)
a front face therefore has a negative signed area, and faces with area >= 0 are culled.

Rendering starts with one pass over the mesh: ``cull_triangles`` culls back faces and triangles
whose bounding box holds no pixel centre of the image (on a 120-pixel face crop most of the mesh's
sub-pixel triangles), recording the pixel box of each survivor. Then ``rasterize_ids`` finds the
nearest triangle and its perspective-correct barycentrics per pixel and ``shade_textured`` samples
the texture atlas once per covered pixel. Deferred, light is needed only at the corners of the triangles
that won a pixel (``drawn_vertices``, about half of those the survivors use), and their normals
only (``vertex_normals_where``).
"""
from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, fastmath=True, inline="always")
def _add_face_normal(verts, normals, a, b, c):
    """Accumulate the (area-weighted) normal of triangle (a, b, c) on its vertices."""
    ux, uy, uz = verts[b, 0] - verts[a, 0], verts[b, 1] - verts[a, 1], verts[b, 2] - verts[a, 2]
    vx, vy, vz = verts[c, 0] - verts[a, 0], verts[c, 1] - verts[a, 1], verts[c, 2] - verts[a, 2]
    nx, ny, nz = uy * vz - uz * vy, uz * vx - ux * vz, ux * vy - uy * vx
    normals[a, 0] += nx
    normals[a, 1] += ny
    normals[a, 2] += nz
    normals[b, 0] += nx
    normals[b, 1] += ny
    normals[b, 2] += nz
    normals[c, 0] += nx
    normals[c, 1] += ny
    normals[c, 2] += nz


@numba.njit(cache=True, fastmath=True, inline="always")
def _normalize_rows(normals):
    """Rows of a (V, 3) float32 array to unit length, zero rows left zero; flat and branch-free
    so that it vectorizes."""
    flat = normals.reshape(-1)
    tiny = np.float32(1e-30)
    for i in range(normals.shape[0]):
        x, y, z = flat[3 * i], flat[3 * i + 1], flat[3 * i + 2]
        inv = np.float32(1.0) / max(np.sqrt(x * x + y * y + z * z), tiny)
        flat[3 * i], flat[3 * i + 1], flat[3 * i + 2] = x * inv, y * inv, z * inv


@numba.njit(cache=True, fastmath=True)
def vertex_normals(verts: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """Unit per-vertex normals (area-weighted face normals), outward, in the verts' space."""
    normals = np.zeros_like(verts)
    for t in range(tris.shape[0]):
        _add_face_normal(verts, normals, tris[t, 0], tris[t, 1], tris[t, 2])
    _normalize_rows(normals)
    return normals


@numba.njit(cache=True, fastmath=True)
def vertex_normals_where(verts: np.ndarray, tris: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """``vertex_normals`` of the ``wanted`` (V,) bool vertices (other rows are partial: unused):
    the face normals of the triangles that touch one, added in mesh order as ``vertex_normals``
    adds them, so those rows are the same numbers. A render needs the normals of the vertices it
    draws, a fifth of a head's."""
    normals = np.zeros_like(verts)
    for t in range(tris.shape[0]):
        a, b, c = tris[t, 0], tris[t, 1], tris[t, 2]
        if wanted[a] or wanted[b] or wanted[c]:
            _add_face_normal(verts, normals, a, b, c)
    _normalize_rows(normals)
    return normals


@numba.njit(cache=True, fastmath=True)
def _cull(verts, tris, height, width, opening, windows, visible, boxes):
    """The one pass over all triangles (see ``cull_triangles``); returns how many survive."""
    n = 0
    xmax_px, ymax_px = np.float32(width - 1), np.float32(height - 1)
    clipped = opening.shape[0] > 0
    for t in range(tris.shape[0]):
        a, b, c = tris[t, 0], tris[t, 1], tris[t, 2]
        x0, y0, x1, y1, x2, y2 = verts[a, 0], verts[a, 1], verts[b, 0], verts[b, 1], verts[c, 0], verts[c, 1]
        area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
        if area >= 0.0:  # a back face: neighbours in mesh order mostly face alike, so this predicts well
            continue
        xlo = max(np.ceil(min(x0, min(x1, x2))), np.float32(0.0))
        xhi = min(np.floor(max(x0, max(x1, x2))), xmax_px)
        ylo = max(np.ceil(min(y0, min(y1, y2))), np.float32(0.0))
        yhi = min(np.floor(max(y0, max(y1, y2))), ymax_px)
        # Written unconditionally and kept only if the count moves on: whether a box holds a pixel
        # centre is as good as random for sub-pixel triangles, a branch on it would mispredict.
        visible[n] = t
        keep = (xlo <= xhi) & (ylo <= yhi)
        bx0, bx1, by0, by1 = int(xlo), int(xhi), int(ylo), int(yhi)
        w = opening[t] if clipped else -1
        if w >= 0:  # inside an opening: only its window (openings are runs of the mesh: predictable)
            bx0, bx1 = max(bx0, windows[w, 0]), min(bx1, windows[w, 1])
            by0, by1 = max(by0, windows[w, 2]), min(by1, windows[w, 3])
            keep &= (bx0 <= bx1) & (by0 <= by1)
        boxes[n, 0], boxes[n, 1], boxes[n, 2], boxes[n, 3] = bx0, bx1, by0, by1
        n += keep
    return n


_NO_OPENINGS = np.empty(0, np.int8)
_NO_WINDOWS = np.empty((0, 4), np.int32)


def cull_triangles(verts: np.ndarray, tris: np.ndarray, height: int, width: int, opening: np.ndarray | None = None,
                   windows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Front-facing triangles with a pixel centre inside an (height, width) image, in mesh order:
    (indices (n,) int32, pixel boxes (n, 4) int32 as x0, x1, y0, y1 inclusive), from one pass over
    the image-space x and y of ``verts`` and ``tris`` (uint32 spares a copy).

    With ``opening`` (per triangle: the index k of the opening it is seen through, or -1) and
    ``windows`` (``opening_windows``), the box of a triangle seen through opening k is clipped to
    window k and the triangle dropped if nothing is left: for surfaces seen only through an opening
    (a mouth, an eye), the same pixels for less work."""
    verts = np.ascontiguousarray(verts, np.float32)
    tris = np.ascontiguousarray(tris, np.uint32)  # unsigned: numba skips negative-index handling
    visible = np.empty(len(tris), np.int32)
    boxes = np.empty((len(tris), 4), np.int32)
    n = _cull(verts, tris, height, width, _NO_OPENINGS if opening is None else opening,
              _NO_WINDOWS if windows is None else windows, visible, boxes)
    return visible[:n], boxes[:n]


@numba.njit(cache=True)
def opening_windows(verts: np.ndarray, rims: np.ndarray, rim_ends: np.ndarray, margin: int) -> np.ndarray:
    """(K, 4) int32 pixel boxes (x0, x1, y0, y1 inclusive) of K openings: opening k's rim is the
    vertices ``rims[rim_ends[k - 1]:rim_ends[k]]`` (from 0 for k = 0), its window the box of their
    image-space x, y in ``verts`` (floor and ceil), ``margin`` pixels wider."""
    windows = np.empty((rim_ends.shape[0], 4), np.int32)
    start = 0
    for k in range(rim_ends.shape[0]):
        x0 = x1 = verts[rims[start], 0]
        y0 = y1 = verts[rims[start], 1]
        for i in range(start + 1, rim_ends[k]):
            v = rims[i]
            x0, x1 = min(x0, verts[v, 0]), max(x1, verts[v, 0])
            y0, y1 = min(y0, verts[v, 1]), max(y1, verts[v, 1])
        windows[k, 0], windows[k, 1] = int(np.floor(x0)) - margin, int(np.ceil(x1)) + margin
        windows[k, 2], windows[k, 3] = int(np.floor(y0)) - margin, int(np.ceil(y1)) + margin
        start = rim_ends[k]
    return windows


@numba.njit(cache=True)
def drawn_vertices(tri_id: np.ndarray, tris: np.ndarray, n_vertices: int) -> np.ndarray:
    """(V,) bool: the corners of the triangles that won a pixel in ``tri_id`` (-1: none), the only
    vertices whose light a deferred render reads."""
    drawn = np.zeros(n_vertices, np.bool_)
    ids = tri_id.reshape(-1)
    last = -1
    for p in range(ids.shape[0]):
        t = ids[p]
        if t < 0 or t == last:
            continue
        last = t
        drawn[tris[t, 0]] = True
        drawn[tris[t, 1]] = True
        drawn[tris[t, 2]] = True
    return drawn


# Fast math except the no-infinity and no-NaN assumptions: the z-buffer starts at +inf.
FASTMATH_KEEP_INF = {"nsz", "arcp", "contract", "afn", "reassoc"}


EDGE_TOLERANCE = np.float32(1e-4)  # barycentric units: a pixel centre this far outside a triangle still counts


@numba.njit(cache=True, fastmath=FASTMATH_KEEP_INF)
def rasterize_ids(verts: np.ndarray, inv_w: np.ndarray, tris: np.ndarray, visible: np.ndarray, boxes: np.ndarray,
                  zbuf: np.ndarray, tri_id: np.ndarray, bary: np.ndarray) -> int:
    """The nearest of triangles ``tris[visible]`` per pixel, with perspective-correct barycentrics:
    the first pass of a deferred render (``shade_textured`` then samples each covered pixel once,
    so hidden surfaces cost no texture lookups).

    ``inv_w`` (V,) is 1 / w per vertex, w its camera-space depth (all ones: the affine case). The
    screen-space barycentrics b_i are planes over the pixel grid; an attribute is interpolated as
    (sum b_i a_i / w_i) / (sum b_i / w_i), so the weights written to ``bary`` (H, W, 2) are
    b_i / w_i / (sum b_j / w_j) of corners 0 and 1 (corner 2 has 1 minus both). Depth z is such an
    attribute; ``tri_id`` (H, W) int32 receives the triangle index where this one is nearer than
    ``zbuf``. Returns the number of pixel writes.
    """
    written = 0
    one = np.float32(1.0)
    width = zbuf.shape[1]
    depth, ids, weights = zbuf.reshape(-1), tri_id.reshape(-1), bary.reshape(-1)
    for k in range(visible.shape[0]):
        t = visible[k]
        i0, i1, i2 = tris[t, 0], tris[t, 1], tris[t, 2]
        x0, y0, z0 = verts[i0, 0], verts[i0, 1], verts[i0, 2]
        x1, y1, z1 = verts[i1, 0], verts[i1, 1], verts[i1, 2]
        x2, y2, z2 = verts[i2, 0], verts[i2, 1], verts[i2, 2]
        q0, q1, q2 = inv_w[i0], inv_w[i1], inv_w[i2]
        inv = one / ((x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0))
        # Barycentric planes in coordinates relative to corner 2 (w0 = w1 = 0 there): small
        # numbers, so that rounding does not open cracks between neighbours.
        a0, b0 = (y1 - y2) * inv, (x2 - x1) * inv
        a1, b1 = (y2 - y0) * inv, (x0 - x2) * inv
        dq0, dq1, dz0, dz1 = q0 - q2, q1 - q2, z0 - z2, z1 - z2
        x_lo, x_hi = boxes[k, 0], boxes[k, 1] + 1
        for py in range(boxes[k, 2], boxes[k, 3] + 1):
            fy = np.float32(py) - y2
            r0, r1 = b0 * fy, b1 * fy
            for px in range(x_lo, x_hi):
                fx = np.float32(px) - x2
                w0 = a0 * fx + r0
                w1 = a1 * fx + r1
                w2 = one - w0 - w1
                # The tolerance closes the cracks rounding opens along edges that run exactly through
                # pixel centres (both neighbours would miss them). Unlike rasterize, branches: skipping
                # the division and the stores outside the triangle measured 17 % faster on heads.
                if min(w0, min(w1, w2)) < -EDGE_TOLERANCE:
                    continue
                rcp = one / (q2 + w0 * dq0 + w1 * dq1)  # w at this pixel
                p0, p1 = w0 * q0 * rcp, w1 * q1 * rcp
                z = z2 + p0 * dz0 + p1 * dz1
                p = py * width + px
                if z < depth[p]:
                    depth[p] = z
                    ids[p] = t
                    weights[2 * p] = p0
                    weights[2 * p + 1] = p1
                    written += 1
    return written


@numba.njit(cache=True, fastmath=True)
def shade_textured(tri_id: np.ndarray, bary: np.ndarray, tris: np.ndarray, uv: np.ndarray, uv_tris: np.ndarray,
                   atlas: np.ndarray, diffuse: np.ndarray, specular: np.ndarray, image: np.ndarray) -> None:
    """Colour the pixels ``rasterize_ids`` covered: albedo * diffuse + specular strength * specular.

    Per pixel, uv is interpolated from the triangle's corners ``uv[uv_tris[t]]`` with the stored
    perspective-correct weights and looked up bilinearly (edge texels clamped) in ``atlas``
    (n_tiles, R, R, 4: RGB albedo, specular strength): tile = floor(u) (taken once per triangle,
    from its corners' mean u, as all its corners lie in one tile), texel row = (1 - v) * R - 0.5,
    column = (u - tile) * R - 0.5. ``diffuse`` and ``specular`` (V, 3) are per-vertex light terms,
    interpolated with the same weights. ``image`` (H, W, 3) float32 is written in place.
    """
    res = atlas.shape[1]
    top = np.float32(res - 1)
    fres = np.float32(res)
    half, one, zero = np.float32(0.5), np.float32(1.0), np.float32(0.0)
    ids, weights, pixels = tri_id.reshape(-1), bary.reshape(-1), image.reshape(-1)
    texel = np.empty(4, np.float32)
    for p in range(ids.shape[0]):
        t = ids[p]
        if t < 0:
            continue
        w0, w1 = weights[2 * p], weights[2 * p + 1]
        w2 = one - w0 - w1
        c0, c1, c2 = uv_tris[t, 0], uv_tris[t, 1], uv_tris[t, 2]
        u = w0 * uv[c0, 0] + w1 * uv[c1, 0] + w2 * uv[c2, 0]
        v = w0 * uv[c0, 1] + w1 * uv[c1, 1] + w2 * uv[c2, 1]
        tile = int(np.floor((uv[c0, 0] + uv[c1, 0] + uv[c2, 0]) * np.float32(1.0 / 3.0)))
        col = min(max((u - np.float32(tile)) * fres - half, zero), top)
        row = min(max((one - v) * fres - half, zero), top)
        j0, i0 = int(col), int(row)
        j1, i1 = min(j0 + 1, res - 1), min(i0 + 1, res - 1)
        fx, fy = col - np.float32(j0), row - np.float32(i0)
        for ch in range(4):
            top_row = atlas[tile, i0, j0, ch] + fx * (atlas[tile, i0, j1, ch] - atlas[tile, i0, j0, ch])
            bottom = atlas[tile, i1, j0, ch] + fx * (atlas[tile, i1, j1, ch] - atlas[tile, i1, j0, ch])
            texel[ch] = top_row + fy * (bottom - top_row)
        v0, v1, v2 = tris[t, 0], tris[t, 1], tris[t, 2]
        for ch in range(3):
            light = w0 * diffuse[v0, ch] + w1 * diffuse[v1, ch] + w2 * diffuse[v2, ch]
            shine = w0 * specular[v0, ch] + w1 * specular[v1, ch] + w2 * specular[v2, ch]
            pixels[3 * p + ch] = texel[ch] * light + texel[3] * shine


def soften_silhouette(image: np.ndarray, zbuf: np.ndarray) -> None:
    """Anti-alias the edge of what was drawn, in place: the pixels on either side of the coverage
    boundary of ``zbuf`` (finite where drawn) become the mean of their 3 x 3 neighbourhood, a
    one-pixel soft edge as a camera's lens and sensor give (one sample per pixel leaves stairs)."""
    _soften(image, image.copy(), np.isfinite(zbuf))


@numba.njit(cache=True, fastmath=True)
def _soften(image, source, covered):
    height, width = covered.shape
    ninth = np.float32(1.0 / 9.0)
    for y in range(1, height - 1):
        for x in range(1, width - 1):
            c = covered[y, x]
            if c == covered[y - 1, x] and c == covered[y + 1, x] and c == covered[y, x - 1] and c == covered[y, x + 1]:
                continue
            for ch in range(3):
                total = np.float32(0.0)
                for dy in range(-1, 2):
                    for dx in range(-1, 2):
                        total += source[y + dy, x + dx, ch]
                image[y, x, ch] = total * ninth


def rasterize_surface(verts: np.ndarray, w: np.ndarray, tris: np.ndarray, visible: np.ndarray, boxes: np.ndarray,
                      height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``rasterize_ids`` into new buffers: (z-buffer (H, W) float32, +inf where nothing was drawn;
    triangle ids (H, W) int32, -1 there; perspective-correct weights (H, W, 2) float32). ``w`` (V,)
    is each vertex's camera-space depth (ones for an affine render)."""
    zbuf = np.full((height, width), np.inf, np.float32)
    tri_id = np.full((height, width), -1, np.int32)
    bary = np.empty((height, width, 2), np.float32)
    rasterize_ids(np.ascontiguousarray(verts, np.float32), np.float32(1.0) / np.asarray(w, np.float32),
                  np.ascontiguousarray(tris, np.uint32), visible, boxes, zbuf, tri_id, bary)
    return zbuf, tri_id, bary
