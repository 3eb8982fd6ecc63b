"""Training: geometry + shape-contrastive + identity losses, on Siamese pairs (the paper's
baseline, ``sampler: pairs``) or on batches of P identities x K photos (``sampler: pk``).

Reads top to bottom: config, data, learning rate, sampler, model state, then ``train``, which
sets them up and hands them to the loop (``training.loop``: steps, checkpoints, resume,
validation, best-model selection, logs) on the strategy of ``training.distribute``. The losses
and their config live in ``training.losses``.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Callable, Literal

import numpy as np
import tensorflow as tf
import tf_keras as keras

from siamface.edge_runtime.atomic import atomic_write_json
from siamface.edge_runtime.errors import SiamfaceError
from siamface.edge_runtime.morphable_model import MorphableModel
from siamface.edge_runtime.normalise import PIXEL_NORMALISATION
from siamface.edge_runtime.params import ParamLayout, Whitening
from siamface.edge_runtime.provenance import package_versions, utc_now
from siamface.training.checkpoint import (load_checkpoint, load_head, parent_record, read_float_checkpoint_meta,
                                         save_checkpoint)
from siamface.training.config_io import Range, build_config, changed_settings, config_to_dict
from siamface.training.data.dataset import Dataset, SplitData, merge_splits
from siamface.training.distribute import current_cluster, distribute
from siamface.training.face_model import check_same_face_model, load_training_face_model
from siamface.training.loop import TrainState, Validation, make_train_step, run_loop
from siamface.training.losses import LossConfig, MarginHead, TrainingLosses
from siamface.training.model import (BN_MOMENTUM, EncoderConfig, build_batch_model, build_encoder, build_siamese,
                                     embedding_branch_variables)
from siamface.training.pairs import PairSampler, PKSampler
from siamface.training.pipeline import Flip, PairBatches, PKBatches, mirrored_labels

VERSIONS = ("tensorflow", "tf-keras", "tensorflow-model-optimization", "numpy")


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
    # pk: batch normalisation over each of the K photo slices (one photo of each person per pass,
    # K passes), or over the whole batch in one pass with the moving statistics' momentum raised to
    # 0.99^K, so they move per step as K slice updates move them (docs/results.md, identity).
    pk_single_pass: bool = False
    learning_rate: float = 2e-3       # peak rate; with lr_scaling, the rate at lr_reference_images per step
    lr_scaling: Literal["none", "sqrt", "linear"] = "none"   # with the global batch: (images / reference)^(1/2 or 1)
    lr_reference_images: int = 64
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    p_same: float = 0.4
    pose_preference: float = 1.0      # samplers: weight (|yaw gap| + 10)^this when picking a person's photos
    seed: int = 0
    # Probability that a training photo is mirrored left-right, its labels mirrored exactly with it
    # (the face model's mirror maps; pipeline.Flip): 0 off.
    flip: Annotated[float, Range(ge=0.0, le=1.0)] = 0.0
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    eval_every: int = 500
    # Steps between resume checkpoints that are not validations (a killed run redoes at most this
    # many; a validation step always checkpoints). Changing it on resume is allowed.
    checkpoint_every: Annotated[int, Range(ge=1)] = 1000
    eval_images: int = 1000
    select_on: Literal["nme", "shape_error_mm", "eer_embedding"] = "nme"  # lower is better
    mixed_precision: bool = False     # GPU only
    xla: bool = False
    face_model: str = ""
    # A float checkpoint (the best/ folder of `siamface train`) to start from instead of random
    # weights: fine-tuning on other data (e.g. imported people) or more steps on a new schedule.
    # The run keeps its encoder, parameter layout and whitening; a training head whose shape fits
    # (the margin head on the same people) starts from its weights. "": from scratch.
    init: str = ""


def open_training_data(cfg: TrainConfig, model: MorphableModel) -> tuple[SplitData, SplitData, Dataset]:
    """Train split(s) merged, validation split, and the first dataset with 3D labels (for layout,
    whitening and validation; identity-only datasets, e.g. imported photos, have none)."""
    datasets = [Dataset.open(p) for p in cfg.data]
    first = next((ds for ds in datasets if ds.manifest.get("whitening")), None)
    if first is None:
        raise SiamfaceError(f"none of {cfg.data} has 3D labels (all identity-only): add a synthetic or fitted "
                            f"dataset, whose labels give the parameter whitening and the validation scores")
    for ds in datasets:
        check_same_face_model(ds.face_model, model, f"dataset {ds.root}",
                              "regenerate the data or pass the matching --face-model")
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


def peak_learning_rate(cfg: TrainConfig, images_per_step: int) -> float:
    """``learning_rate``, scaled with the global batch when ``lr_scaling`` asks (a larger batch, e.g.
    for more GPUs or workers, averages its gradient over more images and tolerates a larger step)."""
    power = {"none": 0.0, "sqrt": 0.5, "linear": 1.0}[cfg.lr_scaling]
    return cfg.learning_rate * (images_per_step / cfg.lr_reference_images) ** power


def learning_rate(cfg: TrainConfig, images_per_step: int) -> keras.optimizers.schedules.LearningRateSchedule:
    """Linear warm-up to the peak rate, then cosine decay to 2 % of it."""
    peak = peak_learning_rate(cfg, images_per_step)
    decay = keras.optimizers.schedules.CosineDecay(peak, max(1, cfg.steps - cfg.warmup_steps), alpha=0.02)
    return _Warmup(peak, cfg.warmup_steps, decay)


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


def make_batches(cfg: TrainConfig, split: SplitData, whitening: Whitening, model: MorphableModel,
                 layout: ParamLayout) -> PairBatches | PKBatches:
    """The configured sampler's pipeline over the training split."""
    yaw = split.pose_deg[:, 0]
    flip = Flip(cfg.flip, mirrored_labels(split, model, layout)) if cfg.flip else None
    if cfg.sampler == "pairs":
        sampler = PairSampler(split.identity, yaw, cfg.p_same, cfg.seed, cfg.pose_preference)
        return PairBatches(split, whitening, sampler, cfg.batch_size, flip)
    if cfg.sampler != "pk":
        raise SiamfaceError(f"sampler must be pairs or pk, not {cfg.sampler!r}")
    n_identities = cfg.pk_identities
    if not n_identities:
        if (2 * cfg.batch_size) % cfg.pk_images:
            raise SiamfaceError(f"pk_images={cfg.pk_images} does not divide the {2 * cfg.batch_size} images of "
                                f"batch_size={cfg.batch_size}: set pk_identities or another pk_images")
        n_identities = 2 * cfg.batch_size // cfg.pk_images
    sampler = PKSampler(split.identity, yaw, n_identities, cfg.pk_images, cfg.seed, cfg.pose_preference)
    return PKBatches(split, whitening, sampler, flip)


