"""The TensorFlow decoder agrees with the numpy one (edge_runtime) on random parameters."""
from __future__ import annotations

import numpy as np
import pytest

from siamface.edge_runtime.camera import CameraPose, compose_camera
from siamface.training.morphable_tf import TFMorphableModel, landmark_and_sample_indices

N_ID = 40  # a prefix of the identity modes, to check the basis is cut to K


def random_params(face_model, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    layout = face_model.layout(N_ID)
    cams = [compose_camera(CameraPose(scale=rng.uniform(3, 6), yaw=rng.uniform(-1.4, 1.4),
                                      pitch=rng.uniform(-0.5, 0.5), roll=rng.uniform(-0.5, 0.5),
                                      tx=rng.uniform(30, 90), ty=rng.uniform(30, 90), tz=rng.uniform(-5, 5)))
            for _ in range(n)]
    return layout.join(np.stack(cams), rng.normal(size=(n, N_ID)), rng.uniform(0, 1, size=(n, 53)))


def max_relative_error(actual, expected) -> float:
    """Largest absolute difference relative to the largest magnitude (pixels ~ 100)."""
    return float(np.max(np.abs(np.asarray(actual) - expected)) / np.max(np.abs(expected)))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_full_mesh_matches_numpy(face_model, dtype):
    import tensorflow as tf

    layout = face_model.layout(N_ID)
    params = random_params(face_model, 3, seed=1)
    tfm = TFMorphableModel.from_numpy(face_model, layout, dtype=tf.as_dtype(dtype))
    assert tfm.n_vertices == face_model.n_vertices
    expected = face_model.image_vertices(params, layout)
    assert max_relative_error(tfm.image_points(params), expected) < 1e-5

    camera, id_c, exp_c = tfm.split(params)
    np_camera, np_id, np_exp = layout.split(params)
    np.testing.assert_array_equal(camera.numpy(), np_camera.astype(dtype))
    np.testing.assert_array_equal(id_c.numpy(), np_id.astype(dtype))
    np.testing.assert_array_equal(exp_c.numpy(), np_exp.astype(dtype))
    assert max_relative_error(tfm.shape(id_c, exp_c), face_model.shape(np_id, np_exp)) < 1e-5


def test_landmark_subset_matches_numpy(face_model):
    layout = face_model.layout(N_ID)
    params = random_params(face_model, 4, seed=2)
    tfm = TFMorphableModel.from_numpy(face_model, layout, face_model.landmarks68)
    expected = face_model.image_landmarks(params, layout)
    assert tfm.image_points(params).shape == (4, 68, 3)
    assert max_relative_error(tfm.image_points(params), expected) < 1e-5


def test_sampled_subset_matches_full_mesh_rows(face_model):
    layout = face_model.layout(N_ID)
    params = random_params(face_model, 2, seed=3)
    idx = landmark_and_sample_indices(face_model, 50, seed=0)
    tfm = TFMorphableModel.from_numpy(face_model, layout, idx)
    expected = face_model.image_vertices(params, layout)[:, idx]
    assert max_relative_error(tfm.image_points(params), expected) < 1e-5
    np.testing.assert_array_equal(tfm.vertex_indices, idx)


def test_sample_indices_are_spread_face_vertices(face_model):
    idx = landmark_and_sample_indices(face_model, 200, seed=0)
    assert len(idx) == 268 and len(np.unique(idx)) == 268
    np.testing.assert_array_equal(idx[:68], face_model.landmarks68)
    assert np.isin(idx[68:], face_model.extras["fitting_vertices"]).all()
    # Farthest-point samples are far better spread than random ones: compare nearest-neighbour gaps.
    pts = face_model.mean[idx]
    gaps = np.sort(np.linalg.norm(pts[:, None] - pts[None], axis=-1), axis=1)[:, 1]
    rng = np.random.default_rng(0)
    rand = face_model.mean[rng.choice(face_model.extras["fitting_vertices"], 268, replace=False)]
    rand_gaps = np.sort(np.linalg.norm(rand[:, None] - rand[None], axis=-1), axis=1)[:, 1]
    assert np.median(gaps[68:]) > 1.5 * np.median(rand_gaps)
    assert not np.array_equal(idx, landmark_and_sample_indices(face_model, 200, seed=1))
    np.testing.assert_array_equal(idx, landmark_and_sample_indices(face_model, 200, seed=0))
    np.testing.assert_array_equal(landmark_and_sample_indices(face_model, 0), face_model.landmarks68)


def test_too_many_identity_modes_is_a_user_error(face_model):
    from siamface.edge_runtime.errors import SiamfaceError
    from siamface.edge_runtime.params import ParamLayout

    with pytest.raises(SiamfaceError, match="identity modes"):
        TFMorphableModel.from_numpy(face_model, ParamLayout(n_id=101))
