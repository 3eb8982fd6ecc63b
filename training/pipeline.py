"""tf.data input pipelines: Siamese pair batches and P x K identity batches for training, plain
batches for evaluation.

Indices are drawn per epoch by a sampler (``training.pairs``); images are gathered a whole
batch at a time from the memory-mapped shards (one numpy call per batch, none per sample, in
parallel map calls), then normalised and photometrically augmented in the graph, and prefetched.
Only the label table is held in memory: images stream from disk, so the data may be far larger
than memory, and a worker of a cluster reads only its own rows of each batch. Parameters of samples
without 3D labels stay NaN: the losses mask their geometry terms (``TrainingLosses``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import tensorflow as tf

from siamface.edge_runtime.errors import SiamfaceError
from siamface.edge_runtime.normalise import normalise_pixels
from siamface.edge_runtime.mirror_params import param_mirror
from siamface.edge_runtime.morphable_model import MorphableModel
from siamface.edge_runtime.params import ParamLayout, Whitening
from siamface.training.data.dataset import SplitData
from siamface.training.pairs import PairSampler, PKSampler


def normalise(images_uint8: tf.Tensor) -> tf.Tensor:
    """The paper's input scaling (``edge_runtime.normalise``, shared with export and the device)."""
    return normalise_pixels(tf.cast(images_uint8, tf.float32))


