"""The training loop: the optimiser step, the step log and TensorBoard, and at every checkpoint
validation on held-out identities and best-model selection.

Every worker of a cluster runs the same loop (saving and validation read variables that are
averaged across workers); only the chief's files remain (``training.distribute.Cluster``).
A run resumes from its last checkpoint: the step log drops the steps done after it, so the
finished log holds every step once however often the run was interrupted.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import tensorflow as tf
import tf_keras as keras
from tqdm import tqdm

from siamface.edge_runtime.atomic import atomic_write
from siamface.edge_runtime.errors import SiamfaceError
from siamface.edge_runtime.morphable_model import MorphableModel
from siamface.edge_runtime.normalise import l2_normalize
from siamface.edge_runtime.params import ParamLayout, Whitening
from siamface.edge_runtime.scoring import GroundTruth, score
from siamface.training.data.dataset import SplitData
from siamface.training.distribute import Cluster
from siamface.training.losses import TrainingLosses
from siamface.training.pipeline import image_batches

if TYPE_CHECKING:
    from siamface.training.train import TrainConfig

LOG_EVERY = 20   # steps per TensorBoard / progress-bar window


def make_train_step(net: keras.Model, loss_fn: Callable[[dict, dict, tf.Tensor], dict], optimizer, trainables: list,
                    strategy, cfg: TrainConfig, confined: dict[str, list] | None = None):
    """One optimiser step on a (distributed) batch; returns the replica-averaged loss terms.

    ``net`` is the Siamese or the batch model; it reads the batch entries named as its inputs.
    ``confined`` maps a loss term to the only variables it may train (e.g. the trait term to the
    embedding branch and its head): its gradient stops where they end, the others reach everything.
    """
    replicas = strategy.num_replicas_in_sync
    confined = confined or {}
    slot = {v.ref(): i for i, v in enumerate(trainables)}

    def scaled(loss):
        return optimizer.get_scaled_loss(loss / replicas) if cfg.mixed_precision else loss / replicas

    def gradients(tape, loss, variables):
        grads = tape.gradient(loss, variables)
        return optimizer.get_unscaled_gradients(grads) if cfg.mixed_precision else grads

    def replica_step(batch, identity_on):
        with tf.GradientTape(persistent=bool(confined)) as tape:
            outputs = net({name: batch[name] for name in net.input_names}, training=True)
            terms = loss_fn(batch, outputs, identity_on)
            losses = {name: scaled(terms[name]) for name in confined}
            free = scaled(terms["total"] - tf.add_n([terms[name] for name in confined]) if confined else terms["total"])
        grads = gradients(tape, free, trainables)
        for name, variables in confined.items():
            for v, g in zip(variables, gradients(tape, losses[name], variables)):
                i = slot[v.ref()]
                grads[i] = g if grads[i] is None else grads[i] + g
        optimizer.apply_gradients(zip(grads, trainables))
        return terms

    @tf.function(jit_compile=cfg.xla or None)
    def train_step(batch, identity_on):
        terms = strategy.run(replica_step, args=(batch, identity_on))
        return {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None) for k, v in terms.items()}

    return train_step


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
    return idx, whitening.unwhiten(np.concatenate(params)), l2_normalize(np.concatenate(embs))


def validate(encoder, split: SplitData, whitening: Whitening, model: MorphableModel, layout: ParamLayout,
             limit: int) -> dict:
    idx, params, emb = predict(encoder, split, whitening, limit=limit)
    truth = GroundTruth(split.landmarks2d[idx], split.pose_deg[idx], split.identity[idx], split.params[idx])
    return score(params, emb, truth, model, layout)


def _has_pairs(identities: np.ndarray) -> bool:
    """At least two people, and one of them in two photos."""
    _, counts = np.unique(identities, return_counts=True)
    return len(counts) >= 2 and bool((counts >= 2).any())


def selection_value(report: dict, key: str) -> float:
    return {"nme": lambda r: r["nme"]["mean"], "shape_error_mm": lambda r: r["shape_error_mm"],
            "eer_embedding": lambda r: r["verification_embedding"]["eer"]}[key](report)


@dataclass
class TrainState:
    """What a step changes and a checkpoint holds."""

    encoder: keras.Model
    net: keras.Model            # the Siamese or P x K batch model around the encoder
    losses: TrainingLosses
    optimizer: keras.optimizers.Optimizer
    step: tf.Variable

    @property
    def heads(self) -> dict:
        """The training-only layers the losses hold (margin head, trait head), by checkpoint name."""
        named = {"margin_head": self.losses.margin_head, "trait_head": self.losses.trait_head}
        return {name: layer for name, layer in named.items() if layer is not None}

    @property
    def trainables(self) -> list:
        return self.net.trainable_variables + [v for layer in self.heads.values() for v in layer.trainable_variables]


class Checkpoints:
    """tf.train checkpoints of the state in ``out/ckpt`` (the last two kept); every worker restores
    the chief's latest and takes part in each save."""

    def __init__(self, state: TrainState, out: Path, cluster: Cluster):
        self.state, self.folder, self.cluster = state, out / "ckpt", cluster
        self.ckpt = tf.train.Checkpoint(encoder=state.encoder, optimizer=state.optimizer, step=state.step,
                                        **state.heads)
        self.manager = tf.train.CheckpointManager(self.ckpt, self.folder, max_to_keep=2) if cluster.chief else None

    def restore(self) -> int:
        """The step to continue from (0 for a new run)."""
        latest = tf.train.latest_checkpoint(str(self.folder))
        if latest:
            self.ckpt.restore(latest).expect_partial()
            print(f"resumed from {latest} at step {int(self.state.step.numpy())}", flush=True)
        return int(self.state.step.numpy())

    def save(self, step: int) -> None:
        if self.cluster.chief:
            self.manager.save(checkpoint_number=step)
            return
        scratch = self.cluster.write_dir(self.folder)
        tf.train.CheckpointManager(self.ckpt, scratch, max_to_keep=1).save(checkpoint_number=step)
        self.cluster.discard(scratch)


