"""Shared fixtures: the real face model (loaded once) and small helpers."""
from __future__ import annotations

import os

import pytest

from siamface.edge_runtime.terminal import tensorflow_env

tensorflow_env()


@pytest.fixture(scope="session")
def face_model():
    from siamface.training.face_model import load_training_face_model

    return load_training_face_model()


def _shared(tmp_path_factory, name: str, build):
    """Build an artifact once per test session, shared by all xdist workers (file lock)."""
    import fcntl
    from pathlib import Path

    base = Path(tmp_path_factory.getbasetemp())
    # xdist workers have basetemp <session>/popen-gwN: share the session folder, nothing older.
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "shared-artifacts"
    root.mkdir(parents=True, exist_ok=True)
    target = root / name
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / ".done").exists():
            build(target)
            (target / ".done").touch()
    return target


@pytest.fixture(scope="session")
def tiny_bundles(tmp_path_factory):
    """`siamface demo --quick` run once in a real process: a tiny dataset (64 px, 20 modes), float
    and QAT checkpoints, all five bundles, the comparison, reconstructions and a gallery.

    Returns the folder: data/, train/best, qat/best, bundles/<variant>/, compare/, ..., demo.log.
    """

    def build(root):
        import subprocess
        import sys
        from pathlib import Path

        siamface = str(Path(sys.executable).parent / "siamface")
        r = subprocess.run([siamface, "demo", "--quick", "--out", str(root)], capture_output=True, text=True,
                           timeout=900)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        (root / "demo.log").write_text(r.stdout)

    return _shared(tmp_path_factory, "tiny-bundles", build)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """A tiny synthetic training set (6 train and 3 val people x 4 photos, 64 px, 20 identity modes),
    made once per session for the training and cluster tests."""

    def build(root):
        from siamface.training.data.synth import SynthConfig, synthesize

        cfg = SynthConfig(train_identities=6, val_identities=3, test_identities=0, images_per_identity=4,
                          image_size=64, n_id=20, shard_size=12)
        synthesize(root, cfg, workers=1, progress=False)

    return _shared(tmp_path_factory, "tiny-train-data", build)
