"""Siamese training end to end on a tiny synthetic set: the loss falls, runs resume, bad input stops early."""
from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from edge_runtime.errors import SiamfaceError
from edge_runtime.morphable_model import load_face_model
from training.checkpoint import load_checkpoint
from training.data.synth import SynthConfig, synthesize
from training.model import EncoderConfig, build_encoder, build_siamese
from training.pairs import PairSampler
from training.pipeline import PairBatches
from training.train import LossConfig, SiameseLosses, TrainConfig, make_train_step, train

TINY = EncoderConfig(width=0.35, last_channels=256, embedding_dim=32, dropout=0.0)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "tiny"
    cfg = SynthConfig(train_identities=6, val_identities=3, test_identities=0, images_per_identity=4,
                      image_size=64, n_id=20, shard_size=12)
    synthesize(out, cfg, workers=1, progress=False)
    return out


def _cfg(data, **kw) -> TrainConfig:
    base = dict(data=[str(data)], steps=12, batch_size=4, learning_rate=3e-3, warmup_steps=2, eval_every=6,
                eval_images=12, encoder=TINY, loss=LossConfig(n_sample_vertices=50, identity="arcface"))
    return TrainConfig(**{**base, **kw})


def test_a_few_steps_on_a_batch_lower_the_loss(tiny_data):
    from training.data.dataset import Dataset

    ds = Dataset.open(tiny_data)
    split = ds.split("train")
    batches = PairBatches(split, ds.whitening, PairSampler(split.identity, split.pose_deg[:, 0], seed=5), 8)
    batch = next(iter(batches.dataset(augment_images=False)))
    cfg = _cfg(tiny_data)
    tf.keras.utils.set_random_seed(0)
    encoder = build_encoder(EncoderConfig(**{**TINY.__dict__, "n_params": ds.layout.size, "input_size": 64}))
    siamese = build_siamese(encoder)
    losses = SiameseLosses(cfg.loss, load_face_model(), ds.layout, ds.whitening, batches.n_classes,
                           TINY.embedding_dim)
    trainables = siamese.trainable_variables + losses.arc_head.trainable_variables
    step = make_train_step(siamese, losses, tf_keras.optimizers.Adam(1e-3), trainables, tf.distribute.get_strategy(), cfg)
    terms = [step(batch, tf.constant(1.0)) for _ in range(6)]
    first, last = terms[0], terms[-1]
    assert float(last["total"]) < 0.85 * float(first["total"])
    assert float(last["identity"]) < float(first["identity"])
    assert set(first) == {"geometry_a", "geometry_b", "param_a", "param_b", "shape_a", "shape_b", "shape_contrastive",
                          "identity", "total"}


@pytest.mark.parametrize("shapes_identity", [False, True])
def test_geometry_gradient_reaches_the_identity_code_only_when_asked(tiny_data, shapes_identity):
    """By default only the parameter, aligned-shape and contrastive losses train the identity code: the geometry loss
    would otherwise bend it to absorb pose and expression residuals (see README, ablation)."""
    from training.data.dataset import Dataset

    ds = Dataset.open(tiny_data)
    lay = ds.layout
    cfg = LossConfig(n_sample_vertices=50, param=0.0, shape=0.0, shape_contrastive=0.0, identity="none",
                     geometry_shapes_identity=shapes_identity)
    loss_fn = SiameseLosses(cfg, load_face_model(), lay, ds.whitening, 1, 8)
    z_true = tf.constant(ds.whitening.whiten(ds.split("train").params[:2]), tf.float32)
    z_pred = tf.Variable(z_true + 0.3)
    with tf.GradientTape() as tape:
        total = loss_fn({"params_a": z_true, "params_b": z_true}, {"params_a": z_pred, "params_b": z_pred},
                        tf.constant(1.0))["total"]
    grad = tape.gradient(total, z_pred).numpy()
    assert np.abs(grad[:, lay.pose]).max() > 0 and np.abs(grad[:, lay.expression]).max() > 0
    assert (np.abs(grad[:, lay.identity]).max() > 0) == shapes_identity


def test_training_writes_checkpoint_history_and_report(tiny_data, tmp_path):
    report = train(_cfg(tiny_data), tmp_path / "run", progress=False)
    encoder, meta = load_checkpoint(tmp_path / "run" / "best")
    assert encoder.output_shape == [(None, 12 + 20 + 53), (None, 32)]
    assert meta["kind"] == "float" and meta["param_layout"]["n_id"] == 20
    assert meta["config"]["loss"]["identity"] == "arcface" and "tensorflow" in meta["versions"]
    assert meta["training_data"]["identities"] == 6 and len(meta["whitening"]["mean"]) == 85
    assert {"nme", "shape_error_mm", "verification_embedding", "verification_shape"} <= set(report)
    history = [json.loads(line) for line in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history] == [6, 12]


def test_resume_continues_from_the_last_checkpoint(tiny_data, tmp_path):
    out = tmp_path / "run"
    train(_cfg(tiny_data, steps=6), out, progress=False)
    train(_cfg(tiny_data, steps=12), out, progress=False)
    history = [json.loads(line)["step"] for line in (out / "history.jsonl").read_text().splitlines()]
    assert history == [6, 12]           # the second call did steps 7-12 only
    ckpt = tf.train.load_checkpoint(str(tf.train.latest_checkpoint(out / "ckpt")))
    assert ckpt.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE") == 12
    with pytest.raises(SiamfaceError, match="different config"):
        train(_cfg(tiny_data, steps=12, learning_rate=1e-2), out, progress=False)


def test_bad_data_stops_before_training(tiny_data, tmp_path):
    with pytest.raises(SiamfaceError, match="no dataset at"):
        train(_cfg(tmp_path / "missing"), tmp_path / "run", progress=False)
    manifest = json.loads((tiny_data / "manifest.json").read_text())
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    for split in ("train", "val", "test"):
        (foreign / split).symlink_to(tiny_data / split)
    manifest["face_model"]["sha256"] = "0" * 64
    (foreign / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SiamfaceError, match="made with face model"):
        train(_cfg(foreign), tmp_path / "run2", progress=False)
    assert not (tmp_path / "run2" / "ckpt").exists()
    with pytest.raises(SiamfaceError, match="loss.identity must be"):
        train(_cfg(tiny_data, loss=LossConfig(identity="triplet")), tmp_path / "run3", progress=False)
