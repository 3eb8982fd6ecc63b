"""The 2D landmark convention (edge_runtime.contour): jaw points on the visible face contour.

The contour is measured independently of the marching: the face's projected outline is the union
of its triangles filled with OpenCV, and a landmark on the contour lies on that outline's edge.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from siamface.edge_runtime.camera import CameraPose, compose_camera
from siamface.edge_runtime.contour import MARCHING_LANDMARKS, march

SIZE = 480
SCALE = 20.0  # pixels per cm: the face is about 300 px wide
MINUS_X = (1, 2, 3, 4, 5)      # jaw points on the model's -x side (the image's left at yaw 0)
PLUS_X = (11, 12, 13, 14, 15)  # yaw > 0 faces the image's right: this side turns away


def _params(model, yaw_deg: float, pitch_deg: float = 0.0) -> np.ndarray:
    layout = model.layout()
    camera = compose_camera(CameraPose(SCALE, np.radians(yaw_deg), np.radians(pitch_deg), 0.0, SIZE / 2, SIZE / 2))
    return layout.join(camera, np.zeros(layout.n_id), np.zeros(layout.n_exp))


def _outline_distance(model, params: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Pixels from each point to the edge of the projected face (narrow face area, face region)."""
    narrow = int(model.extras["narrow_face_vertices"])
    face = model.region_names.index("face")
    tris = model.triangles[np.all((model.triangles < narrow) & (model.vertex_region[model.triangles] == face), axis=1)]
    verts = model.image_vertices(params, model.layout())[:, :2]
    mask = np.zeros((SIZE, SIZE), np.uint8)
    cv2.fillPoly(mask, list(np.round(verts[tris] * 8).astype(np.int32)), 255, shift=3)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))  # seams between tiny triangles
    inside = cv2.distanceTransform(mask, cv2.DIST_L2, 5)
    outside = cv2.distanceTransform(255 - mask, cv2.DIST_L2, 5)
    at = np.round(points).astype(int)
    return np.maximum(inside[at[:, 1], at[:, 0]], outside[at[:, 1], at[:, 0]])


def test_frontal_faces_keep_the_3d_landmarks(face_model):
    params = _params(face_model, 0.0)
    np.testing.assert_array_equal(face_model.image_landmarks(params, face_model.layout(), "2d"),
                                  face_model.image_landmarks(params, face_model.layout(), "3d"))


@pytest.mark.parametrize("yaw, on_outline_px", [(35.0, 2.5), (-35.0, 2.5), (55.0, 6.0)])
def test_far_side_jaw_moves_onto_the_outline(face_model, yaw, on_outline_px):
    params = _params(face_model, yaw)
    layout = face_model.layout()
    fixed = face_model.image_landmarks(params, layout, "3d")[:, :2]
    contour = face_model.image_landmarks(params, layout, "2d")[:, :2]
    far, near = (PLUS_X, MINUS_X) if yaw > 0 else (MINUS_X, PLUS_X)
    to_edge_fixed = _outline_distance(face_model, params, fixed[list(far)])
    to_edge_contour = _outline_distance(face_model, params, contour[list(far)])
    assert to_edge_fixed.max() > 20.0                 # the 3D jaw has slid behind the cheek
    assert to_edge_contour.max() <= on_outline_px     # the 2D jaw is on the outline (face ~300 px wide)
    assert np.all(to_edge_contour <= to_edge_fixed + 1.0)
    np.testing.assert_array_equal(contour[list(near)], fixed[list(near)])  # the near side stays
    kept = [i for i in range(68) if i not in MARCHING_LANDMARKS]
    np.testing.assert_array_equal(contour[kept], fixed[kept])


def test_batches_march_as_single_faces(face_model):
    layout = face_model.layout()
    rng = np.random.default_rng(0)
    batch = np.stack([_params(face_model, y, p) for y, p in [(40, 10), (-25, -15), (0, 0)]])
    batch[:, layout.identity] = rng.standard_normal((3, layout.n_id))
    together = face_model.image_landmarks(batch, layout, "2d")
    one_by_one = np.stack([face_model.image_landmarks(p, layout, "2d") for p in batch])
    np.testing.assert_allclose(together, one_by_one, atol=1e-4)


def test_march_takes_the_outermost_candidate_per_line(face_model):
    lines = face_model.contour_lines
    candidates = np.zeros((len(lines.vertices), 3), np.float32)
    candidates[:, 0] = np.arange(len(lines.vertices))  # further right = later in the vertex list
    camera = np.eye(3, 4)
    out = march(np.zeros((68, 3), np.float32), candidates, lines, camera)
    for k, j in enumerate(lines.landmarks):
        members = np.searchsorted(lines.vertices, lines.table[k][lines.table[k] >= 0])
        expected = members.max() if lines.side[k] > 0 else members.min()
        assert out[j, 0] == expected


def test_unknown_convention_is_refused(face_model):
    with pytest.raises(Exception, match="unknown landmark convention"):
        face_model.image_landmarks(_params(face_model, 0.0), face_model.layout(), "contour")
