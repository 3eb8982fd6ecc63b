"""Shared fixtures: the real face model (loaded once) and small helpers."""
from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from shared_builds import build_once, build_tiny_bundles, start_in_background

from siamface.edge_runtime.terminal import tensorflow_env

tensorflow_env()


@pytest.fixture(scope="session")
def face_model():
    from siamface.training.face_model import load_training_face_model

    return load_training_face_model()


def _shared_root(tmp_path_factory) -> Path:
    base = Path(tmp_path_factory.getbasetemp())
    # xdist workers have basetemp <session>/popen-gwN: share the session folder, nothing older.
    return (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "shared-artifacts"


def _shared(tmp_path_factory, name: str, build):
    """Build an artifact once per test session, shared by all xdist workers (file lock)."""
    return build_once(_shared_root(tmp_path_factory), name, build)


def pytest_collection_modifyitems(items):
    """Tests of the shared bundles last: while the background build runs, workers run the rest."""
    items.sort(key=lambda item: "tiny_bundles" in getattr(item, "fixturenames", ()))


@pytest.fixture(scope="session", autouse=True)
def _early_builds(request, tmp_path_factory):
    """Start `siamface demo --quick` in the background when the session begins, if a collected
    test needs it (tests/shared_builds.py); a stopped session stops it, else it is waited for."""
    if not any("tiny_bundles" in getattr(item, "fixturenames", ()) for item in request.session.items):
        yield
        return
    process = start_in_background(_shared_root(tmp_path_factory), "tiny-bundles")
    yield
    if process is not None:
        if request.session.shouldstop or request.session.shouldfail:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.fixture(scope="session")
def tiny_bundles(tmp_path_factory):
    """`siamface demo --quick` run once in a real process: a tiny dataset (64 px, 20 modes), float
    and QAT checkpoints, all five bundles, the comparison, reconstructions and a gallery.

    Returns the folder: data/, train/best, qat/best, bundles/<variant>/, compare/, ..., demo.log.
    """
    return _shared(tmp_path_factory, "tiny-bundles", build_tiny_bundles)


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
