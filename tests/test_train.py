"""Training end to end on a tiny synthetic set, on pairs and on P x K batches: the loss falls, samples
without 3D labels add no geometry gradient, the staged schedule holds identity back, runs resume, bad input
stops early."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from siamface.edge_runtime.errors import SiamfaceError
from siamface.training.checkpoint import load_checkpoint, load_head, save_checkpoint
from siamface.training.config_io import load_config
from siamface.training.data.dataset import Dataset, merge_splits
from siamface.training.data.traits import TRAIT_NAMES
from siamface.training.face_model import load_training_face_model
from siamface.training.model import (EncoderConfig, build_batch_model, build_encoder, build_siamese,
                                     embedding_branch_variables)
from siamface.training.pairs import PairSampler, PKSampler
from siamface.training.pipeline import Flip, PairBatches, PKBatches, mirrored_labels
from siamface.training.loop import make_train_step
from siamface.training.losses import CLASSIFIERS, IDENTITY_LOSSES, LossConfig, TrainingLosses
from siamface.training.qat import quantize_encoder
from siamface.training.train import TrainConfig, build_state, make_batches, train

TINY = EncoderConfig(width=0.35, last_channels=256, embedding_dim=32, dropout=0.0)


def _cfg(data, **kw) -> TrainConfig:
    base = dict(data=[str(data)], steps=12, batch_size=4, learning_rate=3e-3, warmup_steps=2, eval_every=6,
                eval_images=12, encoder=TINY, loss=LossConfig(n_sample_vertices=50, identity="arcface"))
    return TrainConfig(**{**base, **kw})


def test_a_few_steps_on_a_batch_lower_the_loss(tiny_data):
    ds = Dataset.open(tiny_data)
    split = ds.split("train")
    batches = PairBatches(split, ds.whitening, PairSampler(split.identity, split.pose_deg[:, 0], seed=5), 8)
    batch = next(iter(batches.dataset(augment_images=False)))
    cfg = _cfg(tiny_data, loss=LossConfig(n_sample_vertices=50, identity="arcface", traits=1.0))
    assert batch["traits_a"].shape == (8, len(TRAIT_NAMES)) and batches.n_traits == len(TRAIT_NAMES)
    tf.keras.utils.set_random_seed(0)
    encoder = build_encoder(EncoderConfig(**{**TINY.__dict__, "n_params": ds.layout.size, "input_size": 64}))
    siamese = build_siamese(encoder)
    losses = TrainingLosses(cfg.loss, load_training_face_model(), ds.layout, ds.whitening, batches.n_classes,
                            TINY.embedding_dim, batches.n_traits)
    trainables = (siamese.trainable_variables + losses.margin_head.trainable_variables
                  + losses.trait_head.trainable_variables)
    step = make_train_step(siamese, losses.pairs, tf_keras.optimizers.Adam(1e-3), trainables,
                           tf.distribute.get_strategy(), cfg)
    terms = [step(batch, tf.constant(1.0)) for _ in range(6)]
    first, last = terms[0], terms[-1]
    assert float(last["total"]) < 0.85 * float(first["total"])
    assert float(last["identity"]) < float(first["identity"])   # the trait term's own fall: test_trait_term_...
    assert set(first) == {"geometry_a", "geometry_b", "param_a", "param_b", "shape_a", "shape_b", "shape_contrastive",
                          "identity", "traits", "total"}
    with pytest.raises(SiamfaceError, match="loss.traits needs data with a traits column"):
        TrainingLosses(cfg.loss, load_training_face_model(), ds.layout, ds.whitening, batches.n_classes,
                       TINY.embedding_dim, 0)


@pytest.mark.parametrize("shapes_identity", [False, True])
def test_geometry_gradient_reaches_the_identity_code_only_when_asked(tiny_data, shapes_identity):
    """By default only the parameter, aligned-shape and contrastive losses train the identity code: the geometry loss
    would otherwise bend it to absorb pose and expression residuals (see docs/results.md, ablation)."""
    ds = Dataset.open(tiny_data)
    lay = ds.layout
    cfg = LossConfig(n_sample_vertices=50, param=0.0, shape=0.0, shape_contrastive=0.0, identity="none",
                     geometry_shapes_identity=shapes_identity)
    loss_fn = TrainingLosses(cfg, load_training_face_model(), lay, ds.whitening, 1, 8)
    z_true = tf.constant(ds.whitening.whiten(ds.split("train").params[:2]), tf.float32)
    z_pred = tf.Variable(z_true + 0.3)
    with tf.GradientTape() as tape:
        total = loss_fn.pairs({"params_a": z_true, "params_b": z_true}, {"params_a": z_pred, "params_b": z_pred},
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
    assert [w.shape for w in load_head(tmp_path / "run" / "best", "margin_head")] == [(32, 6)]  # class vectors, for QAT
    assert {"nme", "shape_error_mm", "verification_embedding", "verification_shape",
            "far_by_true_shape_embedding", "far_by_true_shape_shape"} <= set(report)
    history = [json.loads(line) for line in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history] == [6, 12]


def test_resume_continues_from_the_last_checkpoint(tiny_data, tmp_path):
    out = tmp_path / "run"

    def kept() -> list[int]:
        paths = tf.train.get_checkpoint_state(str(out / "ckpt")).all_model_checkpoint_paths
        return [int(p.rsplit("-", 1)[1]) for p in paths]

    train(_cfg(tiny_data, steps=6, checkpoint_every=4), out, progress=False)
    assert kept() == [4, 6]             # a resume checkpoint between validations, then the validated end
    saved = json.loads((out / "train_config.json").read_text())   # a run saved before the P x K keys existed
    for key in ("sampler", "pk_images", "pk_identities", "pose_preference"):
        del saved[key]
    del saved["loss"]["classifier"], saved["encoder"]["embedding_from_stage"]
    (out / "train_config.json").write_text(json.dumps(saved))
    train(_cfg(tiny_data, steps=12, checkpoint_every=5), out, progress=False)   # another interval: allowed
    history = [json.loads(line)["step"] for line in (out / "history.jsonl").read_text().splitlines()]
    assert history == [6, 12]           # the second call did steps 7-12 only
    assert kept() == [10, 12]
    ckpt = tf.train.load_checkpoint(str(tf.train.latest_checkpoint(out / "ckpt")))
    assert ckpt.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE") == 12
    # killed after the last checkpoint, before its validation: the rerun validates the last weights
    lines = (out / "history.jsonl").read_text().splitlines()
    (out / "history.jsonl").write_text(lines[0] + "\n")
    first = json.loads(lines[0])
    (out / "best.json").write_text(json.dumps({"value": 1e9, "step": 6, "report": first}))
    train(_cfg(tiny_data, steps=12), out, progress=False)
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history] == [6, 12]
    assert json.loads((out / "best.json").read_text())["step"] == 12   # beats the stale best
    with pytest.raises(SiamfaceError, match="different config"):
        train(_cfg(tiny_data, steps=12, learning_rate=1e-2), out, progress=False)


def test_bad_data_stops_before_training(tiny_data, identity_only_data, tmp_path):
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
    with pytest.raises(SiamfaceError, match="has 3D labels"):
        train(replace(_cfg(tiny_data), data=[str(identity_only_data)]), tmp_path / "run7", progress=False)
    with pytest.raises(SiamfaceError, match="loss.identity must be one of"):
        train(_cfg(tiny_data, loss=LossConfig(identity="magic")), tmp_path / "run3", progress=False)
    with pytest.raises(SiamfaceError, match="already a margin head"):
        train(_cfg(tiny_data, loss=LossConfig(identity="arcface", classifier="cosface")), tmp_path / "run4",
              progress=False)
    with pytest.raises(SiamfaceError, match="pk_images=3 does not divide the 8 images"):
        train(_cfg(tiny_data, sampler="pk", pk_images=3), tmp_path / "run5", progress=False)
    with pytest.raises(SiamfaceError, match=r"eval_images=1 picks 1 person\(s\).*raise eval_images to at least \d+"):
        train(_cfg(tiny_data, eval_images=1), tmp_path / "run8", progress=False)
    assert not (tmp_path / "run8" / "ckpt").exists()
    with pytest.raises(SiamfaceError, match="P = 8 identities"):
        train(_cfg(tiny_data, sampler="pk", pk_images=2, pk_identities=8), tmp_path / "run6", progress=False)


# --- P x K batches, masking, staged schedule ---------------------------------------------------

BRANCH = EncoderConfig(**{**TINY.__dict__, "embedding_from_stage": 4, "embedding_channels": 64})
PK_LOSS = LossConfig(n_sample_vertices=50, identity="supcon", classifier="cosface", classifier_weight=0.5)


def _pk_setup(data, loss_cfg: LossConfig = PK_LOSS, seed: int = 0):
    """A P x K batch (4 people x 2 photos) of the tiny set, the batch model with the branch, the losses."""
    ds = Dataset.open(data)
    split = ds.split("train")
    batches = PKBatches(split, ds.whitening, PKSampler(split.identity, split.pose_deg[:, 0], 4, 2, seed=seed))
    batch = next(iter(batches.dataset(augment_images=False)))
    tf.keras.utils.set_random_seed(seed)
    encoder = build_encoder(EncoderConfig(**{**BRANCH.__dict__, "n_params": ds.layout.size, "input_size": 64}))
    loss_fn = TrainingLosses(loss_cfg, load_training_face_model(), ds.layout, ds.whitening, batches.n_classes,
                             BRANCH.embedding_dim)
    return batch, encoder, build_batch_model(encoder, slices=2), loss_fn


def test_pk_steps_lower_the_loss(tiny_data):
    batch, _, model, loss_fn = _pk_setup(tiny_data)
    assert batch["image"].shape == (8, 64, 64, 3) and batch["params"].shape == (8, 85)
    classes = batch["class"].numpy()
    assert np.all(classes[:4] == classes[4:]) and len(set(classes)) == 4       # 4 people, then their 2nd photos
    trainables = model.trainable_variables + loss_fn.margin_head.trainable_variables
    step = make_train_step(model, loss_fn.batch, tf_keras.optimizers.Adam(1e-3), trainables,
                           tf.distribute.get_strategy(), _cfg(tiny_data, sampler="pk"))
    terms = [step(batch, tf.constant(1.0)) for _ in range(6)]
    first, last = terms[0], terms[-1]
    assert set(first) == {"geometry", "param", "shape", "shape_contrastive", "identity", "classifier", "total"}
    assert float(last["total"]) < 0.85 * float(first["total"])
    assert float(last["identity"]) < float(first["identity"])
    assert float(last["classifier"]) < float(first["classifier"])


def _pk_state(data, encoder_factory=None, **kw):
    """A P x K (K = 4) config on the tiny set with the tiny encoder, its batches and its training state."""
    ds = Dataset.open(data)
    model = load_training_face_model()
    cfg = _cfg(data, sampler="pk", pk_images=4, encoder=replace(TINY, n_params=ds.layout.size, input_size=64), **kw)
    batches = make_batches(cfg, ds.split("train"), ds.whitening, model, ds.layout)
    tf.keras.utils.set_random_seed(0)
    return cfg, batches, build_state(cfg, batches, model, ds.layout, ds.whitening, tf.distribute.get_strategy(),
                                     encoder_factory, None)


def test_single_pass_moves_batch_norm_statistics_as_far_as_the_slices(tiny_data):
    """pk_single_pass runs the P x K batch through the encoder once, with the momentum raised to
    0.99^K: after the same steps every moving variance has moved about as far from its start as K
    slice updates per step move it (one update at 0.99 would move it K times less)."""
    moved = {}
    for single in (False, True):
        cfg, batches, state = _pk_state(tiny_data, loss=LossConfig(geometry=0.0, shape=0.0, identity="supcon"),
                                        pk_single_pass=single)
        norms = [layer for layer in state.encoder.layers if isinstance(layer, tf_keras.layers.BatchNormalization)]
        assert {round(layer.momentum, 6) for layer in norms} == {round(0.99 ** 4 if single else 0.99, 6)}
        step = make_train_step(state.net, state.losses.batch, state.optimizer, state.trainables,
                               tf.distribute.get_strategy(), cfg)
        batch = next(iter(batches.dataset(augment_images=False)))
        for _ in range(3):
            step(batch, tf.constant(1.0))
        moved[single] = np.array([np.abs(layer.moving_variance.numpy() - 1.0).mean() for layer in norms])
    ratio = moved[True] / moved[False]
    assert 0.7 < np.median(ratio) < 1.3


def test_a_sliced_run_from_a_one_pass_checkpoint_gets_the_sliced_momentum(tiny_data, tmp_path):
    """A checkpoint keeps the momentum it trained with (0.99^4 after one pass per batch); QAT's sliced
    passes from it set every batch norm, quantize-wrapped ones included, back to 0.99 per update."""
    _, _, state = _pk_state(tiny_data, pk_single_pass=True)
    save_checkpoint(tmp_path / "ck", state.encoder, {"kind": "float"})
    saved = load_checkpoint(tmp_path / "ck")[0]
    saved_norms = [layer for layer in saved.layers if isinstance(layer, tf_keras.layers.BatchNormalization)]
    assert {round(layer.momentum, 6) for layer in saved_norms} == {round(0.99 ** 4, 6)}
    _, _, qat = _pk_state(tiny_data, lambda: quantize_encoder(saved), pk_single_pass=False)
    norms = [layer.layer for layer in qat.encoder.layers
             if isinstance(getattr(layer, "layer", None), tf_keras.layers.BatchNormalization)]
    assert len(norms) == len(saved_norms)
    assert {layer.momentum for layer in norms} == {0.99}


def test_sample_without_3d_labels_adds_no_geometry_gradient(tiny_data):
    """A photo with NaN labels (identity only) changes the encoder only through the identity losses:
    the gradient equals that of the identity losses over the whole batch plus the geometry losses
    over the other photos, and stays finite."""
    batch, encoder, model, loss_fn = _pk_setup(tiny_data)
    identity_only = TrainingLosses(replace(PK_LOSS, geometry=0.0, param=0.0, shape=0.0), load_training_face_model(),
                                   Dataset.open(tiny_data).layout, Dataset.open(tiny_data).whitening, 1, 1)
    identity_only.margin_head = loss_fn.margin_head                 # the same class vectors
    params = batch["params"].numpy()
    params[0] = np.nan
    masked = {**batch, "params": tf.constant(params)}
    on = tf.constant(1.0)
    weights = encoder.trainable_variables

    with tf.GradientTape(persistent=True) as tape:
        out = model({"image": batch["image"]}, training=True)
        got = loss_fn.batch(masked, out, on)
        expected = (identity_only.batch(batch, out, on)["total"]
                    + tf.add_n(list(loss_fn.image_terms(batch["params"][1:], out["params"][1:]).values())))
        unmasked = loss_fn.batch(batch, out, on)["total"]
    assert np.isfinite(float(got["total"]))
    assert float(got["total"]) == pytest.approx(float(expected), rel=1e-5)
    assert float(got["total"]) != pytest.approx(float(unmasked), rel=1e-3)  # the sample did carry geometry
    flat = [np.concatenate([g.numpy().ravel() for g in tape.gradient(t, weights)]) for t in (got["total"], expected)]
    assert np.isfinite(flat[0]).all()
    np.testing.assert_allclose(flat[0], flat[1], rtol=1e-3, atol=1e-5 * np.abs(flat[1]).max())  # float32 sums
    # and its prediction gets no geometry gradient at all
    g_params = tape.gradient({k: v for k, v in got.items() if k in ("geometry", "param", "shape")}, out["params"])
    assert np.all(g_params.numpy()[0] == 0) and np.abs(g_params.numpy()[1:]).max() > 0


def test_staged_schedule_holds_identity_back(tiny_data):
    """Before identity_start_step the identity and classifier terms are zero and the branch gets no gradient."""
    batch, encoder, model, loss_fn = _pk_setup(tiny_data)
    branch = embedding_branch_variables(encoder)
    assert len(branch) > 10
    for on, moves in ((0.0, False), (1.0, True)):
        with tf.GradientTape() as tape:
            terms = loss_fn.batch(batch, model({"image": batch["image"]}, training=True), tf.constant(on))
        grads = tape.gradient(terms["total"], branch + loss_fn.margin_head.trainable_variables)
        moved = max(float(tf.reduce_max(tf.abs(g))) for g in grads if g is not None)
        assert (moved > 0) == moves
        assert (float(terms["identity"]) > 0) == moves and (float(terms["classifier"]) > 0) == moves


def test_trait_term_confined_to_the_branch_leaves_the_shared_stages_alone(tiny_data, tmp_path):
    """loss.traits_branch_only: steps on the trait term alone lower it, moving the embedding branch
    and the trait head and not one weight of the stem or the shared stages; unconfined, they move too."""
    batch, encoder, model, _ = _pk_setup(tiny_data)
    ds = Dataset.open(tiny_data)
    traits_only = replace(PK_LOSS, geometry=0.0, param=0.0, shape=0.0, shape_contrastive=0.0, identity="none",
                          classifier="none", traits=1.0, traits_branch_only=True)
    losses = TrainingLosses(traits_only, load_training_face_model(), ds.layout, ds.whitening, 1, BRANCH.embedding_dim,
                            len(TRAIT_NAMES))
    branch = embedding_branch_variables(encoder)
    shared = [v for v in encoder.trainable_variables if all(v is not b for b in branch)]
    assert len(branch) > 10 and any(v.name.startswith("stem") for v in shared)
    assert not any(v.name.startswith(("emb", "embedding")) for v in shared)
    trainables = model.trainable_variables + losses.trait_head.trainable_variables
    for confined in (True, False):
        before = [v.numpy().copy() for v in encoder.trainable_variables]
        step = make_train_step(model, losses.batch, tf_keras.optimizers.Adam(1e-3), trainables,
                               tf.distribute.get_strategy(), _cfg(tiny_data, sampler="pk"),
                               {"traits": branch + losses.trait_head.trainable_variables} if confined else None)
        traits = [float(step(batch, tf.constant(1.0))["traits"]) for _ in range(5)]
        assert traits[-1] < traits[0]
        moved = {v.ref(): not np.array_equal(v.numpy(), b) for v, b in zip(encoder.trainable_variables, before)}
        assert all(moved[v.ref()] for v in branch if "kernel" in v.name)
        assert any(moved[v.ref()] for v in shared) != confined
    with pytest.raises(SiamfaceError, match="loss.traits_branch_only needs an embedding branch"):
        train(_cfg(tiny_data, loss=replace(traits_only, identity="arcface")), tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "ckpt").exists()


def test_flip_mirrors_each_photo_together_with_its_labels(tiny_data):
    """flip: a mirrored training photo carries the mirrored face's parameters (whitened), an unmirrored
    one its own; which photos are mirrored follows the augmentation seed; unaugmented batches are
    never mirrored; a flip outside [0, 1] is refused when the config is read."""
    ds = Dataset.open(tiny_data)
    split = ds.split("train")
    mirrored = mirrored_labels(split, load_training_face_model(), ds.layout)
    assert mirrored.shape == split.params.shape and np.isfinite(mirrored).all()
    assert np.abs(mirrored - split.params).max() > 1.0                  # the camera's x moves
    sampler = PKSampler(split.identity, split.pose_deg[:, 0], 4, 2, seed=0)
    plain = next(iter(PKBatches(split, ds.whitening, sampler).dataset(augment_images=False)))
    flipping = PKBatches(split, ds.whitening, sampler, Flip(0.5, mirrored))
    idx = sampler.epoch(0)[:8]
    np.testing.assert_array_equal(next(iter(flipping.dataset(augment_images=False)))["params"], plain["params"])
    batch = next(iter(flipping.dataset()))
    own = np.all(batch["params"].numpy() == plain["params"].numpy(), axis=1)
    seen_mirrored = np.all(batch["params"].numpy() == ds.whitening.whiten(mirrored[idx]).astype(np.float32), axis=1)
    assert np.all(own != seen_mirrored) and own.any() and seen_mirrored.any()
    image, reference = batch["image"].numpy(), plain["image"].numpy()
    for row in range(8):   # the jitter is photometric: the photo correlates best with its own orientation
        corr = [np.corrcoef(image[row].ravel(), r.ravel())[0, 1] for r in (reference[row], reference[row, :, ::-1])]
        assert (corr[1] > corr[0]) == seen_mirrored[row]
    np.testing.assert_array_equal(next(iter(flipping.dataset()))["params"], batch["params"])  # same seed, same choice
    with pytest.raises(SiamfaceError, match="flip"):
        load_config(TrainConfig, None, ["flip=1.5"])


@pytest.fixture(scope="module")
def identity_only_data(tiny_data, tmp_path_factory):
    """The tiny set's images relabelled as another dataset without 3D labels (NaN geometry columns,
    no traits, no whitening: what `siamface data import` writes)."""
    out = tmp_path_factory.mktemp("data") / "identity-only"
    columns = Dataset.open(tiny_data).split("train").columns
    width = columns["traits"].start
    for split in ("train", "val", "test"):
        (out / split).mkdir(parents=True)
        for shard in sorted((tiny_data / split).glob("*.images.npy")):
            (out / split / shard.name).symlink_to(shard)
            labels = np.load(shard.with_name(shard.name.replace(".images.", ".labels.")))
            for name in ("params", "landmarks2d", "landmarks3d", "pose_deg"):
                labels[:, columns[name]] = np.nan
            np.save(out / split / shard.name.replace(".images.", ".labels."), labels[:, :width])
    manifest = json.loads((tiny_data / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps({**manifest, "whitening": {}, "columns": manifest["columns"][:-1]}))
    return out


@pytest.fixture(scope="module")
def pk_run(tiny_data, identity_only_data, tmp_path_factory):
    """A P x K run with the branch, a CosFace head and mirrored photos on synthetic + identity-only data:
    (config, folder, report)."""
    cfg = replace(_cfg(tiny_data, sampler="pk", pk_images=2, encoder=BRANCH, loss=replace(PK_LOSS, traits=1.0),
                       steps=6, eval_every=6, flip=0.5),
                  data=[str(identity_only_data), str(tiny_data)])    # whitening and val from the second
    out = tmp_path_factory.mktemp("runs") / "pk"
    return cfg, out, train(cfg, out, progress=False)


def test_pk_training_with_a_branch_on_mixed_datasets(pk_run):
    """P x K training on synthetic + identity-only data: finite losses, the signature export needs;
    the people without traits read them as NaN (the trait loss skips them)."""
    cfg, out, report = pk_run
    merged = merge_splits([Dataset.open(d).split("train") for d in cfg.data])
    assert np.isnan(merged.traits[:24]).all() and np.isfinite(merged.traits[24:]).all()
    np.testing.assert_array_equal(merged.params[24:], Dataset.open(cfg.data[1]).split("train").params)
    logged = [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines()]
    assert [entry["traits"] > 0 for entry in logged if "total" in entry] == [True]   # step 6 logs its terms
    assert np.isfinite(report["nme"]["mean"])
    encoder, meta = load_checkpoint(out / "best")
    assert encoder.output_names == ["params", "embedding"] and encoder.output_shape == [(None, 85), (None, 32)]
    assert meta["config"]["sampler"] == "pk" and meta["training_data"]["identities"] == 12
    assert meta["config"]["encoder"]["embedding_from_stage"] == 4


@pytest.mark.parametrize("name", ["train-small", "train-long", "train-gpu"])
def test_shipped_configs_load_and_fit_their_batches(name):
    from pathlib import Path

    cfg = load_config(TrainConfig, Path(__file__).resolve().parents[1] / "configs" / f"{name}.yaml")
    assert cfg.sampler in ("pairs", "pk") and cfg.steps > 0
    assert cfg.loss.identity in IDENTITY_LOSSES and cfg.loss.classifier in CLASSIFIERS
    if cfg.sampler == "pk" and not cfg.pk_identities:
        assert (2 * cfg.batch_size) % cfg.pk_images == 0


def test_fine_tuning_starts_from_the_saved_class_vectors(pk_run, tmp_path):
    """QAT passes its float checkpoint as parent: the margin head starts from its trained class vectors
    (with a zero learning rate they come out unchanged; a fresh head would be the random initial one)."""
    cfg, out, _ = pk_run
    best = out / "best"
    saved = {name: load_head(best, name) for name in ("margin_head", "trait_head")}
    assert [w.shape for w in saved["margin_head"]] == [(32, 12)]
    assert [w.shape for w in saved["trait_head"]] == [(32, len(TRAIT_NAMES)), (len(TRAIT_NAMES),)]
    train(replace(cfg, learning_rate=0.0, steps=2, eval_every=2), tmp_path / "tuned", progress=False,
          encoder_factory=lambda: load_checkpoint(best)[0], parent={"checkpoint": str(best), "step": 6})
    for name, weights in saved.items():
        for tuned, before in zip(load_head(tmp_path / "tuned" / "best", name), weights):
            np.testing.assert_array_equal(tuned, before)


@pytest.fixture(scope="module")
def rewhitened_data(tiny_data, tmp_path_factory):
    """The tiny set under another parameter whitening (what other data of the same face model has)."""
    out = tmp_path_factory.mktemp("data") / "rewhitened"
    out.mkdir()
    for entry in tiny_data.iterdir():
        if entry.name != "manifest.json":
            (out / entry.name).symlink_to(entry)
    manifest = json.loads((tiny_data / "manifest.json").read_text())
    manifest["whitening"]["mean"] = [m + 0.5 for m in manifest["whitening"]["mean"]]
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def test_init_starts_from_a_checkpoint_in_its_units_and_records_it(pk_run, rewhitened_data, tmp_path):
    """``init``: the encoder's weights and the checkpoint's whitening, not the new data's (its parameter
    head speaks those units); with a zero learning rate the trainable weights come out unchanged."""
    cfg, out, _ = pk_run
    best = out / "best"
    parent, parent_meta = load_checkpoint(best)
    tuned_cfg = replace(cfg, data=[str(rewhitened_data)], init=str(best), learning_rate=0.0, steps=2, eval_every=2)
    train(tuned_cfg, tmp_path / "tuned", progress=False)
    tuned, meta = load_checkpoint(tmp_path / "tuned" / "best")
    for after, before in zip(tuned.trainable_weights, parent.trainable_weights):
        np.testing.assert_array_equal(after.numpy(), before.numpy())
    assert meta["whitening"] == parent_meta["whitening"]
    assert meta["whitening"]["mean"] != json.loads((rewhitened_data / "manifest.json").read_text())["whitening"]["mean"]
    assert meta["parent"]["checkpoint"] == str(best) and meta["parent"]["step"] == parent_meta["step"]
    assert meta["config"]["init"] == str(best) and "parent" not in meta["parent"]
    again = tmp_path / "tuned" / "best"   # a third cycle records the whole lineage, not only its parent
    train(replace(tuned_cfg, init=str(again)), tmp_path / "again", progress=False)
    lineage = load_checkpoint(tmp_path / "again" / "best")[1]["parent"]
    assert lineage["checkpoint"] == str(again) and lineage["parent"]["checkpoint"] == str(best)
    assert lineage["parent"]["config"]["init"] == "" and lineage["config"]["init"] == str(best)


def test_init_refuses_what_it_cannot_continue(pk_run, tmp_path):
    cfg, out, _ = pk_run
    with pytest.raises(SiamfaceError, match="another encoder.*embedding_from_stage 4 vs 0"):
        train(replace(cfg, init=str(out / "best"), encoder=TINY), tmp_path / "other", progress=False)
    with pytest.raises(SiamfaceError, match="not a siamface checkpoint"):
        train(replace(cfg, init=str(out)), tmp_path / "other", progress=False)
    assert not (tmp_path / "other").exists()   # refused before the run folder was made


def test_checkpoints_from_before_the_trait_head_still_give_their_class_vectors(tmp_path):
    """Older checkpoints kept the CosFace class vectors alone in margin_head.npy; QAT still starts from them."""
    vectors = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.save(tmp_path / "margin_head.npy", vectors)
    np.testing.assert_array_equal(load_head(tmp_path, "margin_head")[0], vectors)
    assert load_head(tmp_path, "trait_head") is None
