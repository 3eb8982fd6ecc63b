"""Parameters seen in a mirror (edge_runtime.mirror_params): the maps the face model implies, exact
landmarks of the mirrored face, and a clear error for an asymmetric model. Predictions that fuse a
crop with its mirror image, on the real interpreter: test_edge_runtime.py."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from siamface.edge_runtime.camera import CameraPose, compose_camera
from siamface.edge_runtime.errors import SiamfaceError
from siamface.edge_runtime.mirror_params import param_mirror
from siamface.evaluation.landmark_fit import MIRROR

SIDE = 120


def _faces(model, layout, n: int, rng: np.random.Generator) -> np.ndarray:
    """Parameter vectors of turned, expressive faces in a SIDE-pixel crop."""
    params = []
    for _ in range(n):
        yaw, pitch, roll = rng.uniform(-60, 60), rng.uniform(-30, 30), rng.uniform(-20, 20)
        camera = compose_camera(CameraPose(3.0, np.radians(yaw), np.radians(pitch), np.radians(roll),
                                           60.0 + rng.uniform(-5, 5), 62.0 + rng.uniform(-5, 5)))
        identity = np.zeros(layout.n_id)
        identity[:20] = rng.standard_normal(20)
        expression = np.where(rng.random(layout.n_exp) < 0.1, rng.random(layout.n_exp), 0.0)
        params.append(layout.join(camera, identity, expression))
    return np.stack(params)


def test_maps_swap_sides_and_keep_symmetric_modes(face_model):
    mirror = param_mirror(face_model, 100)
    names = face_model.exp_names
    for left, right in (("mouthSmile_L", "mouthSmile_R"), ("eyeBlink_L", "eyeBlink_R"), ("mouthLeft", "mouthRight"),
                        ("jawLeft", "jawRight")):
        assert mirror.expression[names.index(left)] == names.index(right)
        assert mirror.expression[names.index(right)] == names.index(left)
    assert mirror.expression[names.index("jawOpen")] == names.index("jawOpen")
    np.testing.assert_array_equal(mirror.expression[mirror.expression], np.arange(len(names)))
    leading = mirror.identity[:20, :20]   # ICT's leading modes are symmetric (+1) or antisymmetric (-1)
    np.testing.assert_allclose(np.abs(np.diag(leading)), 1.0, atol=0.01)
    assert np.abs(leading - np.diag(np.diag(leading))).max() < 0.01


def test_unmirrored_parameters_draw_the_mirror_image(face_model):
    """A face's parameters mapped through the mirror put every landmark where the mirror image of
    the crop has it: x -> SIDE - 1 - x, each point swapped with its mirror partner."""
    layout = face_model.layout(100)
    params = _faces(face_model, layout, 6, np.random.default_rng(0))
    seen = param_mirror(face_model, 100).unmirror(params, layout, SIDE)
    original = face_model.image_landmarks(params, layout)
    expected = original[:, MIRROR].copy()
    expected[..., 0] = SIDE - 1 - expected[..., 0]
    drawn = face_model.image_landmarks(seen, layout)
    np.testing.assert_allclose(drawn[..., :2], expected[..., :2], atol=0.02)  # pixels
    np.testing.assert_allclose(drawn[..., 2], expected[..., 2], atol=0.02)    # depth is not mirrored
    fused = param_mirror(face_model, 100).fuse(params, seen, layout, SIDE)    # a symmetric view of one face
    np.testing.assert_allclose(face_model.image_landmarks(fused, layout)[..., :2], original[..., :2], atol=0.02)


def test_an_asymmetric_face_model_is_refused(face_model):
    lopsided = replace(face_model, mean=face_model.mean + np.float32([1.0, 0.0, 0.0]))  # 1 cm to one side
    with pytest.raises(SiamfaceError, match="not left-right symmetric.*flip_params=false"):
        param_mirror(lopsided, 100)
