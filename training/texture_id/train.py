"""`siamface texture-id train`: the texture identity network, trained on the unwrapped maps of
datasets' photos through a bundle's reconstruction, P people x K photos per step with the
supervised contrastive loss. Any dataset with identities works, synthetic or imported people:
no 3D label is read.

RUN/ holds ``table.npz`` (the unwrap table), ``unwraps/`` (the cached maps), ``state/`` (the last
resume checkpoint: weights, optimiser, step), ``best/`` (the lowest validation EER so far: the
network and ``texture_id.json``, what made it) and ``log.jsonl``. Running again with the same
--out resumes; a different config is refused.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np
import tensorflow as tf
import tf_keras as keras
from tqdm import tqdm

from siamface.edge_runtime import metrics
from siamface.edge_runtime.atomic import atomic_folder, atomic_write_json
from siamface.edge_runtime.bundle import load_bundle
from siamface.edge_runtime.errors import SiamfaceError
from siamface.edge_runtime.morphable_model import file_sha256
from siamface.edge_runtime.normalise import l2_normalize
from siamface.edge_runtime.provenance import package_versions, utc_now
from siamface.edge_runtime.unwrap import UnwrapTable
from siamface.training.config_io import Range, changed_settings, config_to_dict
from siamface.training.data.dataset import Dataset, SplitData, merge_splits, whole_people
from siamface.training.data.render_model import render_model_path
from siamface.training.data.texture import face_unwrap_table
from siamface.training.losses import supervised_contrastive_loss
from siamface.training.pairs import PKSampler
from siamface.training.texture_id.model import TextureNetConfig, build_texture_net
from siamface.training.texture_id.unwraps import cached_unwraps, to_float

META = "texture_id.json"
NET = "texture_net.h5"
TABLE = "table.npz"
FORMAT_VERSION = 1


@dataclass
class TextureIdConfig:
    """Everything a texture identity run depends on (saved with its checkpoints)."""

    bundle: str = "models/default"   # whose reconstruction places the texels (its parameters, mirror-fused)
    data: list[str] = field(default_factory=lambda: ["runs/data"])
    face_model: str = ""             # the asset whose version-2 UV map the table comes from ("": the default)
    resolution: Annotated[int, Range(ge=32, le=256)] = 64  # texels per UV tile side (the face box is about 0.85 of it)
    mirror: bool = False             # the network also reads each texel's mirror partner (UnwrapTable.expand)
    net: TextureNetConfig = field(default_factory=TextureNetConfig)
    steps: Annotated[int, Range(ge=1)] = 3000
    n_identities: Annotated[int, Range(ge=2)] = 16  # P
    n_images: Annotated[int, Range(ge=2)] = 4       # K
    learning_rate: Annotated[float, Range(gt=0)] = 2e-3  # peak; cosine decay to 1 % after the warm-up
    warmup_steps: Annotated[int, Range(ge=0)] = 300
    temperature: Annotated[float, Range(gt=0)] = 0.1
    gain: Annotated[float, Range(ge=0, lt=1)] = 0.3      # per map: colours x U(1 - gain, 1 + gain) ...
    offset: Annotated[float, Range(ge=0, lt=1)] = 0.08   # ... + U(-offset, offset), on the visible texels
    eval_every: Annotated[int, Range(ge=1)] = 500
    validation_images: Annotated[int, Range(ge=4)] = 1000
    max_images: Annotated[int, Range(ge=0)] = 0      # 0: every training photo; else the first people's photos up to it
    seed: int = 0


def _rows(split: SplitData, limit: int) -> np.ndarray:
    """The split's photos, or at most ``limit`` of them: whole people, spread over the split."""
    if not limit or limit >= len(split):
        return np.arange(len(split))
    return whole_people(split.identity, limit)


class _Augment:
    """Photometric jitter of whole maps: light varies per photo and the visibility channel stays exact."""

    def __init__(self, cfg: TextureIdConfig):
        self.cfg, self.rng = cfg, np.random.default_rng([cfg.seed, 7])

    def __call__(self, maps: np.ndarray) -> np.ndarray:
        n = len(maps)
        gain = self.rng.uniform(1 - self.cfg.gain, 1 + self.cfg.gain, (n, 1, 1, 1)).astype(np.float32)
        offset = self.rng.uniform(-self.cfg.offset, self.cfg.offset, (n, 1, 1, 1)).astype(np.float32)
        out = maps.copy()
        out[..., :3] = np.clip(maps[..., :3] * gain + offset, 0.0, 1.0) * maps[..., 3:]
        return out


def validation_eer(net: keras.Model, maps: np.ndarray, identity: np.ndarray) -> float:
    """EER (%) of the network's float inputs ``maps`` over every same-person pair and as many different-person pairs of the maps."""
    emb = l2_normalize(net.predict(maps, batch_size=256, verbose=0))
    i, j, same = metrics.all_pairs(identity)
    return 100.0 * metrics.eer(np.sum(emb[i] * emb[j], axis=1), same)


def _check_resume(out: Path, cfg: TextureIdConfig) -> None:
    changed = changed_settings(out / "config.json", TextureIdConfig, cfg, free=("steps",))
    if changed:
        raise SiamfaceError(f"{out} was started with another config ({', '.join(changed)} differ): "
                            f"pass a new --out, or the same settings to resume")
    atomic_write_json(out / "config.json", config_to_dict(cfg))


