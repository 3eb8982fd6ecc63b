"""The product works out of the box: device commands find a bundle without --model ($SIAMFACE_BUNDLE,
then the shipped models/default), and the bundle's decoder is slim (face vertices, float16) yet
decodes like the training face model; bundles exported before the slim decoder still load."""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from siamface.edge_runtime.bundle import DECODER, DIGEST, META, load_bundle, metadata_digest
from siamface.edge_runtime.defaults import BUNDLE_ENV, resolve_bundle
from siamface.edge_runtime.errors import SiamfaceError
from siamface.edge_runtime.morphable_model import file_sha256, load_face_model
from siamface.edge_runtime.params import Whitening

SIZE, N_ID, DIM = 16, 20, 8
REPO = Path(__file__).resolve().parents[1]


def tiny_encoder(face_model):
    """(layout, Keras encoder): a seeded 16-px encoder with 20 identity modes and an 8-d embedding, the
    smallest model export converts for real."""
    import tf_keras as keras

    layout = face_model.layout(N_ID)
    keras.utils.set_random_seed(0)
    pixels = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, activation="relu")(pixels))
    return layout, keras.Model(pixels, [keras.layers.Dense(layout.size)(x), keras.layers.Dense(DIM)(x)])


@pytest.fixture(scope="module")
def bundle(face_model, tmp_path_factory) -> Path:
    """A real fp32 bundle from export.bundle: tiny_encoder converted and written."""
    pytest.importorskip("tensorflow")
    from siamface.export.bundle import write_bundle
    from siamface.export.tflite import convert

    layout, encoder = tiny_encoder(face_model)
    meta = {"variant": "fp32", "input": {"name": "pixels", "size": SIZE, "dtype": "float32"},
            "param_layout": layout.to_dict(), "embedding": {"dim": DIM, "similarity": "cosine"},
            "whitening": Whitening(np.zeros(layout.size), np.ones(layout.size)).to_dict(),
            "verification": {"source": "synthetic", "threshold": 0.5, "far": 0.01, "far_target": 0.01}}
    out = tmp_path_factory.mktemp("default") / "bundle"
    return write_bundle(out, convert(encoder, "fp32"), meta, face_model, layout)


def test_decoder_keeps_only_what_the_device_uses(bundle, face_model):
    decoder = load_bundle(bundle).face_model
    n = int(face_model.region_mask("face").sum())
    assert decoder.n_vertices == n == 9409 and decoder.n_id_total == N_ID
    assert decoder.mean.dtype == decoder.id_basis.dtype == np.float32  # float16 on disk, float32 in memory
    with np.load(bundle / DECODER) as raw:
        assert raw["id_basis"].dtype == raw["exp_basis"].dtype == raw["mean"].dtype == np.float16
    assert decoder.triangles.max() < n and len(decoder.triangles) == int((face_model.triangles < n).all(1).sum())
    np.testing.assert_array_equal(decoder.landmarks68, face_model.landmarks68)
    np.testing.assert_array_equal(decoder.face_vertices, face_model.face_vertices)
    assert load_bundle(bundle).meta["face_model"]["decoder"]["n_vertices"] == n
    # 20 identity modes: 3.66 MB with every vertex, 1.57 MB slim (face vertices, bases on the 2^-10 cm grid),
    # less with LZMA members (export.bundle.npz_bytes)
    assert (bundle / DECODER).stat().st_size < 1.3e6


def test_slim_decoder_decodes_like_the_training_face_model(bundle, face_model):
    decoder = load_bundle(bundle).face_model
    rng = np.random.default_rng(0)
    ids, exps = rng.normal(0, 1, (50, N_ID)), rng.uniform(0, 1, (50, 53)) * (rng.uniform(size=(50, 53)) < 0.2)
    full = face_model.shape(ids, exps)[:, : decoder.n_vertices]
    err_mm = np.linalg.norm(decoder.shape(ids, exps) - full, axis=-1) * 10
    assert err_mm.max() < 0.2 and np.sqrt((err_mm ** 2).mean()) < 0.05, (err_mm.max(), err_mm.mean())
    lm_mm = np.linalg.norm(decoder.landmarks3d(ids, exps) - face_model.landmarks3d(ids, exps), axis=-1) * 10
    assert lm_mm.max() < 0.2


