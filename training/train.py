"""Training: geometry + shape-contrastive + identity losses, on Siamese pairs (the paper's
baseline, ``sampler: pairs``) or on batches of P identities x K photos (``sampler: pk``).

Reads top to bottom: config, data, model, losses, the step, the loop (checkpoints, resume,
validation on held-out identities, best-model selection, TensorBoard, progress).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import tensorflow as tf
import tf_keras as keras
from tqdm import tqdm

from edge_runtime.atomic import atomic_write_json
from edge_runtime.errors import SiamfaceError
from edge_runtime.morphable_model import MorphableModel, load_face_model
from edge_runtime.params import ParamLayout, Whitening
from edge_runtime.provenance import package_versions, utc_now
from edge_runtime.scoring import GroundTruth, score
from training import losses
from training.checkpoint import load_margin_head, save_checkpoint
from training.config_io import build_config, config_to_dict
from training.data.dataset import Dataset, SplitData, merge_splits
from training.model import EncoderConfig, build_batch_model, build_encoder, build_siamese
from training.morphable_tf import TFMorphableModel, landmark_and_sample_indices
from training.pairs import PairSampler, PKSampler
from training.pipeline import PairBatches, PKBatches, image_batches

VERSIONS = ("tensorflow", "tf-keras", "tensorflow-model-optimization", "numpy")


@dataclass
class LossConfig:
    """Loss weights (0 switches a loss off, for ablations) and their margins."""

    geometry: float = 0.5             # mean distance (crop pixels) of 68 landmarks + sampled vertices
    n_sample_vertices: int = 200
    geometry_shapes_identity: bool = False  # True lets geometry gradients move the identity code too
    param: float = 2.0                # L2 on whitened parameters: keeps the shape code near its posterior mean
    shape: float = 3.0                # mm between neutral identity shapes, similarity part removed
    wpdc: float = 0.0                 # weighted parameter distance (3DDFA-style)
    shape_contrastive: float = 0.05   # contrastive on identity coefficients (the pair; pk: every pair)
    shape_margin: float = 4.0
    # On the embedding: "contrastive" (the paper's; pk: over every pair of the batch), "triplet"
    # (batch-hard), "supcon" (supervised contrastive), "arcface" / "cosface" (margin head over
    # the training identities) or "none". Batch losses on pairs see the 2B images of the batch.
    identity: str = "contrastive"
    identity_weight: float = 0.5
    identity_q: float = 10.0          # contrastive: Q, the bound of the embedding distance
    identity_distance: str = "l1"     # contrastive: "l1" (authors' code) or "cosine"
    triplet_margin: float = 0.2       # on cosine distance
    supcon_temperature: float = 0.1
    classifier: str = "none"          # a margin head next to the identity loss: "arcface", "cosface" or "none"
    classifier_weight: float = 0.1
    arcface_scale: float = 30.0
    arcface_margin: float = 0.5       # additive angular margin (radians)
    cosface_scale: float = 30.0
    cosface_margin: float = 0.35      # additive cosine margin
    identity_start_step: int = 0      # staged schedule: identity and classifier losses join at this step


@dataclass
class TrainConfig:
    """Everything a training run depends on (saved with every checkpoint)."""

    data: list[str] = field(default_factory=lambda: ["runs/data"])
    val_data: str = ""                # default: the val split of the first dataset
    steps: int = 3000
    batch_size: int = 32              # pairs per step: 2 x batch_size images (pk: P x K of them)
    sampler: str = "pairs"            # "pairs" (the paper's Siamese pairs) or "pk" (P identities x K photos)
    pk_images: int = 4                # K
    pk_identities: int = 0            # P; 0: 2 * batch_size / K, the pair sampler's images per step
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    p_same: float = 0.4
    pose_preference: float = 1.0      # samplers: weight (|yaw gap| + 10)^this when picking a person's photos
    seed: int = 0
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    eval_every: int = 500
    eval_images: int = 1000
    select_on: str = "nme"            # "nme", "shape_error_mm" or "eer_embedding" (lower is better)
    mixed_precision: bool = False     # GPU only
    xla: bool = False
    face_model: str = ""


def open_training_data(cfg: TrainConfig, model: MorphableModel) -> tuple[SplitData, SplitData, Dataset]:
    """Train split(s) merged, validation split, and the first dataset with 3D labels (for layout,
    whitening and validation; identity-only datasets, e.g. imported photos, have none)."""
    datasets = [Dataset.open(p) for p in cfg.data]
    first = next((ds for ds in datasets if ds.manifest.get("whitening")), None)
    if first is None:
        raise SiamfaceError(f"none of {cfg.data} has 3D labels (all identity-only): add a synthetic or fitted "
                            f"dataset, whose labels give the parameter whitening and the validation scores")
    for ds in datasets:
        if ds.face_model["sha256"] != model.sha256:
            raise SiamfaceError(f"dataset {ds.root} was made with face model {ds.face_model['name']} "
                                f"({ds.face_model['sha256'][:12]}), training uses {model.name} ({model.sha256[:12]}): "
                                f"regenerate the data or pass the matching --face-model")
        if ds.layout != first.layout or ds.image_size != first.image_size:
            raise SiamfaceError(f"dataset {ds.root} has layout {ds.layout} / size {ds.image_size}, "
                                f"{first.root} has {first.layout} / {first.image_size}: mix only matching datasets")
    train = merge_splits([ds.split("train") for ds in datasets])
    if len(train) == 0:
        raise SiamfaceError(f"no training images in {cfg.data}: synthesize or fit a dataset first")
    val = Dataset.open(cfg.val_data).split("val") if cfg.val_data else first.split("val")
    if len(val) == 0:
        raise SiamfaceError(f"no validation images in {cfg.val_data or first.root}: make val_identities > 0")
    return train, val, first


def learning_rate(cfg: TrainConfig) -> keras.optimizers.schedules.LearningRateSchedule:
    decay = keras.optimizers.schedules.CosineDecay(cfg.learning_rate, max(1, cfg.steps - cfg.warmup_steps), alpha=0.02)
    return _Warmup(cfg.learning_rate, cfg.warmup_steps, decay)


class _Warmup(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up, then the wrapped schedule."""

    def __init__(self, peak: float, steps: int, after):
        self.peak, self.steps, self.after = peak, steps, after

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warm = self.peak * (step + 1.0) / max(1, self.steps)
        return tf.where(step < self.steps, warm, self.after(step - self.steps))

    def get_config(self):
        return {"peak": self.peak, "steps": self.steps}


