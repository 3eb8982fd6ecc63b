"""Rasterizer: coverage, occlusion (the nearer triangle wins), back-face culling, interpolation, and the
textured path: exact texels at triangle corners, perspective-correct uv and depth."""
from __future__ import annotations

import numpy as np

from render_helpers import render, render_textured, visible_triangles
from siamface.training.data.rasterizer import (cull_triangles, drawn_vertices, opening_windows, rasterize_surface,
                                              soften_silhouette, vertex_normals, vertex_normals_where)

# A front face in image space (y down) has negative signed area: clockwise on screen.
FRONT = np.array([[0, 1, 2]], np.int32)


def _tri(z: float, offset: float = 0.0) -> np.ndarray:
    return np.array([[2 + offset, 2, z], [2 + offset, 18, z], [18 + offset, 2, z]], np.float32)


def test_front_face_drawn_back_face_culled():
    colours = np.ones((3, 3), np.float32)
    img, mask = render(_tri(0.0), colours, FRONT, np.zeros((20, 20, 3)))
    assert mask[5, 5] and not mask[17, 17] and img[5, 5, 0] == 1.0
    assert 100 < mask.sum() < 160  # about half of the 16x16 square
    _, mask_back = render(_tri(0.0), colours, FRONT[:, ::-1].copy(), np.zeros((20, 20, 3)))
    assert mask_back.sum() == 0


def test_nearer_triangle_wins_in_either_order():
    verts = np.concatenate([_tri(5.0), _tri(1.0)])            # second one is nearer (smaller z)
    colours = np.array([[1, 0, 0]] * 3 + [[0, 1, 0]] * 3, np.float32)
    for tris in (np.array([[0, 1, 2], [3, 4, 5]]), np.array([[3, 4, 5], [0, 1, 2]])):
        img, _ = render(verts, colours, tris.astype(np.int32), np.zeros((20, 20, 3)))
        np.testing.assert_array_equal(img[5, 5], [0, 1, 0])


def test_colour_interpolation_is_barycentric():
    verts = _tri(0.0)
    colours = np.eye(3, dtype=np.float32)
    img, _ = render(verts, colours, FRONT, np.zeros((20, 20, 3)))
    # Pixel (x=6, y=6): barycentric weights of (2,2), (2,18), (18,2) are 1/2, 1/4, 1/4.
    np.testing.assert_allclose(img[6, 6], [0.5, 0.25, 0.25], atol=1e-6)


def test_vertex_normals_point_at_the_viewer_for_front_faces():
    normals = vertex_normals(_tri(0.0), FRONT)
    np.testing.assert_allclose(normals, [[0, 0, -1]] * 3, atol=1e-6)


def test_visible_triangles_keep_front_faces_that_hold_a_pixel_centre():
    verts = np.concatenate([
        _tri(0.0),                                                           # 0: front face, drawn
        _tri(0.0, offset=40.0),                                              # 1: front face at x 42-58, off the image
        np.array([[5.2, 5.2, 0], [5.2, 5.8, 0], [5.8, 5.2, 0]], np.float32),  # 2: front, between pixel centres
        _tri(0.0),                                                           # 3: wound backwards: back face
    ])
    tris = np.array([[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 11, 10]], np.int32)
    visible, boxes, used, normals = visible_triangles(verts, tris, 20, 20)
    np.testing.assert_array_equal(visible, [0])
    np.testing.assert_array_equal(boxes, [[2, 18, 2, 18]])                # x0, x1, y0, y1 inclusive
    np.testing.assert_array_equal(np.flatnonzero(used), [0, 1, 2])
    np.testing.assert_allclose(normals, vertex_normals(verts, tris), atol=1e-6)
    # Clipped to the image: a triangle sticking out keeps only the rows and columns inside.
    _, boxes, _, _ = visible_triangles(_tri(0.0, offset=-5.0), FRONT, 20, 20)
    np.testing.assert_array_equal(boxes, [[0, 13, 2, 18]])