class StepLog:
    """``steps.jsonl``: one line per finished step (losses at the logging windows). Opening it for
    a run resumed at ``start`` drops the lines of steps after it: their work was lost and is redone."""

    def __init__(self, path: Path, start: int, enabled: bool):
        self.file = None
        if not enabled:
            return
        if path.is_file():
            kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= start]
            with atomic_write(path, "w") as f:
                f.write("".join(line + "\n" for line in kept))
        self.file = open(path, "a", buffering=1)

    def write(self, step: int, values: dict | None) -> None:
        if self.file:
            self.file.write(json.dumps({"step": step, "time": round(time.time(), 3), **(values or {})}) + "\n")

    def close(self) -> None:
        if self.file:
            self.file.close()


@dataclass
class Validation:
    """Held-out scoring at each checkpoint and the value that picks the best model."""

    split: SplitData
    whitening: Whitening
    model: MorphableModel
    layout: ParamLayout
    limit: int
    select_on: str

    def __post_init__(self) -> None:
        """Refuse, before any step, an ``eval_images`` whose first images cannot make same- and
        different-person pairs (it would fail at every checkpoint of every rerun)."""
        ids = np.asarray(self.split.identity)
        n = min(self.limit, len(ids))
        if not _has_pairs(ids[:n]):
            need = next((m for m in range(n + 1, len(ids) + 1) if _has_pairs(ids[:m])), None)
            fix = f"raise eval_images to at least {need}" if need else "validate on more people (val_identities)"
            raise SiamfaceError(f"eval_images={self.limit} picks {len(np.unique(ids[:n]))} person(s) of the "
                                f"validation split, too few for same- and different-person pairs: {fix}")

    def __call__(self, encoder: keras.Model) -> tuple[dict, float]:
        report = validate(encoder, self.split, self.whitening, self.model, self.layout, self.limit)
        return report, selection_value(report, self.select_on)