IDENTITY_LOSSES = ("none", "contrastive", "triplet", "supcon", "arcface", "cosface")
CLASSIFIERS = ("none", "arcface", "cosface")


class TrainingLosses:
    """The configured losses on a batch and the model's outputs; returns named scalars.

    ``pairs`` scores a Siamese pair batch, ``batch`` a P x K batch. A sample whose whitened
    labels hold NaN (no 3D labels, e.g. an identity-only photo dataset) adds nothing to the
    geometry, parameter, shape and WPDC terms; the identity terms still use it.
    """

    def __init__(self, cfg: LossConfig, model: MorphableModel, layout: ParamLayout, whitening: Whitening,
                 n_classes: int, embedding_dim: int):
        self.cfg, self.layout = cfg, layout
        idx = landmark_and_sample_indices(model, cfg.n_sample_vertices)
        self.tf_model = TFMorphableModel.from_numpy(model, layout, idx)
        free = losses.similarity_free_basis(self.tf_model.mean.numpy(), self.tf_model.id_basis.numpy())
        self.shape_basis = tf.constant(10.0 * free, tf.float32)  # cm -> mm
        self.mean = tf.constant(whitening.mean)
        self.std = tf.constant(whitening.std)
        if cfg.identity not in IDENTITY_LOSSES:
            raise SiamfaceError(f"loss.identity must be one of {', '.join(IDENTITY_LOSSES)}, not {cfg.identity!r}")
        if cfg.classifier not in CLASSIFIERS:
            raise SiamfaceError(f"loss.classifier must be one of {', '.join(CLASSIFIERS)}, not {cfg.classifier!r}")
        head = cfg.identity if cfg.identity in losses.MARGIN_LOGITS else cfg.classifier
        if cfg.identity in losses.MARGIN_LOGITS and cfg.classifier != "none":
            raise SiamfaceError(f"loss.identity={cfg.identity} is already a margin head: set loss.classifier=none")
        self.margin_head = None
        if head != "none":
            scale, margin = ((cfg.arcface_scale, cfg.arcface_margin) if head == "arcface"
                             else (cfg.cosface_scale, cfg.cosface_margin))
            self.margin_head = losses.MarginHead(n_classes, head, scale, margin)
            self.margin_head.build((None, embedding_dim))

    def unwhiten(self, z):
        return tf.cast(z, tf.float32) * self.std + self.mean

    def image_terms(self, z_true: tf.Tensor, z_pred: tf.Tensor, suffix: str = "") -> dict:
        """Per-image losses, masked where the labels are NaN (those become zeros first: a NaN
        would reach the gradient even through a zero weight)."""
        cfg, lay = self.cfg, self.layout
        z_true = tf.cast(z_true, tf.float32)
        mask = tf.reduce_all(tf.math.is_finite(z_true), axis=1)
        z_true = tf.where(mask[:, None], z_true, 0.0)
        z_pred = tf.cast(z_pred, tf.float32)
        p_true, p_pred = self.unwhiten(z_true), self.unwhiten(z_pred)
        terms = {}
        if cfg.geometry:
            p_geo = p_pred if cfg.geometry_shapes_identity else tf.concat(
                [p_pred[:, lay.pose], tf.stop_gradient(p_pred[:, lay.identity]), p_pred[:, lay.expression]], 1)
            terms[f"geometry{suffix}"] = cfg.geometry * losses.geometry_loss(p_true, p_geo, self.tf_model, mask)
        if cfg.param:
            terms[f"param{suffix}"] = cfg.param * losses.masked_mean(tf.square(z_true - z_pred), mask)
        if cfg.shape:
            terms[f"shape{suffix}"] = cfg.shape * losses.aligned_shape_loss(
                p_true[:, lay.identity], p_pred[:, lay.identity], self.shape_basis, mask)
        if cfg.wpdc:
            weights = losses.wpdc_weights(p_true, p_pred, self.tf_model)
            terms[f"wpdc{suffix}"] = cfg.wpdc * losses.wpdc_loss(z_true, z_pred, weights, mask)
        return terms

    def _identity_terms(self, embedding: tf.Tensor, labels: tf.Tensor, identity_on: tf.Tensor,
                        contrastive: Callable[[], tf.Tensor]) -> dict:
        """Identity losses on L2-normalised embeddings with their identity classes; ``contrastive``
        computes the paper's loss (per pair, or over every pair of a P x K batch)."""
        cfg, terms = self.cfg, {}
        if cfg.identity_weight and cfg.identity != "none":
            if cfg.identity == "contrastive":
                value = contrastive()
            elif cfg.identity == "triplet":
                value = losses.batch_hard_triplet_loss(embedding, labels, cfg.triplet_margin)
            elif cfg.identity == "supcon":
                value = losses.supervised_contrastive_loss(embedding, labels, cfg.supcon_temperature)
            else:
                value = self.margin_head(embedding, labels)
            terms["identity"] = identity_on * cfg.identity_weight * value
        if cfg.classifier != "none" and cfg.classifier_weight:
            terms["classifier"] = identity_on * cfg.classifier_weight * self.margin_head(embedding, labels)
        return terms

    def pairs(self, batch: dict, out: dict, identity_on: tf.Tensor) -> dict:
        """Siamese pair batch: per-image terms of both sides, contrastive terms per pair."""
        cfg, lay = self.cfg, self.layout
        terms = {**self.image_terms(batch["params_a"], out["params_a"], "_a"),
                 **self.image_terms(batch["params_b"], out["params_b"], "_b")}
        if cfg.shape_contrastive:
            id_a = self.unwhiten(out["params_a"])[:, lay.identity]
            id_b = self.unwhiten(out["params_b"])[:, lay.identity]
            terms["shape_contrastive"] = cfg.shape_contrastive * losses.contrastive_loss(
                id_a, id_b, batch["same"], cfg.shape_margin)
        if cfg.identity != "none" or cfg.classifier != "none":
            emb = tf.concat([out["embedding_a"], out["embedding_b"]], axis=0)
            labels = tf.concat([batch["class_a"], batch["class_b"]], axis=0)
            terms.update(self._identity_terms(emb, labels, identity_on, lambda: losses.embedding_contrastive_loss(
                out["embedding_a"], out["embedding_b"], batch["same"], cfg.identity_q, cfg.identity_distance)))
        terms["total"] = tf.add_n(list(terms.values()))
        return terms

    def batch(self, batch: dict, out: dict, identity_on: tf.Tensor) -> dict:
        """P x K batch: per-image terms, contrastive and identity terms over every pair of the batch."""
        cfg, lay = self.cfg, self.layout
        terms = self.image_terms(batch["params"], out["params"])
        if cfg.shape_contrastive:
            codes = self.unwhiten(out["params"])[:, lay.identity]
            terms["shape_contrastive"] = cfg.shape_contrastive * losses.batch_contrastive_loss(
                codes, batch["class"], cfg.shape_margin)
        terms.update(self._identity_terms(out["embedding"], batch["class"], identity_on, lambda: (
            losses.batch_embedding_contrastive_loss(out["embedding"], batch["class"], cfg.identity_q,
                                                    cfg.identity_distance))))
        terms["total"] = tf.add_n(list(terms.values()))
        return terms