def test_bundle_exported_before_the_slim_decoder_still_loads(bundle, face_model, tmp_path):
    """The earlier decoder: every vertex, float32 mean, float16 bases; resealed as export wrote it."""
    old = shutil.copytree(bundle, tmp_path / "old")
    buf = io.BytesIO()
    np.savez_compressed(buf, mean=face_model.mean, id_basis=face_model.id_basis[:N_ID].astype(np.float16),
                        exp_basis=face_model.exp_basis.astype(np.float16), exp_names=np.array(face_model.exp_names),
                        triangles=face_model.triangles, vertex_region=face_model.vertex_region,
                        region_names=np.array(face_model.region_names), landmarks68=face_model.landmarks68,
                        **face_model.extras)
    (old / DECODER).write_bytes(buf.getvalue())
    meta = json.loads((old / META).read_text())
    meta["face_model"]["decoder"] = {"file": DECODER, "sha256": file_sha256(old / DECODER)}
    meta[DIGEST] = metadata_digest(meta)
    (old / META).write_text(json.dumps(meta))
    decoder = load_bundle(old).face_model
    assert decoder.n_vertices == face_model.n_vertices and decoder.n_id_total == N_ID


def test_resolution_order(bundle, tmp_path, monkeypatch):
    shipped = tmp_path / "models" / "default"
    monkeypatch.delenv(BUNDLE_ENV, raising=False)
    with pytest.raises(SiamfaceError, match=r"no bundle given and none shipped in .*models/default: pass --model") as info:
        resolve_bundle(None, shipped=shipped)
    assert "\n" not in str(info.value)
    shutil.copytree(bundle, shipped)  # a fake clone layout: models/default holds a bundle
    assert resolve_bundle(None, shipped=shipped) == shipped
    assert load_bundle(resolve_bundle(None, shipped=shipped)).variant == "fp32"
    monkeypatch.setenv(BUNDLE_ENV, str(tmp_path / "from-env"))
    assert resolve_bundle(None, shipped=shipped) == tmp_path / "from-env"
    assert resolve_bundle(tmp_path / "explicit", shipped=shipped) == tmp_path / "explicit"


def test_python_api_without_a_path_uses_the_environment_bundle(bundle, tmp_path, monkeypatch):
    """Reconstructor.from_bundle() resolves like the device commands: $SIAMFACE_BUNDLE, then an
    explicit path wins over it."""
    from siamface.edge_runtime.reconstructor import Reconstructor

    monkeypatch.setenv(BUNDLE_ENV, str(bundle))
    rec = Reconstructor.from_bundle()
    assert rec.bundle.root == bundle and rec.size == SIZE and rec.layout.n_id == N_ID
    (face,) = rec.reconstruct(np.full((40, 40, 3), 128, np.uint8), boxes=[(8.0, 8.0, 32.0, 32.0)])
    assert face.embedding.shape == (DIM,) and np.linalg.norm(face.embedding) == pytest.approx(1.0, abs=1e-5)
    monkeypatch.setenv(BUNDLE_ENV, str(tmp_path / "missing"))
    with pytest.raises(SiamfaceError, match="missing"):
        Reconstructor.from_bundle()
    assert Reconstructor.from_bundle(bundle).bundle.root == bundle


def test_device_command_without_model_uses_the_environment_bundle(bundle):
    env = {**os.environ, BUNDLE_ENV: str(bundle)}
    r = subprocess.run([sys.executable, "-m", "edge_runtime", "check"], cwd=REPO, capture_output=True, text=True,
                       env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"bundle {bundle}: variant fp32, hashes ok") and "inference ok" in r.stdout