def _slices(batches: PKBatches, strategy: tf.distribute.Strategy) -> int:
    """Photo slices per replica: the K photo-major slices of a P x K batch, split among replicas."""
    k, replicas = batches.sampler.n_images, strategy.num_replicas_in_sync
    if k % replicas:
        raise SiamfaceError(f"pk_images={k} must be a multiple of the {replicas} replicas (GPUs or workers): "
                            f"each takes whole photo slices")
    return k // replicas


def _batch_norm_momentum(encoder: keras.Model, updates: int) -> None:
    """Every batch norm's momentum to BN_MOMENTUM^updates: one update per step (pk_single_pass) moves the
    moving statistics as far as ``updates`` updates at BN_MOMENTUM did (at 0.99 and one update per step,
    500 steps left 0.6 % of the initial variance in layers whose variance is 0.005: inference broke, see
    build_batch_model). Set on every run, also from a checkpoint, which keeps the momentum it trained
    with: sliced passes from a one-pass checkpoint would otherwise update at 0.99^K per slice."""
    for layer in encoder.layers:
        norm = getattr(layer, "layer", layer)  # QAT wraps every layer (tfmot's QuantizeWrapperV2)
        if isinstance(norm, keras.layers.BatchNormalization):
            norm.momentum = BN_MOMENTUM ** updates