def predict(encoder: keras.Model, split: SplitData, whitening: Whitening, batch_size: int = 64,
            limit: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indices, unwhitened params, L2-normalised embeddings) over the first ``limit`` images."""
    n = len(split) if limit is None else min(limit, len(split))
    idx = np.linspace(0, len(split) - 1, n).astype(np.int64) if n < len(split) else np.arange(n)
    params, embs = [], []
    for images in image_batches(split, batch_size, idx):
        z, e = encoder(images, training=False)
        params.append(z.numpy())
        embs.append(e.numpy())
    emb = np.concatenate(embs).astype(np.float64)
    emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    return idx, whitening.unwhiten(np.concatenate(params)), emb


def validate(encoder, split: SplitData, whitening: Whitening, model: MorphableModel, layout: ParamLayout,
             limit: int) -> dict:
    idx, params, emb = predict(encoder, split, whitening, limit=limit)
    truth = GroundTruth(split.landmarks2d[idx], split.pose_deg[idx], split.identity[idx], split.params[idx])
    return score(params, emb, truth, model, layout)


def selection_value(report: dict, key: str) -> float:
    return {"nme": lambda r: r["nme"]["mean"], "shape_error_mm": lambda r: r["shape_error_mm"],
            "eer_embedding": lambda r: r["verification_embedding"]["eer"]}[key](report)


def make_train_step(net: keras.Model, loss_fn: Callable[[dict, dict, tf.Tensor], dict], optimizer, trainables: list,
                    strategy, cfg: TrainConfig):
    """One optimiser step on a (distributed) batch; returns the replica-averaged loss terms.

    ``net`` is the Siamese or the batch model; it reads the batch entries named as its inputs.
    """
    replicas = strategy.num_replicas_in_sync

    def replica_step(batch, identity_on):
        with tf.GradientTape() as tape:
            outputs = net({name: batch[name] for name in net.input_names}, training=True)
            terms = loss_fn(batch, outputs, identity_on)
            total = terms["total"] / replicas
            scaled = optimizer.get_scaled_loss(total) if cfg.mixed_precision else total
        grads = tape.gradient(scaled, trainables)
        if cfg.mixed_precision:
            grads = optimizer.get_unscaled_gradients(grads)
        optimizer.apply_gradients(zip(grads, trainables))
        return terms

    @tf.function(jit_compile=cfg.xla or None)
    def train_step(batch, identity_on):
        terms = strategy.run(replica_step, args=(batch, identity_on))
        return {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None) for k, v in terms.items()}

    return train_step


def make_batches(cfg: TrainConfig, split: SplitData, whitening: Whitening) -> PairBatches | PKBatches:
    """The configured sampler's pipeline over the training split."""
    yaw = split.pose_deg[:, 0]
    if cfg.sampler == "pairs":
        sampler = PairSampler(split.identity, yaw, cfg.p_same, cfg.seed, cfg.pose_preference)
        return PairBatches(split, whitening, sampler, cfg.batch_size)
    if cfg.sampler != "pk":
        raise SiamfaceError(f"sampler must be pairs or pk, not {cfg.sampler!r}")
    n_identities = cfg.pk_identities
    if not n_identities:
        if (2 * cfg.batch_size) % cfg.pk_images:
            raise SiamfaceError(f"pk_images={cfg.pk_images} does not divide the {2 * cfg.batch_size} images of "
                                f"batch_size={cfg.batch_size}: set pk_identities or another pk_images")
        n_identities = 2 * cfg.batch_size // cfg.pk_images
    sampler = PKSampler(split.identity, yaw, n_identities, cfg.pk_images, cfg.seed, cfg.pose_preference)
    return PKBatches(split, whitening, sampler)


