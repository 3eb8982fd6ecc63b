"""Shared fixtures: the real face model (loaded once) and small helpers."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def face_model():
    from edge_runtime.morphable_model import load_face_model

    return load_face_model()


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
    """A tiny trained float and QAT checkpoint and all five exported bundles (64 px, 20 modes).

    Returns the folder: data/, float/best, qat/best, bundles/<variant>/.
    """

    def build(root):
        from training.data.synth import SynthConfig, synthesize
        from training.model import EncoderConfig
        from training.qat import QATConfig, run_qat
        from training.train import LossConfig, TrainConfig, train
        from export.exporter import ExportConfig, FLOAT_VARIANTS, export_checkpoint

        synthesize(root / "data", SynthConfig(train_identities=8, val_identities=3, test_identities=4,
                                              images_per_identity=4, image_size=64, n_id=20, shard_size=16),
                   workers=1, progress=False)
        cfg = TrainConfig(data=[str(root / "data")], steps=8, batch_size=4, warmup_steps=2, eval_every=8,
                          eval_images=12, encoder=EncoderConfig(width=0.35, last_channels=256, embedding_dim=32),
                          loss=LossConfig(n_sample_vertices=50))
        train(cfg, root / "float", progress=False)
        run_qat(root / "float" / "best", root / "qat", QATConfig(steps=4, eval_every=4), progress=False)
        ecfg = ExportConfig(representative_images=16, parity_images=8, calibration_images=16)
        export_checkpoint(root / "float" / "best", list(FLOAT_VARIANTS), root / "bundles", ecfg, progress=False)
        export_checkpoint(root / "qat" / "best", ["int8-qat"], root / "bundles", ecfg, progress=False)

    return _shared(tmp_path_factory, "tiny-bundles", build)
