"""Landmark fitting on synthetic faces with known truth, and real samples into the dataset format."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import scipy.io
from scipy.optimize import lsq_linear

from siamface.edge_runtime.camera import CameraPose, compose_camera, project
from siamface.edge_runtime.crop import crop_from_box
from siamface.training.data.dataset import Dataset
from siamface.training.data.fit_dataset import RealDatasetConfig, fit_to_dataset
from siamface.training.data.fitting import FitConfig, box_qp, camera_to_crop, fit_camera, fit_identity, fit_landmarks
from siamface.evaluation.fit_check import FitCheckConfig, fit_check, random_photo
from siamface.training.data.real_formats import AFLW2000Loader, RealSample

K = 20
CONFIG = FitConfig(n_id=K)


@pytest.fixture(scope="module")
def synthetic_fits(face_model):
    """6 identities x 5 photos, fitted one by one (2D and 3D targets) and jointly per identity."""
    return fit_check(face_model, FitCheckConfig(identities=6, images_per_identity=5, seed=3, fit=CONFIG))


def test_fit_reproduces_noise_free_landmarks(synthetic_fits):
    assert synthetic_fits["residual_px"].mean() < 0.5
    assert synthetic_fits["residual_px"].max() < 1.0
    assert synthetic_fits["landmarks_px"].mean() < 0.5   # no noise: residual and truth error coincide


def test_shape_recovery_and_shared_identity(synthetic_fits):
    single, joint, mean_shape = (synthetic_fits[f"shape_mm_{k}"].mean() for k in ("single", "joint", "mean_face"))
    assert single < 0.6 * mean_shape     # the fit recovers identity, beyond the average face
    assert joint < 0.7 * single          # 5 views of one person pin down what one view cannot
    assert synthetic_fits["shape_mm_single_3d"].mean() < single  # depth targets (AFLW2000-3D style) help too


def test_noisy_landmarks_fit_closer_to_the_truth_than_to_the_noise(face_model):
    """1 px annotation noise: the prior keeps the fitted landmarks nearer the clean truth."""
    fits = fit_check(face_model, FitCheckConfig(identities=2, images_per_identity=3, noise_px=1.0, seed=4, fit=CONFIG))
    assert fits["landmarks_px"].mean() < fits["residual_px"].mean() < 1.25 * np.sqrt(np.pi / 2)


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
        lm = model.image_landmarks(random_photo(model, K, rng.standard_normal(K), rng), layout).astype(np.float64)
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
            lm = face_model.image_landmarks(random_photo(face_model, K, truth, rng), layout)[:, :2].astype(np.float64)
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


def test_fit_check_command_prints_every_error():
    import subprocess
    import sys
    from pathlib import Path

    r = subprocess.run([str(Path(sys.executable).parent / "siamface"), "data", "fit-check", "identities=2",
                        "images_per_identity=2", "fit.n_id=10"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rows = {line.split()[0]: float(line.split()[1]) for line in r.stdout.splitlines()[1:]}
    assert set(rows) == {"landmarks_px", "residual_px", "shape_mm_single", "shape_mm_single_3d", "shape_mm_joint",
                         "shape_mm_mean_face"}
    assert rows["landmarks_px"] < 1.0 and rows["shape_mm_mean_face"] > rows["shape_mm_joint"]
    bad = subprocess.run([str(Path(sys.executable).parent / "siamface"), "data", "fit-check", "identites=2"],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "identites" in bad.stderr