def _slices(batches: PKBatches, strategy: tf.distribute.Strategy) -> int:
    """Photo slices per replica: the K photo-major slices of a P x K batch, split among replicas."""
    k, replicas = batches.sampler.n_images, strategy.num_replicas_in_sync
    if k % replicas:
        raise SiamfaceError(f"pk_images={k} must be a multiple of the {replicas} GPUs: each takes whole photo slices")
    return k // replicas


def describe_device() -> tuple[tf.distribute.Strategy, str]:
    """MirroredStrategy over several GPUs, the default strategy on one GPU or the CPU."""
    gpus = tf.config.list_physical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy(), f"{len(gpus)} GPUs (MirroredStrategy)"
    return tf.distribute.get_strategy(), ("GPU " + gpus[0].name) if gpus else "CPU"


def train(cfg: TrainConfig, out: str | Path, progress: bool = True,
          encoder_factory: Callable[[], keras.Model] | None = None, kind: str = "float",
          parent: dict | None = None) -> dict:
    """Train (or resume) into ``out``; returns the best validation report.

    ``encoder_factory`` replaces the fresh encoder (QAT passes the quantize-wrapped float
    encoder); ``kind`` and ``parent`` are recorded in the checkpoint.
    """
    out = Path(out)
    model = load_face_model(cfg.face_model or None)
    train_split, val_split, first = open_training_data(cfg, model)
    layout, whitening = first.layout, first.whitening
    cfg = replace(cfg, encoder=replace(cfg.encoder, n_params=layout.size, input_size=first.image_size))
    _check_resume(out, cfg)
    tf.keras.utils.set_random_seed(cfg.seed)
    strategy, device = describe_device()
    if cfg.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    print(f"training on {device}; {len(train_split)} train images, {len(val_split)} val images; "
          f"layout {layout.to_dict()}", flush=True)

    batches = make_batches(cfg, train_split, whitening)
    pk = isinstance(batches, PKBatches)
    with strategy.scope():
        encoder = encoder_factory() if encoder_factory else build_encoder(cfg.encoder)
        net = build_batch_model(encoder, _slices(batches, strategy)) if pk else build_siamese(encoder)
        loss_fn = TrainingLosses(cfg.loss, model, layout, whitening, batches.n_classes, cfg.encoder.embedding_dim)
        optimizer = keras.optimizers.AdamW(learning_rate(cfg), weight_decay=cfg.weight_decay)
        if cfg.mixed_precision:
            optimizer = keras.mixed_precision.LossScaleOptimizer(optimizer)
        step_var = tf.Variable(0, dtype=tf.int64, name="step")
        head = loss_fn.margin_head
        trainables = net.trainable_variables + (head.trainable_variables if head else [])
        optimizer.build(trainables)
        _start_head_from_parent(head, parent)
    ckpt = tf.train.Checkpoint(encoder=encoder, optimizer=optimizer, step=step_var,
                               **({"margin_head": head} if head else {}))
    manager = tf.train.CheckpointManager(ckpt, out / "ckpt", max_to_keep=2)
    if manager.latest_checkpoint:
        ckpt.restore(manager.latest_checkpoint).expect_partial()
        print(f"resumed from {manager.latest_checkpoint} at step {int(step_var.numpy())}", flush=True)
    start = int(step_var.numpy())
    dist_data = strategy.experimental_distribute_dataset(batches.dataset(start_step=start))

    train_step = make_train_step(net, loss_fn.batch if pk else loss_fn.pairs, optimizer, trainables, strategy, cfg)

    writer = tf.summary.create_file_writer(str(out / "tb"))
    best = _read_best(out)
    history = out / "history.jsonl"
    bar = tqdm(total=cfg.steps, initial=start, unit="step", disable=not progress, desc="train")
    tic, seen = time.perf_counter(), 0   # images/s over the last logging window (no compile time)
    data_iter = iter(dist_data)
    rate = 0.0
    for step in range(start, cfg.steps):
        identity_on = tf.constant(1.0 if step >= cfg.loss.identity_start_step else 0.0)
        terms = train_step(next(data_iter), identity_on)
        step_var.assign(step + 1)
        seen += batches.images_per_step
        if (step + 1) % 20 == 0 or step + 1 == cfg.steps:
            values = {k: float(v) for k, v in terms.items()}
            rate = seen / (time.perf_counter() - tic)
            tic, seen = time.perf_counter(), 0
            bar.set_postfix(loss=f"{values['total']:.3f}", img_s=f"{rate:.0f}")
            with writer.as_default(step=step + 1):
                for k, v in values.items():
                    tf.summary.scalar(f"loss/{k}", v)
                tf.summary.scalar("images_per_second", rate)
        bar.update(1)
        if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps:
            manager.save(checkpoint_number=step + 1)
            report = validate(encoder, val_split, whitening, model, layout, cfg.eval_images)
            report.update(step=step + 1, train_images_per_second=round(rate, 1))
            with open(history, "a") as f:
                f.write(json.dumps(report) + "\n")
            value = selection_value(report, cfg.select_on)
            with writer.as_default(step=step + 1):
                tf.summary.scalar("val/nme", report["nme"]["mean"])
                tf.summary.scalar("val/shape_error_mm", report["shape_error_mm"])
            bar.write(f"step {step + 1}: val NME {report['nme']['mean']:.2f}%, shape {report['shape_error_mm']:.2f} mm, "
                      f"EER emb {report['verification_embedding']['eer']:.3f}, shape {report['verification_shape']['eer']:.3f}")
            if best is None or value < best["value"]:
                best = {"value": value, "step": step + 1, "report": report}
                meta = _checkpoint_meta(cfg, first, train_split, model, layout, whitening, report, step + 1)
                meta.update(kind=kind, **({"parent": parent} if parent else {}))
                save_checkpoint(out / "best", encoder, meta, head.kernel.numpy() if head else None)
                atomic_write_json(out / "best.json", best)
    bar.close()
    return best["report"] if best else {}


