"""Rasterizer: coverage, occlusion (the nearer triangle wins), back-face culling, interpolation."""
from __future__ import annotations

import numpy as np

from training.data.rasterizer import render, vertex_normals, visible_triangles

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