def run_loop(cfg: TrainConfig, state: TrainState, train_step, data, images_per_step: int, out: Path,
             cluster: Cluster, validation: Validation, save_best: Callable[[dict, int], None],
             progress: bool) -> dict | None:
    """Steps from the restored one to ``cfg.steps``: checkpoint every ``cfg.checkpoint_every`` steps;
    checkpoint, validate and keep the best every ``cfg.eval_every`` steps and at the end. Returns
    the best {value, step, report} of the run (earlier sessions included)."""
    checkpoints = Checkpoints(state, out, cluster)
    start = checkpoints.restore()
    data_iter = iter(data(start))
    log = StepLog(out / "steps.jsonl", start, cluster.chief)
    writer = tf.summary.create_file_writer(str(out / "tb")) if cluster.chief else tf.summary.create_noop_writer()
    best = _read_best(out)
    if start and (start % cfg.eval_every == 0 or start == cfg.steps) and start not in _validated_steps(out):
        # killed between that checkpoint and its validation: validate the restored weights now
        best = _checkpoint_step(start, 0.0, state, out, cluster, validation, save_best, writer, None, best)
    bar = tqdm(total=cfg.steps, initial=start, unit="step", disable=not (progress and cluster.chief), desc="train")
    tic, seen, rate = time.perf_counter(), 0, 0.0   # images/s over the last logging window (no compile time)
    for step in range(start, cfg.steps):
        identity_on = tf.constant(1.0 if step >= cfg.loss.identity_start_step else 0.0)
        terms = train_step(next(data_iter), identity_on)
        state.step.assign(step + 1)
        seen += images_per_step
        values = None
        if (step + 1) % LOG_EVERY == 0 or step + 1 == cfg.steps:
            values = {k: float(v) for k, v in terms.items()}
            rate = seen / (time.perf_counter() - tic)
            tic, seen = time.perf_counter(), 0
            bar.set_postfix(loss=f"{values['total']:.3f}", img_s=f"{rate:.0f}")
            with writer.as_default(step=step + 1):
                for k, v in values.items():
                    tf.summary.scalar(f"loss/{k}", v)
                tf.summary.scalar("images_per_second", rate)
        log.write(step + 1, values)
        bar.update(1)
        if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps:
            checkpoints.save(step + 1)
            best = _checkpoint_step(step + 1, rate, state, out, cluster, validation, save_best, writer, bar, best)
        elif (step + 1) % cfg.checkpoint_every == 0:
            checkpoints.save(step + 1)
    bar.close()
    log.close()
    return best


def _checkpoint_step(step: int, rate: float, state: TrainState, out: Path, cluster: Cluster, validation: Validation,
                     save_best: Callable[[dict, int], None], writer, bar, best: dict | None) -> dict | None:
    """Validate, record, and keep the model when it is the best so far (every worker decides the
    same: they score the same weights on the same images)."""
    report, value = validation(state.encoder)
    report.update(step=step, train_images_per_second=round(rate, 1))
    if cluster.chief:
        with open(out / "history.jsonl", "a") as f:
            f.write(json.dumps(report) + "\n")
        with writer.as_default(step=step):
            tf.summary.scalar("val/nme", report["nme"]["mean"])
            tf.summary.scalar("val/shape_error_mm", report["shape_error_mm"])
        say = bar.write if bar is not None else print
        say(f"step {step}: val NME {report['nme']['mean']:.2f}%, shape {report['shape_error_mm']:.2f} mm, "
            f"EER emb {report['verification_embedding']['eer']:.3f}, "
            f"shape {report['verification_shape']['eer']:.3f}")
    if best is None or value < best["value"]:
        best = {"value": value, "step": step, "report": report}
        save_best(best, step)
    return best


def _validated_steps(out: Path) -> set[int]:
    """Steps whose validation reached history.jsonl."""
    path = out / "history.jsonl"
    lines = path.read_text().splitlines() if path.is_file() else []
    return {json.loads(line)["step"] for line in lines if line.strip()}


def _read_best(out: Path) -> dict | None:
    path = out / "best.json"
    return json.loads(path.read_text()) if path.is_file() else None
