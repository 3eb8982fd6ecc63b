"""Real formats end to end: `data fit` on 300W-LP/AFLW2000-3D fixtures in their exact .mat
layouts, training on a mix of synthetic and fitted data, AFLW2000-3D evaluation of a bundle."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import scipy.io

from siamface.training.data.dataset import Dataset

SIAMFACE = str(Path(sys.executable).parent / "siamface")
K = 20


def _faces(model, rng, n):
    """Landmarks (n, 68, 3) of random faces posed inside a 200x200 photo."""
    from siamface.edge_runtime.camera import CameraPose, compose_camera

    layout = model.layout(K)
    out = []
    for _ in range(n):
        cam = compose_camera(CameraPose(5.0, rng.uniform(-0.8, 0.8), rng.uniform(-0.3, 0.3), rng.uniform(-0.2, 0.2), 100, 100))
        params = layout.join(cam, rng.standard_normal(K), np.zeros(53))
        out.append(model.image_landmarks(params, layout).astype(np.float64))
    return out


def write_300wlp(root: Path, model, rng) -> None:
    """Two subsets, three source photos with pose copies, one flipped subset: exact .mat keys."""
    for subset, source in (("AFW", "AFW_1_1"), ("HELEN", "HELEN_2_1"), ("HELEN_Flip", "HELEN_2_1"), ("LFPW", "LFPW_3_1")):
        (root / subset).mkdir(parents=True)
        for k, lm in enumerate(_faces(model, rng, 3)):
            name = f"{source}_{k}"
            cv2.imwrite(str(root / subset / f"{name}.jpg"), rng.integers(0, 255, (200, 200, 3), dtype=np.uint8))
            scipy.io.savemat(str(root / subset / f"{name}.mat"), {
                "Pose_Para": np.zeros((1, 7)), "Shape_Para": np.zeros((199, 1)), "Exp_Para": np.zeros((29, 1)),
                "Tex_Para": np.zeros((199, 1)), "Illum_Para": np.zeros((1, 10)), "Color_Para": np.zeros((1, 7)),
                "pt2d": lm[:, :2].T, "roi": np.array([[20.0, 20.0, 180.0, 180.0]])})


def write_aflw(root: Path, model, rng, n: int = 6) -> None:
    root.mkdir(parents=True)
    for i, lm in enumerate(_faces(model, rng, n)):
        cv2.imwrite(str(root / f"image{i:05d}.jpg"), rng.integers(0, 255, (200, 200, 3), dtype=np.uint8))
        pose = np.array([[0.1, 0.5 * (i - n / 2), 0.0, 0, 0, 0, 1]])
        scipy.io.savemat(str(root / f"image{i:05d}.mat"), {"pt3d_68": np.stack([lm[:, 0], lm[:, 1], -lm[:, 2]]),
                                                           "Pose_Para": pose, "pt2d": lm[:21, :2].T})


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([SIAMFACE, *args], capture_output=True, text=True, timeout=600)


def test_fit_300wlp_and_train_on_a_mix(face_model, tiny_bundles, tmp_path):
    write_300wlp(tmp_path / "300W_LP", face_model, np.random.default_rng(0))
    r = run("data", "fit", str(tmp_path / "300W_LP"), "--format", "300w-lp", "--out", str(tmp_path / "fitted"),
            "--val-fraction", "0.3", f"fit.n_id={K}", "image_size=64")
    assert r.returncode == 0, r.stderr
    fitted = Dataset.open(tmp_path / "fitted")
    train, val = fitted.split("train"), fitted.split("val")
    assert len(train) + len(val) == 12 and len(train) and len(val)
    assert not set(train.identity) & set(val.identity)                 # identity-disjoint
    assert fitted.manifest["fitting"]["train"]["mean_px"] < 1.0        # noise-free landmarks fit closely

    from siamface.training.model import EncoderConfig
    from siamface.training.train import LossConfig, TrainConfig, train as run_training

    cfg = TrainConfig(data=[str(tiny_bundles / "data"), str(tmp_path / "fitted")], steps=2, batch_size=4,
                      warmup_steps=1, eval_every=2, eval_images=8,
                      encoder=EncoderConfig(width=0.35, last_channels=128, embedding_dim=16),
                      loss=LossConfig(n_sample_vertices=20))
    run_training(cfg, tmp_path / "mixed", progress=False)
    meta = json.loads((tmp_path / "mixed" / "best" / "checkpoint.json").read_text())
    assert meta["training_data"]["images"] == 32 + len(train)          # synthetic + fitted train splits
    assert meta["training_data"]["identities"] == 8 + len(set(train.identity))


def test_aflw2000_evaluation_of_a_bundle(face_model, tiny_bundles, tmp_path):
    write_aflw(tmp_path / "AFLW2000", face_model, np.random.default_rng(1))
    out = tmp_path / "eval"
    r = run("evaluate", "--model", str(tiny_bundles / "bundles" / "int8-ptq"), "--data", str(tmp_path / "AFLW2000"),
            "--out", str(out))
    assert r.returncode == 0, r.stderr
    report = json.loads((out / "report.json").read_text())["int8-ptq"]
    assert report["n_images"] == 6 and report["data"].startswith("AFLW2000-3D")
    assert sum(report["nme"][f"n_{b}"] for b in ("0-30", "30-60", "60-90")) == 6
    assert "verification_embedding" not in report                      # no identities in AFLW2000-3D
    assert (out / "ced.png").is_file() and (out / "report.md").read_text().count("| int8-ptq |") == 3  # main, groups, intervals
