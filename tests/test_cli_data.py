"""`siamface data` as a user runs it: real processes, real files, one-line errors."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2

SIAMFACE = str(Path(sys.executable).parent / "siamface")


def run(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([SIAMFACE, *args], capture_output=True, text=True, env=env, timeout=300)


def test_synth_then_preview(tmp_path):
    out = tmp_path / "ds"
    r = run("data", "synth", "--out", str(out), "--workers", "1", "train_identities=3", "val_identities=1",
            "test_identities=1", "images_per_identity=2", "n_id=20")
    assert r.returncode == 0, r.stderr
    assert "train 6 images / 3 ids" in r.stdout
    r = run("data", "preview", str(out), "-n", "4")
    assert r.returncode == 0, r.stderr
    grid = cv2.imread(str(out / "preview.png"))
    assert grid.shape == (240, 240 * 6, 3)


def test_bad_face_model_is_one_line_and_nonzero(tmp_path):
    bad = tmp_path / "broken.npz"
    bad.write_bytes(b"garbage")
    r = run("data", "synth", "--out", str(tmp_path / "ds"), env_extra={"SIAMFACE_FACE_MODEL": str(bad)})
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "broken.npz" in lines[0] and "--face-model" in lines[0]
    assert "Traceback" not in r.stderr


def test_unknown_config_key_fails_before_work(tmp_path):
    r = run("data", "synth", "--out", str(tmp_path / "ds"), "train_idents=3")
    assert r.returncode != 0 and "unknown key(s) ['train_idents']" in r.stderr
    assert not (tmp_path / "ds").exists()
