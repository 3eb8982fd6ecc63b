"""The numpy morphable model, the camera and the crop convention against hand computations."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from siamface.edge_runtime.camera import (CameraPose, compose_camera, decompose_camera, euler_to_matrix,
                                 matrix_to_euler, project)
from siamface.edge_runtime.crop import crop_from_box, crop_image, landmark_box
from siamface.edge_runtime.errors import SiamfaceError
from siamface.edge_runtime.morphable_model import load_face_model
from siamface.edge_runtime.params import ParamLayout, Whitening
from siamface.training.face_model import ENV_VAR, load_training_face_model, resolve_face_model_path


def test_decode_matches_hand_computation(face_model):
    raw = {k: v.astype(np.float64) if v.dtype.kind == "f" else v
           for k, v in np.load(resolve_face_model_path(), allow_pickle=False).items()}
    ids = np.zeros(100, np.float32)
    ids[[0, 7]] = [1.5, -2.0]
    exps = np.zeros(53, np.float32)
    exps[face_model.exp_names.index("jawOpen")] = 0.5
    v = face_model.shape(ids, exps)
    for k in (0, 1234, 15000):
        hand = (raw["mean"][k] + 1.5 * raw["id_basis"][0, k] - 2.0 * raw["id_basis"][7, k]
                + 0.5 * raw["exp_basis"][list(raw["exp_names"]).index("jawOpen"), k])
        np.testing.assert_allclose(v[k], hand, atol=1e-5)


def test_identity_prefix_and_landmarks(face_model):
    rng = np.random.default_rng(0)
    ids, exps = rng.standard_normal(30).astype(np.float32), rng.uniform(0, 1, 53).astype(np.float32)
    full = face_model.shape(ids, exps)
    np.testing.assert_allclose(face_model.landmarks3d(ids, exps), full[face_model.landmarks68], atol=1e-4)
    padded = np.concatenate([ids, np.zeros(70, np.float32)])
    np.testing.assert_allclose(face_model.shape(padded, exps), full, atol=1e-5)


def test_landmark_indices_are_anatomical(face_model):
    lm = face_model.landmarks3d(np.zeros(100))
    assert np.argmin(lm[:, 1]) == 8                      # chin is the lowest point
    assert np.argmax(lm[27:36, 2]) + 27 == 30            # nose tip is the nose's most forward point
    assert lm[36, 0] < lm[39, 0] < lm[42, 0] < lm[45, 0]  # eye corners left to right in the image
    assert lm[0, 0] < 0 < lm[16, 0]                      # jaw starts on the image's left
    assert lm[51, 1] > lm[57, 1]                         # upper lip above lower lip


@pytest.mark.parametrize("angles", [(0.3, -0.2, 0.1), (-1.4, 0.6, -0.5), (1.2, 0.0, 0.45)])
def test_camera_round_trip(angles):
    pose = CameraPose(4.5, *angles, tx=61.0, ty=-3.0, tz=2.0)
    back = decompose_camera(compose_camera(pose))
    np.testing.assert_allclose([back.scale, back.yaw, back.pitch, back.roll, back.tx, back.ty, back.tz],
                               [4.5, *angles, 61.0, -3.0, 2.0], atol=1e-9)
    r = euler_to_matrix(*angles)
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(matrix_to_euler(r), angles, atol=1e-12)


def test_camera_conventions_by_hand():
    # Frontal: model x stays x, model y (up) becomes image y (down), nearer points get smaller z.
    p = compose_camera(CameraPose(2.0, 0.0, 0.0, 0.0, 10.0, 20.0))
    np.testing.assert_allclose(project(np.array([[1.0, 1.0, 1.0]]), p), [[12.0, 18.0, -2.0]])
    # Yaw +90 degrees turns the nose (+z) towards the image's right (+x).
    p = compose_camera(CameraPose(1.0, np.pi / 2, 0.0, 0.0, 0.0, 0.0))
    np.testing.assert_allclose(project(np.array([[0.0, 0.0, 1.0]]), p), [[1.0, 0.0, 0.0]], atol=1e-12)
    # Pitch > 0 tips the nose down in the image (+y).
    p = compose_camera(CameraPose(1.0, 0.0, 0.3, 0.0, 0.0, 0.0))
    assert project(np.array([[0.0, 0.0, 1.0]]), p)[0, 1] > 0


def test_regressed_camera_is_orthonormalised():
    p = compose_camera(CameraPose(3.0, 0.4, 0.1, -0.2, 5.0, 6.0))
    noisy = p + np.random.default_rng(1).normal(0, 0.01, p.shape)
    back = decompose_camera(noisy)
    assert abs(back.scale - 3.0) < 0.02 and abs(back.yaw - 0.4) < 0.02


def test_param_layout_and_whitening():
    layout = ParamLayout(n_id=10, n_exp=53)
    assert layout.size == 75 and layout.identity == slice(12, 22) and layout.expression == slice(22, 75)
    cam = np.arange(12.0).reshape(3, 4)
    params = layout.join(cam, np.ones(10), np.zeros(53))
    c, i, e = layout.split(params)
    np.testing.assert_array_equal(c, cam)
    with pytest.raises(SiamfaceError):
        layout.split(np.zeros(74))
    data = np.random.default_rng(0).normal(3.0, 2.0, size=(500, 75))
    data[:, 11] = 0.0  # a constant parameter (tz) must stay finite
    w = Whitening.fit(data)
    z = w.whiten(data)
    assert np.all(np.isfinite(z)) and abs(z[:, 0].std() - 1) < 1e-3
    np.testing.assert_allclose(w.unwhiten(z), data, atol=1e-4)
    assert Whitening.from_dict(w.to_dict()).std[5] == w.std[5]


def test_crop_convention_by_hand():
    crop = crop_from_box((100, 200, 200, 260), size=120)   # w 100, h 60 -> old_size 80
    assert crop.side == pytest.approx(1.58 * 80)
    assert crop.x0 + crop.side / 2 == pytest.approx(150)
    assert crop.y0 + crop.side / 2 == pytest.approx(230 + 0.14 * 80)
    pts = np.array([[150.0, 241.2, 7.0], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(crop.to_image(crop.to_crop(pts)), pts, atol=1e-9)
    np.testing.assert_allclose(crop.to_crop(pts)[0, :2], [60, 60], atol=1e-9)  # the face centre
    assert landmark_box(np.array([[1, 5], [3, 2], [2, 9]])) == (1, 2, 3, 9)


def test_crop_image_moves_pixels_where_points_go():
    image = np.zeros((300, 400, 3), np.uint8)
    image[150, 250] = 255
    crop = crop_from_box((200, 100, 300, 200), size=120)
    out = crop_image(image, crop)
    assert out.shape == (120, 120, 3)
    peak = np.unravel_index(np.argmax(out[..., 0]), out.shape[:2])
    expected = crop.to_crop(np.array([[250.0, 150.0]]))[0]
    assert abs(peak[1] - expected[0]) <= 1 and abs(peak[0] - expected[1]) <= 1
    corner = crop_image(image, crop_from_box((-100, -100, 0, 0), size=120))
    assert corner[0, 0].sum() == 0  # outside the image is zero-padded


def test_missing_and_corrupt_face_model(tmp_path, monkeypatch):
    with pytest.raises(SiamfaceError, match="not found at .*nope.npz.*siamface export"):
        load_face_model(tmp_path / "nope.npz")  # the loader the device uses on its bundle's decoder
    with pytest.raises(SiamfaceError, match="not found at .*nope.npz: pass --face-model"):
        load_training_face_model(tmp_path / "nope.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file at all")
    with pytest.raises(SiamfaceError, match="bad.npz is unreadable or corrupt"):
        load_face_model(bad)
    partial = tmp_path / "partial.npz"
    np.savez(partial, mean=np.zeros((3, 3), np.float32))
    with pytest.raises(SiamfaceError, match="lacks keys"):
        load_face_model(partial)
    monkeypatch.setenv(ENV_VAR, str(bad))
    with pytest.raises(SiamfaceError, match="bad.npz is unreadable or corrupt .*: pass --face-model"):
        load_training_face_model()


def test_training_face_model_resolution_order(tmp_path, monkeypatch):
    """--face-model, else $SIAMFACE_FACE_MODEL, else the workspace asset, else a one-line error."""
    workspace = tmp_path / "shared" / "ict_face_model.npz"
    monkeypatch.delenv(ENV_VAR, raising=False)
    with pytest.raises(SiamfaceError, match=r"no face model given and none at .*shared/ict_face_model.npz: "
                                            r"pass --face-model PATH or set SIAMFACE_FACE_MODEL") as info:
        resolve_face_model_path(None, workspace)
    assert "\n" not in str(info.value)
    workspace.parent.mkdir()
    workspace.touch()
    assert resolve_face_model_path(None, workspace) == workspace
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "env.npz"))
    assert resolve_face_model_path(None, workspace) == tmp_path / "env.npz"
    assert resolve_face_model_path(tmp_path / "given.npz", workspace) == tmp_path / "given.npz"


def test_device_package_names_no_workspace_path():
    """The device reads its face model from the bundle: no module of edge_runtime points at ../shared."""
    from siamface import edge_runtime

    for module in Path(edge_runtime.__file__).parent.rglob("*.py"):
        text = module.read_text()
        assert '"shared"' not in text and "shared/" not in text, module
