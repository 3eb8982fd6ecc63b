"""Render helpers only the tests use: a per-vertex-colour rasterizer and full render calls built
from the production rasterizer's pieces (``training.data.rasterizer``), for drawing test faces
and checking the textured path against a direct render."""
from __future__ import annotations

import numba
import numpy as np

from siamface.training.data.rasterizer import (FASTMATH_KEEP_INF, cull_triangles, rasterize_surface, shade_textured,
                                      vertex_normals)


def visible_triangles(verts: np.ndarray, tris: np.ndarray, height: int, width: int,
                      normal_space: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``cull_triangles`` plus the vertex mask (V,) of the vertices the survivors use and the unit
    vertex normals (V, 3) of the whole mesh, those of ``normal_space`` (V, 3) when given: a
    perspective render passes camera-space vertices, as projected ones would bend the normals."""
    visible, boxes = cull_triangles(verts, tris, height, width)
    used = np.zeros(len(verts), np.bool_)
    used[np.asarray(tris)[visible]] = True
    space = verts if normal_space is None else normal_space
    return visible, boxes, used, vertex_normals(np.ascontiguousarray(space, np.float32),
                                                np.ascontiguousarray(tris, np.uint32))


@numba.njit(cache=True, fastmath=FASTMATH_KEEP_INF)
def rasterize(verts: np.ndarray, colors: np.ndarray, tris: np.ndarray, visible: np.ndarray,
              boxes: np.ndarray, image: np.ndarray, zbuf: np.ndarray) -> int:
    """Draw triangles ``tris[visible]`` (pixel boxes from ``cull_triangles``) into ``image``
    (H, W, 3), C-contiguous, where nearer than ``zbuf`` (H, W).

    Colours (V, 3) are interpolated barycentrically; returns the number of pixels written.
    """
    written = 0
    one = np.float32(1.0)
    width = zbuf.shape[1]
    pixels, depth = image.reshape(-1), zbuf.reshape(-1)
    for k in range(visible.shape[0]):
        t = visible[k]
        i0, i1, i2 = tris[t, 0], tris[t, 1], tris[t, 2]
        x0, y0, z0 = verts[i0, 0], verts[i0, 1], verts[i0, 2]
        x1, y1, z1 = verts[i1, 0], verts[i1, 1], verts[i1, 2]
        x2, y2, z2 = verts[i2, 0], verts[i2, 1], verts[i2, 2]
        inv = one / ((x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0))
        # Barycentric weights as planes over the pixel grid: w = a * x + b * y + c.
        a0, b0, c0 = (y1 - y2) * inv, (x2 - x1) * inv, (x1 * y2 - x2 * y1) * inv
        a1, b1, c1 = (y2 - y0) * inv, (x0 - x2) * inv, (x2 * y0 - x0 * y2) * inv
        # Depth and colour from vertex 2 plus weighted differences (w2 = 1 - w0 - w1).
        dz0, dz1 = z0 - z2, z1 - z2
        r2, g2, b2 = colors[i2, 0], colors[i2, 1], colors[i2, 2]
        dr0, dg0, db0 = colors[i0, 0] - r2, colors[i0, 1] - g2, colors[i0, 2] - b2
        dr1, dg1, db1 = colors[i1, 0] - r2, colors[i1, 1] - g2, colors[i1, 2] - b2
        x_lo, x_hi = boxes[k, 0], boxes[k, 1] + 1
        for py in range(boxes[k, 2], boxes[k, 3] + 1):
            fy = np.float32(py)
            q0, q1 = b0 * fy + c0, b1 * fy + c1
            for px in range(x_lo, x_hi):
                fx = np.float32(px)
                w0 = a0 * fx + q0
                w1 = a1 * fx + q1
                w2 = one - w0 - w1
                z = z2 + w0 * dz0 + w1 * dz1
                p = py * width + px
                old = depth[p]
                # Branch-free: inside and nearer selects the new values (tiny triangles make
                # these tests unpredictable, and a mispredicted branch costs more than the stores).
                hit = (min(w0, min(w1, w2)) >= 0.0) & (z < old)
                depth[p] = z if hit else old
                p *= 3
                pixels[p] = (r2 + w0 * dr0 + w1 * dr1) if hit else pixels[p]
                pixels[p + 1] = (g2 + w0 * dg0 + w1 * dg1) if hit else pixels[p + 1]
                pixels[p + 2] = (b2 + w0 * db0 + w1 * db1) if hit else pixels[p + 2]
                written += hit
    return written


def render(verts: np.ndarray, colours: np.ndarray, tris: np.ndarray, background: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Render over a float background (H, W, 3); returns (image, coverage mask)."""
    image = np.array(background, dtype=np.float32, order="C")  # always a copy
    zbuf = np.full(image.shape[:2], np.inf, np.float32)
    verts = np.ascontiguousarray(verts, np.float32)
    tris = np.ascontiguousarray(tris, np.uint32)
    visible, boxes = cull_triangles(verts, tris, *image.shape[:2])
    rasterize(verts, np.ascontiguousarray(colours, np.float32), tris, visible, boxes, image, zbuf)
    return image, np.isfinite(zbuf)


def render_textured(verts: np.ndarray, w: np.ndarray, tris: np.ndarray, visible: np.ndarray, boxes: np.ndarray,
                    uv: np.ndarray, uv_tris: np.ndarray, atlas: np.ndarray, diffuse: np.ndarray,
                    specular: np.ndarray, image: np.ndarray) -> np.ndarray:
    """Draw the textured, lit triangles ``tris[visible]`` (pixel boxes from ``cull_triangles``)
    into ``image`` (H, W, 3) float32 in place; returns the z-buffer (``rasterize_surface``'s).
    The other arguments are as ``rasterize_surface`` and ``shade_textured`` take them."""
    zbuf, tri_id, bary = rasterize_surface(verts, w, tris, visible, boxes, *image.shape[:2])
    shade_textured(tri_id, bary, np.ascontiguousarray(tris, np.uint32), np.ascontiguousarray(uv, np.float32),
                   np.ascontiguousarray(uv_tris, np.uint32), np.ascontiguousarray(atlas, np.float32),
                   np.ascontiguousarray(diffuse, np.float32), np.ascontiguousarray(specular, np.float32), image)
    return zbuf