def _start_head_from_parent(head: losses.MarginHead | None, parent: dict | None) -> None:
    """Fine-tuning (QAT) a checkpoint trained with a margin head starts from its class vectors:
    random ones would pull every embedding towards an arbitrary direction for the first steps."""
    saved = load_margin_head(parent["checkpoint"]) if head is not None and parent else None
    if saved is not None and saved.shape == tuple(head.kernel.shape):
        head.kernel.assign(saved)


def _checkpoint_meta(cfg, first: Dataset, train_split: SplitData, model, layout, whitening, report, step) -> dict:
    return {"kind": "float", "created": utc_now(), "step": step, "config": config_to_dict(cfg),
            "encoder": config_to_dict(cfg.encoder), "param_layout": layout.to_dict(),
            "whitening": whitening.to_dict(), "face_model": model.describe(), "image_size": first.image_size,
            "pixel_format": "RGB uint8, scaled (x - 127.5) / 128",
            "training_data": {"datasets": cfg.data, "images": len(train_split),
                              "identities": int(len(np.unique(train_split.identity))),
                              "generator": first.manifest.get("generator")},
            "validation": report, "versions": package_versions(*VERSIONS)}


def _read_best(out: Path) -> dict | None:
    path = out / "best.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _check_resume(out: Path, cfg: TrainConfig) -> None:
    """Resuming with another config would mix two runs: refuse with a clear message."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "train_config.json"
    current = config_to_dict(cfg)
    if path.is_file():  # keys added since that run count with their defaults
        saved = config_to_dict(build_config(TrainConfig, json.loads(path.read_text()), str(path)))
        comparable = {k: v for k, v in current.items() if k != "steps"}
        if {k: v for k, v in saved.items() if k != "steps"} != comparable:
            raise SiamfaceError(f"{out} holds a run with a different config ({path}): use another --out "
                                f"or delete that folder")
    atomic_write_json(path, current)