def build_state(cfg: TrainConfig, batches: PairBatches | PKBatches, model: MorphableModel, layout: ParamLayout,
                whitening: Whitening, strategy: tf.distribute.Strategy,
                encoder_factory: Callable[[], keras.Model] | None, parent: dict | None) -> TrainState:
    """Encoder, training model, losses and optimiser, created in the strategy's scope."""
    pk = isinstance(batches, PKBatches)
    with strategy.scope():
        encoder = encoder_factory() if encoder_factory else build_encoder(cfg.encoder)
        slices = _slices(batches, strategy) if pk else 1
        one_pass = pk and cfg.pk_single_pass
        _batch_norm_momentum(encoder, slices if one_pass else 1)
        net = build_batch_model(encoder, 1 if one_pass else slices) if pk else build_siamese(encoder)
        loss_fn = TrainingLosses(cfg.loss, model, layout, whitening, batches.n_classes, cfg.encoder.embedding_dim,
                                 batches.n_traits)
        optimizer = keras.optimizers.AdamW(learning_rate(cfg, batches.images_per_step), weight_decay=cfg.weight_decay)
        if cfg.mixed_precision:
            optimizer = keras.mixed_precision.LossScaleOptimizer(optimizer)
        state = TrainState(encoder, net, loss_fn, optimizer, tf.Variable(0, dtype=tf.int64, name="step"))
        optimizer.build(state.trainables)
        _start_heads_from_parent(state.heads, parent)
    return state


def confined_terms(cfg: TrainConfig, state: TrainState) -> dict[str, list]:
    """The loss terms whose gradient stops early, with the variables each may train."""
    if not (cfg.loss.traits and cfg.loss.traits_branch_only):
        return {}
    if not cfg.encoder.embedding_from_stage:
        raise SiamfaceError("loss.traits_branch_only needs an embedding branch: set encoder.embedding_from_stage "
                            "to a stage (the demo's configs use 4), or loss.traits_branch_only=false")
    return {"traits": embedding_branch_variables(state.encoder) + state.losses.trait_head.trainable_variables}


def train(cfg: TrainConfig, out: str | Path, progress: bool = True,
          encoder_factory: Callable[[], keras.Model] | None = None, kind: str = "float",
          parent: dict | None = None) -> dict:
    """Train (or resume) into ``out``; returns the best validation report.

    ``encoder_factory`` replaces the fresh encoder (QAT passes the quantize-wrapped float
    encoder; ``cfg.init`` a float checkpoint's own); ``kind`` and ``parent`` are recorded in the
    checkpoint. With TF_CONFIG set, this process is one worker of a cluster (``training.distribute``).
    """
    cluster = current_cluster()   # first: a cluster's collectives are set up before other TensorFlow work
    out = Path(out)
    model = load_training_face_model(cfg.face_model or None)
    train_split, val_split, first = open_training_data(cfg, model)
    layout, whitening = first.layout, first.whitening
    cfg = replace(cfg, encoder=replace(cfg.encoder, n_params=layout.size, input_size=first.image_size))
    if cfg.init and encoder_factory is None:
        whitening, encoder_factory, parent = start_from(cfg, model, layout)
    _check_resume(out, cfg, write=cluster.chief)
    tf.keras.utils.set_random_seed(cfg.seed)
    if cfg.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    print(f"training on {cluster.description}; {len(train_split)} train images, {len(val_split)} val images; "
          f"layout {layout.to_dict()}" + (f"; starting from {cfg.init} (step {parent['step']})" if cfg.init else ""),
          flush=True)

    batches = make_batches(cfg, train_split, whitening, model, layout)
    state = build_state(cfg, batches, model, layout, whitening, cluster.strategy, encoder_factory, parent)
    loss_fn = state.losses.batch if isinstance(batches, PKBatches) else state.losses.pairs
    train_step = make_train_step(state.net, loss_fn, state.optimizer, state.trainables, cluster.strategy, cfg,
                                 confined_terms(cfg, state))

    def data(start: int):
        return distribute(cluster.strategy, lambda part, parts: batches.dataset(start, part=part, parts=parts))

    def save_best(best: dict, step: int) -> None:
        meta = _checkpoint_meta(cfg, first, train_split, model, layout, whitening, best["report"], step)
        meta.update(kind=kind, **({"parent": parent} if parent else {}))
        folder = cluster.write_dir(out / "best")
        save_checkpoint(folder, state.encoder, meta, {name: head.get_weights() for name, head in state.heads.items()})
        cluster.discard(folder)
        if cluster.chief:
            atomic_write_json(out / "best.json", best)

    validation = Validation(val_split, whitening, model, layout, cfg.eval_images, cfg.select_on)
    best = run_loop(cfg, state, train_step, data, batches.images_per_step, out, cluster, validation, save_best,
                    progress)
    return best["report"] if best else {}