def _grid_mesh(n: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """A bumpy n x n vertex sheet over a 30-pixel image, front-facing (two triangles per cell)."""
    ys, xs = np.mgrid[0:n, 0:n].astype(np.float32) * (28 / (n - 1)) + 1
    z = np.sin(xs * 0.4) * np.cos(ys * 0.3) * 3
    verts = np.column_stack([xs.ravel(), ys.ravel(), z.ravel()]).astype(np.float32)
    i = np.arange(n * n).reshape(n, n)[:-1, :-1].ravel()
    tris = np.concatenate([np.column_stack([i, i + n, i + 1]), np.column_stack([i + 1, i + n, i + n + 1])])
    return verts, tris.astype(np.uint32)


def test_normals_of_some_vertices_are_those_of_all():
    verts, tris = _grid_mesh()
    wanted = np.random.default_rng(0).uniform(size=len(verts)) < 0.3
    some = vertex_normals_where(verts, tris, wanted)
    np.testing.assert_array_equal(some[wanted], vertex_normals(verts, tris)[wanted])


def test_drawn_vertices_are_the_corners_of_triangles_that_won_a_pixel():
    verts, tris = _grid_mesh()
    # A near triangle over part of the sheet hides what is under it.
    verts = np.concatenate([verts, [[0, 0, -9], [0, 20, -9], [20, 0, -9]]]).astype(np.float32)
    tris = np.concatenate([tris, [[len(verts) - 3, len(verts) - 2, len(verts) - 1]]]).astype(np.uint32)
    visible, boxes, used, _ = visible_triangles(verts, tris, 30, 30)
    _, tri_id, _ = rasterize_surface(verts, np.ones(len(verts), np.float32), tris, visible, boxes, 30, 30)
    drawn = drawn_vertices(tri_id, tris, len(verts))
    np.testing.assert_array_equal(np.flatnonzero(drawn), np.unique(tris[np.unique(tri_id[tri_id >= 0])]))
    assert drawn[-3:].all() and drawn.sum() < used.sum()  # vertices under the near triangle need no light


def test_openings_clip_only_their_triangles_to_the_box_of_their_rim():
    verts, tris = _grid_mesh()
    before_visible, before_boxes, _, _ = visible_triangles(verts, tris, 30, 30)
    before = dict(zip(before_visible.tolist(), before_boxes.tolist()))
    opening = np.full(len(tris), -1, np.int8)
    opening[::3], opening[1::3] = 0, 1
    # Rims: opening 0 round x 5.5-10, y 5.5-9.7; opening 1 a single vertex at (25.5, 1.5).
    verts = np.concatenate([verts, [[5.5, 5.5, 0], [10, 9.7, 0], [25.5, 1.5, 0]]]).astype(np.float32)
    rims, rim_ends = np.array([len(verts) - 3, len(verts) - 2, len(verts) - 1]), np.array([2, 3])
    windows = opening_windows(verts, rims, rim_ends, 1)
    np.testing.assert_array_equal(windows, [[4, 11, 4, 11], [24, 27, 0, 3]])  # floor / ceil, one pixel of margin
    visible, boxes = cull_triangles(verts, tris, 30, 30, opening, windows)
    kept = dict(zip(visible.tolist(), boxes.tolist()))
    assert list(kept) == sorted(kept)  # mesh order, as without openings
    assert {0, 1} <= {int(opening[t]) for t in kept}
    # Others keep their box; a clipped triangle keeps exactly its box's overlap with the window.
    for t, b in before.items():
        if opening[t] < 0:
            assert kept[t] == b
            continue
        x0, x1, y0, y1 = windows[opening[t]]
        clipped = [max(b[0], x0), min(b[1], x1), max(b[2], y0), min(b[3], y1)]
        empty = clipped[0] > clipped[1] or clipped[2] > clipped[3]
        assert (t in kept) != empty and (empty or kept[t] == clipped)


# A big front-facing triangle for the textured tests: corners at pixels (2, 2), (2, 40), (40, 2).
BIG = np.array([[2, 2], [2, 40], [40, 2]], np.float32)


def _textured(uv: np.ndarray, atlas: np.ndarray, w=(1.0, 1.0, 1.0), diffuse: float = 1.0, specular: float = 0.0):
    verts = np.column_stack([BIG, np.asarray(w, np.float32)])       # depth z = w, as a camera would give
    light = np.full((3, 3), diffuse, np.float32), np.full((3, 3), specular, np.float32)
    image = np.zeros((44, 44, 3), np.float32)
    visible, boxes, _, _ = visible_triangles(verts, FRONT, 44, 44)
    zbuf = render_textured(verts, np.asarray(w, np.float32), FRONT, visible, boxes, uv, FRONT, atlas, *light, image)
    return image, zbuf


def _barycentrics(x: float, y: float) -> np.ndarray:
    """Screen-space barycentrics of pixel (x, y) in BIG, by hand."""
    (x0, y0), (x1, y1), (x2, y2) = BIG
    m = np.array([[x0 - x2, x1 - x2], [y0 - y2, y1 - y2]], np.float64)
    b01 = np.linalg.solve(m, [x - x2, y - y2])
    return np.array([b01[0], b01[1], 1 - b01.sum()])


def test_textured_corners_sample_their_texel_exactly():
    """Each corner's uv is a texel centre of tile 1 inside a 5x5 block of one colour; pixels at and
    next to the corner get exactly that colour, from that tile (tile 0 is all different)."""
    res = 16
    rng = np.random.default_rng(0)
    atlas = rng.uniform(0, 1, (2, res, res, 4)).astype(np.float32)
    texels = [(3, 3), (12, 3), (3, 12)]                              # (row, col) of each corner
    colours = np.array([[0.9, 0.1, 0.2, 0.0], [0.1, 0.8, 0.3, 0.0], [0.2, 0.3, 0.7, 0.0]], np.float32)
    for (row, col), colour in zip(texels, colours):
        atlas[1, row - 2:row + 3, col - 2:col + 3] = colour
    uv = np.array([[1 + (col + 0.5) / res, 1 - (row + 0.5) / res] for row, col in texels], np.float32)
    near = [(3, 3), (38, 3), (3, 38)]                                # (y, x) one pixel inside each corner
    for w in ((1.0, 1.0, 1.0), (30.0, 45.0, 60.0)):                  # affine and perspective
        image, zbuf = _textured(uv, atlas, w)
        for (y, x), corner, colour in zip(near, BIG, colours):
            np.testing.assert_allclose(image[y, x], colour[:3], atol=1e-5)
            cx, cy = int(corner[0]), int(corner[1])
            if np.isfinite(zbuf[cy, cx]):                            # the corner pixel itself, when drawn
                np.testing.assert_allclose(image[cy, cx], colour[:3], atol=1e-5)


def test_textured_uv_and_depth_are_perspective_correct():
    """An atlas whose red and green are u and v (linear ramps: bilinear lookups are exact) shows
    the interpolated uv; compare with (sum b_i uv_i / w_i) / (sum b_i / w_i) by hand."""
    res = 64
    centres = (np.arange(res, dtype=np.float32) + 0.5) / res
    atlas = np.zeros((1, res, res, 4), np.float32)
    atlas[0, :, :, 0] = centres[None, :]                             # u at each texel centre
    atlas[0, :, :, 1] = 1 - centres[:, None]                         # v
    uv = np.array([[0.1, 0.2], [0.3, 0.9], [0.85, 0.15]], np.float32)
    w = np.array([20.0, 35.0, 70.0])
    image, zbuf = _textured(uv, atlas, w)
    flat, _ = _textured(uv, atlas)
    for x, y in [(5, 5), (10, 25), (30, 8), (15, 15), (4, 36)]:
        b = _barycentrics(x, y)
        perspective = (b / w) @ uv / (b / w).sum()
        np.testing.assert_allclose(image[y, x, :2], perspective, atol=2e-5)
        np.testing.assert_allclose(zbuf[y, x], 1 / (b / w).sum(), rtol=1e-5)    # depth: 1 / interpolated 1/w
        np.testing.assert_allclose(flat[y, x, :2], b @ uv, atol=2e-5)            # w = 1: affine
        assert np.abs(perspective - b @ uv).max() > 0.02                         # the two differ here
    # A constant w is the affine case.
    same, _ = _textured(uv, atlas, (7.0, 7.0, 7.0))
    np.testing.assert_allclose(same, flat, atol=1e-5)


def test_textured_colour_is_albedo_times_diffuse_plus_specular_strength_times_specular():
    atlas = np.zeros((1, 4, 4, 4), np.float32)
    atlas[..., :3] = [0.8, 0.4, 0.2]
    atlas[..., 3] = 0.5
    uv = np.array([[0.2, 0.2], [0.2, 0.8], [0.8, 0.2]], np.float32)
    image, zbuf = _textured(uv, atlas, diffuse=0.5, specular=0.25)
    np.testing.assert_allclose(image[10, 10], [0.8 * 0.5 + 0.125, 0.4 * 0.5 + 0.125, 0.2 * 0.5 + 0.125], atol=1e-6)
    assert np.isinf(zbuf[40, 40]) and not image[40, 40].any()                   # outside: untouched


def test_soften_silhouette_blurs_only_the_coverage_edge():
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 1, (20, 20, 3)).astype(np.float32)
    zbuf = np.full((20, 20), np.inf, np.float32)
    zbuf[5:15, 6:12] = 1.0                                        # a drawn rectangle
    soft = image.copy()
    soften_silhouette(soft, zbuf)
    changed = np.abs(soft - image).max(axis=-1) > 0
    # The rows and columns on either side of the rectangle's outline, nothing else.
    ring = np.zeros((20, 20), bool)
    ring[4:16, 5:13] = True
    ring[6:14, 7:11] = False
    ring[4, 5] = ring[4, 12] = ring[15, 5] = ring[15, 12] = False  # corners outside: no covered 4-neighbour
    np.testing.assert_array_equal(changed, ring)
    np.testing.assert_allclose(soft[10, 6], image[9:12, 5:8].mean(axis=(0, 1)), atol=1e-6)
