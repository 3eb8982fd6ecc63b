"""Z-buffered triangle rasterizer with per-vertex colour interpolation, compiled with numba.

Vertices are in image space (x right, y down, pixel centres at integers, smaller z nearer).
Triangles are counter-clockwise seen from outside in model space; in image space (y flipped)
a front face therefore has a negative signed area, and faces with area >= 0 are culled.
"""
from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, fastmath=True)
def vertex_normals(verts: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """Unit per-vertex normals (area-weighted face normals), outward, in the verts' space."""
    normals = np.zeros_like(verts)
    for t in range(tris.shape[0]):
        a, b, c = tris[t, 0], tris[t, 1], tris[t, 2]
        ux, uy, uz = verts[b, 0] - verts[a, 0], verts[b, 1] - verts[a, 1], verts[b, 2] - verts[a, 2]
        vx, vy, vz = verts[c, 0] - verts[a, 0], verts[c, 1] - verts[a, 1], verts[c, 2] - verts[a, 2]
        nx, ny, nz = uy * vz - uz * vy, uz * vx - ux * vz, ux * vy - uy * vx
        for k in (a, b, c):
            normals[k, 0] += nx
            normals[k, 1] += ny
            normals[k, 2] += nz
    for i in range(verts.shape[0]):
        n = np.sqrt(normals[i, 0] ** 2 + normals[i, 1] ** 2 + normals[i, 2] ** 2)
        if n > 0:
            normals[i, 0] /= n
            normals[i, 1] /= n
            normals[i, 2] /= n
    return normals


@numba.njit(cache=True, fastmath=True)
def rasterize(verts: np.ndarray, colors: np.ndarray, tris: np.ndarray,
              image: np.ndarray, zbuf: np.ndarray) -> int:
    """Draw front-facing triangles into ``image`` (H, W, C) where nearer than ``zbuf`` (H, W).

    Colours (V, C) are interpolated barycentrically; returns the number of pixels written.
    """
    height, width = zbuf.shape
    written = 0
    for t in range(tris.shape[0]):
        i0, i1, i2 = tris[t, 0], tris[t, 1], tris[t, 2]
        x0, y0, z0 = verts[i0, 0], verts[i0, 1], verts[i0, 2]
        x1, y1, z1 = verts[i1, 0], verts[i1, 1], verts[i1, 2]
        x2, y2, z2 = verts[i2, 0], verts[i2, 1], verts[i2, 2]
        area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
        if area >= 0.0:
            continue  # back face or degenerate
        xmin = max(int(np.ceil(min(x0, min(x1, x2)))), 0)
        xmax = min(int(np.floor(max(x0, max(x1, x2)))), width - 1)
        ymin = max(int(np.ceil(min(y0, min(y1, y2)))), 0)
        ymax = min(int(np.floor(max(y0, max(y1, y2)))), height - 1)
        if xmin > xmax or ymin > ymax:
            continue
        inv = 1.0 / area
        for py in range(ymin, ymax + 1):
            for px in range(xmin, xmax + 1):
                w0 = ((x1 - px) * (y2 - py) - (x2 - px) * (y1 - py)) * inv
                w1 = ((x2 - px) * (y0 - py) - (x0 - px) * (y2 - py)) * inv
                w2 = 1.0 - w0 - w1
                if w0 < 0.0 or w1 < 0.0 or w2 < 0.0:
                    continue
                z = w0 * z0 + w1 * z1 + w2 * z2
                if z >= zbuf[py, px]:
                    continue
                zbuf[py, px] = z
                for ch in range(image.shape[2]):
                    image[py, px, ch] = w0 * colors[i0, ch] + w1 * colors[i1, ch] + w2 * colors[i2, ch]
                written += 1
    return written


def render(verts: np.ndarray, colors: np.ndarray, tris: np.ndarray, background: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Render over a float background (H, W, C); returns (image, coverage mask)."""
    image = np.ascontiguousarray(background, dtype=np.float32).copy()
    zbuf = np.full(image.shape[:2], np.inf, np.float32)
    rasterize(np.ascontiguousarray(verts, np.float32), np.ascontiguousarray(colors, np.float32),
              np.ascontiguousarray(tris, np.int32), image, zbuf)
    return image, np.isfinite(zbuf)