def start_from(cfg: TrainConfig, model: MorphableModel, layout: ParamLayout
               ) -> tuple[Whitening, Callable[[], keras.Model], dict]:
    """For ``cfg.init``: the checkpoint's whitening (its parameter head's units), a factory that loads
    its encoder, and the record of it. Refuses, before any step, a checkpoint this run cannot continue."""
    folder = Path(cfg.init)
    meta = read_float_checkpoint_meta(folder, f"init={cfg.init}", "a run with init")
    fix = "set init to a checkpoint made for this data, or init= to train from scratch"
    check_same_face_model(meta["face_model"], model, f"init={cfg.init}", fix)
    if ParamLayout.from_dict(meta["param_layout"]) != layout:
        raise SiamfaceError(f"init={cfg.init} predicts parameter layout {meta['param_layout']}, the data has "
                            f"{layout.to_dict()}: {fix}")
    saved = build_config(EncoderConfig, meta["encoder"], str(folder / "checkpoint.json"))
    differ = [f"{k} {v!r} vs {getattr(cfg.encoder, k)!r}" for k, v in vars(saved).items()
              if v != getattr(cfg.encoder, k)]
    if differ:
        raise SiamfaceError(f"init={cfg.init} has another encoder than this config ({'; '.join(differ)}): set those "
                            f"encoder keys to the checkpoint's, or init= to train from scratch")
    return Whitening.from_dict(meta["whitening"]), lambda: load_checkpoint(folder)[0], parent_record(folder, meta)


def _start_heads_from_parent(heads: dict, parent: dict | None) -> None:
    """Fine-tuning (QAT) a checkpoint starts its training-only heads from the parent's: a random
    margin head would pull every embedding towards an arbitrary direction for the first steps, a
    random trait head towards arbitrary traits."""
    for name, head in heads.items():
        saved = load_head(parent["checkpoint"], name) if parent else None
        if saved is not None and [w.shape for w in saved] == [tuple(w.shape) for w in head.weights]:
            head.set_weights(saved)


def _checkpoint_meta(cfg, first: Dataset, train_split: SplitData, model, layout, whitening, report, step) -> dict:
    return {"kind": "float", "created": utc_now(), "step": step, "config": config_to_dict(cfg),
            "encoder": config_to_dict(cfg.encoder), "param_layout": layout.to_dict(),
            "whitening": whitening.to_dict(), "face_model": model.describe(), "image_size": first.image_size,
            "pixel_format": f"RGB uint8, scaled {PIXEL_NORMALISATION}",
            "training_data": {"datasets": cfg.data, "images": len(train_split),
                              "identities": int(len(np.unique(train_split.identity))),
                              "generator": first.manifest.get("generator")},
            "validation": report, "versions": package_versions(*VERSIONS)}


def _check_resume(out: Path, cfg: TrainConfig, write: bool = True) -> None:
    """Resuming with another config would mix two runs: refuse with a clear message. Records the
    config when ``write`` (the chief of a cluster)."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "train_config.json"
    # how far and how often to save, not what is trained, may change
    if changed_settings(path, TrainConfig, cfg, free=("steps", "checkpoint_every")):
        raise SiamfaceError(f"{out} holds a run with a different config ({path}): use another --out "
                            f"or delete that folder")
    if write:
        atomic_write_json(path, config_to_dict(cfg))
