"""Landmark fitting on synthetic faces with known truth, and real samples into the dataset format."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import scipy.io
from scipy.optimize import lsq_linear

from edge_runtime.camera import CameraPose, compose_camera, project
from edge_runtime.crop import crop_from_box
from training.data.dataset import Dataset
from training.data.fitting import (FitConfig, RealDatasetConfig, box_qp, camera_to_crop, fit_camera, fit_identity,
                                   fit_landmarks, fit_to_dataset)
from training.data.real_formats import AFLW2000Loader, RealSample

K = 20
CONFIG = FitConfig(n_id=K)


def random_params(model, rng, id_coeffs):
    """One synthetic photo of an identity: a few expressions, a random pose, face ~100 px wide."""
    exp = np.zeros(len(model.exp_names))
    exp[rng.choice(len(exp), 3, replace=False)] = rng.uniform(0.1, 0.7, 3)
    pose = CameraPose(scale=rng.uniform(5, 8), yaw=np.radians(rng.uniform(-60, 60)), pitch=np.radians(rng.uniform(-20, 20)),
                      roll=np.radians(rng.uniform(-20, 20)), tx=100 + rng.uniform(-10, 10), ty=100 + rng.uniform(-10, 10))
    return model.layout(K).join(compose_camera(pose), id_coeffs, exp)


def shape_error_mm(model, id_a, id_b):
    """Mean vertex distance (mm) over the fitting vertices after rigid (Kabsch) alignment."""
    idx = model.extras["fitting_vertices"]
    a, b = model.shape(id_a)[idx].astype(np.float64), model.shape(id_b)[idx].astype(np.float64)
    a, b = a - a.mean(axis=0), b - b.mean(axis=0)
    u, _, vt = np.linalg.svd(a.T @ b)
    rotation = u @ np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))]) @ vt
    return float(np.linalg.norm(a @ rotation - b, axis=1).mean() * 10.0)


@pytest.fixture(scope="module")
def synthetic_fits(face_model):
    """6 identities x 5 photos, fitted one by one (2D and 3D targets) and jointly per identity."""
    rng = np.random.default_rng(3)
    layout = face_model.layout(K)
    out = {"residual": [], "single": [], "single3d": [], "joint": [], "mean_shape": [], "joint_residual": []}
    for _ in range(6):
        truth = rng.standard_normal(K)
        landmarks = [face_model.image_landmarks(random_params(face_model, rng, truth), layout) for _ in range(5)]
        for lm in landmarks:
            fit = fit_landmarks(face_model, lm[:, :2], CONFIG)
            out["residual"].append(fit.residual_px)
            out["single"].append(shape_error_mm(face_model, layout.split(fit.params)[1], truth))
        fit3d = fit_landmarks(face_model, landmarks[0], CONFIG)
        out["single3d"].append(shape_error_mm(face_model, layout.split(fit3d.params)[1], truth))
        joint = fit_identity(face_model, [lm[:, :2] for lm in landmarks], CONFIG)
        out["joint_residual"] += [f.residual_px for f in joint]
        out["joint"].append(shape_error_mm(face_model, layout.split(joint[0].params)[1], truth))
        out["mean_shape"].append(shape_error_mm(face_model, np.zeros(K), truth))
    return {k: np.asarray(v) for k, v in out.items()}


def test_fit_reproduces_noise_free_landmarks(synthetic_fits):
    assert synthetic_fits["residual"].mean() < 0.5
    assert synthetic_fits["residual"].max() < 1.0
    assert synthetic_fits["joint_residual"].mean() < 0.5


def test_shape_recovery_and_shared_identity(synthetic_fits):
    single, joint, mean_shape = (synthetic_fits[k].mean() for k in ("single", "joint", "mean_shape"))
    assert single < 0.6 * mean_shape     # the fit recovers identity, beyond the average face
    assert joint < 0.7 * single          # 5 views of one person pin down what one view cannot
    assert synthetic_fits["single3d"].mean() < single  # depth targets (AFLW2000-3D style) help too


def test_fit_camera_recovers_an_exact_camera(face_model):
    points = face_model.landmarks3d(np.zeros(K)).astype(np.float64)
    camera = compose_camera(CameraPose(6.0, 0.4, -0.2, 0.1, 90.0, 110.0, 7.0))
    target = project(points, camera)
    np.testing.assert_allclose(fit_camera(points, target), camera, atol=1e-6)
    expected2d = camera.copy()
    expected2d[2, 3] = 0.0  # depth translation is unobservable from 2D targets
    np.testing.assert_allclose(fit_camera(points, target[:, :2]), expected2d, atol=1e-6)


def test_camera_to_crop_composes_the_crop():
    camera = compose_camera(CameraPose(5.0, 0.3, 0.1, -0.2, 80.0, 95.0, 3.0))
    points = np.random.default_rng(0).normal(0, 5, (10, 3))
    transform = crop_from_box((40, 50, 150, 170), 120)
    np.testing.assert_allclose(project(points, camera_to_crop(camera, transform)),
                               transform.to_crop(project(points, camera)), atol=1e-9)


def test_box_qp_matches_scipy_bounded_least_squares():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(40, 12)), rng.normal(size=40) * 3
    lower = np.r_[np.full(4, -np.inf), np.zeros(8)]
    upper = np.r_[np.full(4, np.inf), np.ones(8)]
    reference = lsq_linear(a, b, bounds=(lower, upper), method="bvls", tol=1e-12).x
    ours = box_qp(a.T @ a, a.T @ b, lower, upper, np.zeros(12))
    assert np.any(reference[4:] == 0.0) and np.any(reference[4:] == 1.0)  # both bounds active
    np.testing.assert_allclose(ours, reference, atol=1e-8)


def write_aflw_fixture(root, model, rng, count):
    """AFLW2000-3D files (pt3d_68 with z towards the viewer, as 3DDFA writes it) of known faces."""
    root.mkdir()
    layout = model.layout(K)
    for i in range(count):
        lm = model.image_landmarks(random_params(model, rng, rng.standard_normal(K)), layout).astype(np.float64)
        pt3d = np.stack([lm[:, 0], lm[:, 1], -lm[:, 2]])
        cv2.imwrite(str(root / f"image{i:05d}.jpg"), rng.integers(0, 255, (200, 200, 3), dtype=np.uint8))
        scipy.io.savemat(str(root / f"image{i:05d}.mat"), {"pt3d_68": pt3d, "Pose_Para": np.zeros((1, 7))})


def test_fit_to_dataset_round_trip(face_model, tmp_path):
    rng = np.random.default_rng(5)
    layout = face_model.layout(K)
    image = rng.integers(0, 255, (200, 200, 3), dtype=np.uint8)
    train = []
    for person in ("HELEN/a", "HELEN/b"):
        truth = rng.standard_normal(K)
        for k in range(3):
            lm = face_model.image_landmarks(random_params(face_model, rng, truth), layout)[:, :2].astype(np.float64)
            train.append(RealSample(tmp_path / f"{person}_{k}.jpg", person, image, lm, (1.0, 2.0, 3.0), "300W-LP"))
    train.append(RealSample(tmp_path / "lfw.jpg", "someone", image, None, None, "folder"))
    write_aflw_fixture(tmp_path / "aflw", face_model, rng, 2)
    test = AFLW2000Loader(tmp_path / "aflw")
    config = RealDatasetConfig(image_size=64, shard_size=4, fit=CONFIG)
    manifest = fit_to_dataset({"train": train, "test": test}, face_model, tmp_path / "ds", config)

    dataset = Dataset.open(tmp_path / "ds")
    assert dataset.layout == layout and dataset.image_size == 64
    split = dataset.split("train")
    assert len(split) == 6 and manifest["splits"]["train"] == {"shards": 2, "images": 6, "identities": 2}
    assert split.identity.tolist() == [0, 0, 0, 1, 1, 1]
    assert split.images(np.arange(6)).shape == (6, 64, 64, 3)
    projected = face_model.image_landmarks(split.params, layout)
    assert np.abs(projected[..., :2] - split.landmarks2d).mean() < 0.3  # crop pixels: 64 px crops
    np.testing.assert_allclose(projected, split.landmarks3d, atol=1e-3)  # 2D-only: fitted 3D landmarks
    np.testing.assert_allclose(split.pose_deg, np.tile([1.0, 2.0, 3.0], (6, 1)))
    box = split.face_box
    np.testing.assert_allclose(box[:, 0], split.landmarks2d[:, :, 0].min(axis=1), atol=1e-4)
    assert np.all(split.landmarks2d > 0) and np.all(split.landmarks2d < 64)

    test_split = dataset.split("test")
    assert test_split.identity.tolist() == [2, 3]
    test_projected = face_model.image_landmarks(test_split.params, layout)
    assert np.abs(test_projected - test_split.landmarks3d).mean() < 0.3  # z sign and scale consistent
    np.testing.assert_allclose(test_split.pose_deg, 0.0, atol=1e-9)

    residuals = [np.load(tmp_path / "ds" / "train" / f"fit_residuals-{i:05d}.npy") for i in range(2)]
    assert [len(r) for r in residuals] == [4, 2]
    summary = json.loads((tmp_path / "ds" / "manifest.json").read_text())["fitting"]["train"]
    assert summary["images"] == 6 and summary["mean_px"] == pytest.approx(np.concatenate(residuals).mean(), rel=1e-5)
    assert manifest["skipped"] == [{"path": str(tmp_path / "lfw.jpg"), "reason": "no landmarks to fit"}]
    assert manifest["identity_names"] == ["HELEN/a", "HELEN/b", "image00000", "image00001"]
    whitening = dataset.whitening
    np.testing.assert_allclose(whitening.mean, split.params.mean(axis=0), atol=1e-4)