def augment(images_uint8: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Label-preserving photometric jitter (geometry stays exact), one draw per tensor.

    Stateless: the jitter is a function of ``seed`` (2 ints), so a resumed run and every worker
    of a cluster apply the same jitter as one uninterrupted process does. One draw for the whole
    batch, not one per photo: per-photo jitter (2026-12-02, demo config, seeds 0 and 1) left the
    synthetic EER where it was (29.0 vs 29.1 %) and cost real dev NME (6.14 / 6.31 vs 5.40 / 5.28).
    """
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 3)
    x = tf.cast(images_uint8, tf.float32) / 255.0
    x = tf.image.stateless_random_brightness(x, 0.08, seeds[0])
    x = tf.image.stateless_random_contrast(x, 0.85, 1.15, seeds[1])
    x = tf.image.stateless_random_saturation(x, 0.8, 1.2, seeds[2])
    return tf.cast(tf.clip_by_value(x * 255.0, 0.0, 255.0), tf.uint8)


@dataclass(frozen=True)
class Flip:
    """Mirror augmentation with exact labels: each training photo is mirrored with probability
    ``p``, its parameters replaced by ``mirrored_params`` (N, P), the same face seen in the mirror
    (``mirrored_labels``)."""

    p: float
    mirrored_params: np.ndarray


def mirrored_labels(split: SplitData, model: MorphableModel, layout: ParamLayout) -> np.ndarray:
    """(N, P) float32: the parameters of every photo of ``split`` mirrored left-right, through the
    face model's mirror maps (``edge_runtime.mirror_params``: camera x flipped about the crop's
    centre line, blendshapes swapped with their partners, identity through the mirror map); NaN
    rows (no 3D labels) stay NaN."""
    mirror = param_mirror(model, layout.n_id)
    return mirror.unmirror(split.params, layout, split.image_size).astype(np.float32)


def standardise_traits(traits: np.ndarray | None) -> np.ndarray | None:
    """Traits scaled to zero mean and unit spread per column over the samples that have them (a
    column that never varies stays 0), so every trait weighs alike in ``loss.traits``; NaN rows
    (people without traits) stay NaN. None: no traits."""
    if traits is None or not np.isfinite(traits).all(axis=1).any():
        return None
    known = traits[np.isfinite(traits).all(axis=1)]
    spread = known.std(axis=0)
    return ((traits - known.mean(axis=0)) / np.where(spread > 1e-6, spread, 1.0)).astype(np.float32)


class _Batches:
    """What both training pipelines share: whitened labels, identity classes, the epoch stream.

    A stream may be one ``part`` of ``parts`` equal row blocks of every batch (one worker's or
    replica's share): it draws the same batches and reads only its own rows' images.
    """

    def __init__(self, split: SplitData, whitening: Whitening, batch_size: int, steps_per_epoch: int,
                 flip: Flip | None = None):
        self.split, self.batch_size, self.steps_per_epoch = split, batch_size, max(1, steps_per_epoch)
        self.params_z = whitening.whiten(split.params).astype(np.float32)
        _, self.classes = np.unique(split.identity, return_inverse=True)
        self.n_classes = int(self.classes.max()) + 1
        self.traits_z = standardise_traits(split.traits)
        self.flip = flip
        self.mirrored_z = None if flip is None else whitening.whiten(flip.mirrored_params).astype(np.float32)

    def part_rows(self, parts: int) -> int:
        if self.batch_size % parts:
            raise SiamfaceError(f"a batch of {self.batch_size} rows does not split into {parts} equal parts (one per "
                                f"replica): make batch_size (pk: pk_images) a multiple of the replicas")
        return self.batch_size // parts

    def _stream(self, start_step: int, epoch_fn: Callable, dtypes: list, part: int, parts: int) -> tf.data.Dataset:
        """(step, this part's rows of the batch's index arrays), from ``start_step`` (for resume)."""
        rows = self.part_rows(parts)
        epochs = tf.data.Dataset.range(start_step // self.steps_per_epoch, 2**31)
        drawn = epochs.map(lambda e: tf.numpy_function(epoch_fn, [e], dtypes))
        ds = drawn.flat_map(lambda *arrays: tf.data.Dataset.from_tensor_slices(arrays))
        ds = ds.batch(self.batch_size, drop_remainder=True).skip(start_step % self.steps_per_epoch)
        ds = ds.map(lambda *arrays: tuple(tf.reshape(a[part * rows: (part + 1) * rows], (rows,)) for a in arrays))
        return tf.data.Dataset.zip((tf.data.Dataset.range(start_step, 2**62), ds))

    def _samples(self, idx: tf.Tensor, seed: tf.Tensor | None, part: int = 0) -> dict:
        """Rows ``idx`` (``part`` of the batch's equal row blocks): normalised images and their labels
        (``_labels``); with a ``seed``, the images jittered and, with ``flip``, each mirrored with
        that probability along with its parameters (drawn for the whole batch, so a part's rows are
        mirrored as they are in the whole batch)."""
        images = tf.numpy_function(self.split.images, [idx], tf.uint8)
        size, rows = self.split.image_size, idx.shape[0]
        images.set_shape((rows, size, size, 3))
        labels = self._labels(idx)
        mirrored = labels.pop("params_mirrored", None)
        if seed is None:
            return {"image": normalise(images), **labels}
        if mirrored is not None:
            draws = tf.random.stateless_uniform([self.batch_size], tf.random.experimental.stateless_fold_in(seed, 1))
            flipped = draws[part * rows:(part + 1) * rows] < self.flip.p
            images = tf.where(flipped[:, None, None, None], tf.reverse(images, axis=[2]), images)
            labels["params"] = tf.where(flipped[:, None], mirrored, labels["params"])
        return {"image": normalise(augment(images, seed)), **labels}

    @property
    def n_traits(self) -> int:
        return 0 if self.traits_z is None else self.traits_z.shape[1]

    def _labels(self, idx: tf.Tensor) -> dict:
        """params (whitened), class and, where the data has them, traits (standardised) of rows idx;
        with ``flip``, also the mirrored photos' params (whitened)."""
        tables = {"params": self.params_z, "class": self.classes.astype(np.int32)}
        if self.traits_z is not None:
            tables["traits"] = self.traits_z
        if self.mirrored_z is not None:
            tables["params_mirrored"] = self.mirrored_z
        values = tf.numpy_function(lambda i: [t[i] for t in tables.values()], [idx],
                                   [tf.as_dtype(t.dtype) for t in tables.values()])
        rows = idx.shape[0]
        return {k: tf.reshape(v, (rows,) + t.shape[1:]) for (k, t), v in zip(tables.items(), values)}


def _seed(augment_images: bool, base: int, step: tf.Tensor, draw: int) -> tf.Tensor | None:
    """The augmentation seed of one draw of a step (None: no augmentation)."""
    return tf.stack([step, tf.constant(2 * base + draw, tf.int64)]) if augment_images else None


class PairBatches(_Batches):
    """Batches of (image_a, image_b) with whitened params, identity classes and the same flag."""

    def __init__(self, split: SplitData, whitening: Whitening, sampler: PairSampler, batch_size: int,
                 flip: Flip | None = None):
        super().__init__(split, whitening, batch_size, len(split) // batch_size, flip)
        self.sampler = sampler
        self.images_per_step = 2 * batch_size

    def _epoch_pairs(self, epoch: np.ndarray):
        a, b, same = self.sampler.epoch(int(epoch))
        n = self.steps_per_epoch * self.batch_size
        return a[:n], b[:n], same[:n]

    def dataset(self, start_step: int = 0, augment_images: bool = True, part: int = 0,
                parts: int = 1) -> tf.data.Dataset:
        """An endless stream of batch dicts (``part`` of ``parts`` row blocks), from ``start_step``."""
        ds = self._stream(start_step, self._epoch_pairs, [tf.int64, tf.int64, tf.float32], part, parts)
        seed = self.sampler.seed

        def load(step, arrays):
            a, b, same = arrays
            sides = {side: self._samples(idx, _seed(augment_images, seed, step, draw), part)
                     for draw, (side, idx) in enumerate((("a", a), ("b", b)))}
            return {f"{k}_{side}": v for side, sample in sides.items() for k, v in sample.items()} | {
                "same": tf.reshape(same, (a.shape[0],))}

        return ds.map(load, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


class PKBatches(_Batches):
    """Batches of P identities x K images: image, whitened params and identity class per image."""

    def __init__(self, split: SplitData, whitening: Whitening, sampler: PKSampler, flip: Flip | None = None):
        super().__init__(split, whitening, sampler.batch_size, sampler.steps_per_epoch, flip)
        self.sampler = sampler
        self.images_per_step = sampler.batch_size

    def dataset(self, start_step: int = 0, augment_images: bool = True, part: int = 0,
                parts: int = 1) -> tf.data.Dataset:
        """An endless stream of batch dicts (``part`` of ``parts`` row blocks: whole photo slices when
        ``parts`` divides K), from ``start_step``."""
        ds = self._stream(start_step, lambda e: self.sampler.epoch(int(e)), [tf.int64], part, parts)
        seed = self.sampler.seed

        def load(step, arrays):
            idx, = arrays
            return self._samples(idx, _seed(augment_images, seed, step, 0), part)

        return ds.map(load, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def image_batches(split: SplitData, batch_size: int, indices: np.ndarray | None = None) -> tf.data.Dataset:
    """Images of a split (all, or ``indices``) in order, normalised, for evaluation."""
    indices = np.arange(len(split)) if indices is None else np.asarray(indices, np.int64)
    size = split.image_size

    def load(idx):
        images = tf.numpy_function(split.images, [idx], tf.uint8)
        images.set_shape((None, size, size, 3))
        return normalise(images)

    return (tf.data.Dataset.from_tensor_slices(indices).batch(batch_size).map(load, num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE))