def train_texture_id(cfg: TextureIdConfig, out: str | Path, progress: bool = True) -> dict:
    """Train (or resume) into ``out``; returns the best checkpoint's metadata."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _check_resume(out, cfg)
    bundle = load_bundle(cfg.bundle)
    table_path = out / TABLE
    if not table_path.is_file():
        face_unwrap_table(render_model_path(cfg.face_model or None), cfg.resolution, cfg.mirror).save(table_path)
    table = UnwrapTable.load(table_path)
    table.check_model(bundle.face_model, cfg.bundle)
    sets = [Dataset.open(d) for d in cfg.data]
    train, val = (merge_splits([d.split(name) for d in sets]) for name in ("train", "val"))
    train_rows, val_rows = _rows(train, cfg.max_images), _rows(val, cfg.validation_images)
    if len(np.unique(val.identity[val_rows])) < 2:
        raise SiamfaceError(f"the val splits of {', '.join(cfg.data)} hold fewer than two people: validation needs "
                            f"pairs; add a dataset with a val split of two or more people")
    maps = cached_unwraps(train, train_rows, bundle, table, out / "unwraps" / "train", progress)
    val_maps = cached_unwraps(val, val_rows, bundle, table, out / "unwraps" / "val", progress)
    identity, val_identity = train.identity[train_rows], val.identity[val_rows]
    sampler = PKSampler(identity, train.pose_deg[train_rows, 0], cfg.n_identities, cfg.n_images, cfg.seed)

    keras.utils.set_random_seed(cfg.seed)
    net = build_texture_net(table.shape, cfg.net, table.channels)
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0 if cfg.warmup_steps else cfg.learning_rate, max(1, cfg.steps - cfg.warmup_steps), alpha=0.01,
        warmup_target=cfg.learning_rate if cfg.warmup_steps else None, warmup_steps=cfg.warmup_steps)
    optimizer = keras.optimizers.Adam(schedule)
    step_var = tf.Variable(0, dtype=tf.int64)
    state = tf.train.Checkpoint(net=net, optimizer=optimizer, step=step_var)
    manager = tf.train.CheckpointManager(state, out / "state", max_to_keep=1)
    best = json.loads((out / "best" / META).read_text()) if (out / "best" / META).is_file() else None
    if manager.latest_checkpoint:
        state.restore(manager.latest_checkpoint).expect_partial()  # a finished run creates no optimiser slots

    @tf.function
    def train_step(x, y):
        with tf.GradientTape() as tape:
            loss = supervised_contrastive_loss(net(x, training=True), y, cfg.temperature)
        optimizer.apply_gradients(zip(tape.gradient(loss, net.trainable_variables), net.trainable_variables))
        return loss

    augment = _Augment(cfg)
    per_epoch = sampler.steps_per_epoch
    start = int(step_var.numpy())
    bar = tqdm(total=cfg.steps, initial=start, unit="step", desc="texture-id", disable=not progress)
    order, order_epoch = None, -1
    for step in range(start, cfg.steps):
        epoch, k = divmod(step, per_epoch)
        if epoch != order_epoch:
            order, order_epoch = sampler.epoch(epoch).reshape(per_epoch, -1), epoch
        batch = order[k]
        loss = float(train_step(table.expand(augment(to_float(maps[batch]))), tf.constant(identity[batch])))
        step_var.assign(step + 1)
        bar.update(1)
        if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps:
            eer = validation_eer(net, table.expand(to_float(val_maps)), val_identity)
            record = {"step": step + 1, "loss": loss, "validation_eer": eer, "time": utc_now()}
            with open(out / "log.jsonl", "a") as log:
                log.write(json.dumps(record) + "\n")
            bar.set_postfix(loss=f"{loss:.3f}", val_eer=f"{eer:.1f}")
            if best is None or eer < best["validation"]["eer"]:
                best = _save_best(out, net, cfg, bundle, table_path, step + 1, eer, len(np.unique(val_identity)),
                                  len(val_rows), train, train_rows)
            manager.save()
    bar.close()
    return best


def _save_best(out: Path, net: keras.Model, cfg: TextureIdConfig, bundle, table_path: Path, step: int, eer: float,
               val_people: int, val_images: int, train: SplitData, train_rows: np.ndarray) -> dict:
    meta = {"format_version": FORMAT_VERSION, "kind": "texture_id", "step": step,
            "validation": {"eer": eer, "people": val_people, "images": val_images},
            "bundle": {"path": str(bundle.root), "model_sha256": bundle.model_hash, "variant": bundle.variant},
            "table": {"file": TABLE, "sha256": file_sha256(table_path), "shape": list(UnwrapTable.load(table_path).shape)},
            "training_data": {"data": cfg.data, "images": int(len(train_rows)),
                              "people": int(len(np.unique(train.identity[train_rows])))},
            "config": config_to_dict(cfg), "created": utc_now(),
            "versions": package_versions("tensorflow", "tf-keras", "numpy", "ai-edge-litert")}
    with atomic_folder(out / "best") as tmp:
        net.save(tmp / NET, include_optimizer=False)
        (tmp / TABLE).write_bytes(table_path.read_bytes())
        atomic_write_json(tmp / META, meta)
    return meta
