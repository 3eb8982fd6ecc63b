"""tf.data input pipelines: Siamese pair batches and P x K identity batches for training, plain
batches for evaluation.

Indices are drawn per epoch by a sampler (``training.pairs``); images are gathered a whole
batch at a time from the memory-mapped shards (one numpy call per batch, none per sample), then
normalised and photometrically augmented in the graph, and prefetched. Parameters of samples
without 3D labels stay NaN: the losses mask their geometry terms (``TrainingLosses``).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import tensorflow as tf

from edge_runtime.params import Whitening
from training.data.dataset import SplitData
from training.pairs import PairSampler, PKSampler

PIXEL_MEAN, PIXEL_SCALE = 127.5, 128.0


def normalise(images_uint8: tf.Tensor) -> tf.Tensor:
    """The paper's input scaling, (x - 127.5) / 128."""
    return (tf.cast(images_uint8, tf.float32) - PIXEL_MEAN) / PIXEL_SCALE


def augment(images_uint8: tf.Tensor) -> tf.Tensor:
    """Label-preserving photometric jitter (geometry stays exact)."""
    x = tf.cast(images_uint8, tf.float32) / 255.0
    x = tf.image.random_brightness(x, 0.08)
    x = tf.image.random_contrast(x, 0.85, 1.15)
    x = tf.image.random_saturation(x, 0.8, 1.2)
    return tf.cast(tf.clip_by_value(x * 255.0, 0.0, 255.0), tf.uint8)


class _Batches:
    """What both training pipelines share: whitened labels, identity classes, the epoch stream."""

    def __init__(self, split: SplitData, whitening: Whitening, batch_size: int, steps_per_epoch: int):
        self.split, self.batch_size, self.steps_per_epoch = split, batch_size, max(1, steps_per_epoch)
        self.params_z = whitening.whiten(split.params).astype(np.float32)
        _, self.classes = np.unique(split.identity, return_inverse=True)
        self.n_classes = int(self.classes.max()) + 1

    def _stream(self, start_step: int, epoch_fn: Callable, dtypes: list) -> tf.data.Dataset:
        """Batches of the per-epoch index arrays from ``epoch_fn``, skipping to ``start_step``."""
        epochs = tf.data.Dataset.range(start_step // self.steps_per_epoch, 2**31)
        drawn = epochs.map(lambda e: tf.numpy_function(epoch_fn, [e], dtypes))
        ds = drawn.flat_map(lambda *arrays: tf.data.Dataset.from_tensor_slices(arrays))
        return ds.batch(self.batch_size, drop_remainder=True).skip(start_step % self.steps_per_epoch)

    def _images(self, idx: tf.Tensor, augment_images: bool) -> tf.Tensor:
        images = tf.numpy_function(self.split.images, [idx], tf.uint8)
        size = self.split.image_size
        images.set_shape((self.batch_size, size, size, 3))
        return normalise(augment(images) if augment_images else images)

    def _labels(self, idx: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        z, c = tf.numpy_function(lambda i: (self.params_z[i], self.classes[i].astype(np.int32)), [idx],
                                 [tf.float32, tf.int32])
        return tf.reshape(z, (self.batch_size, self.params_z.shape[1])), tf.reshape(c, (self.batch_size,))


class PairBatches(_Batches):
    """Batches of (image_a, image_b) with whitened params, identity classes and the same flag."""

    def __init__(self, split: SplitData, whitening: Whitening, sampler: PairSampler, batch_size: int):
        super().__init__(split, whitening, batch_size, len(split) // batch_size)
        self.sampler = sampler
        self.images_per_step = 2 * batch_size

    def _epoch_pairs(self, epoch: np.ndarray):
        a, b, same = self.sampler.epoch(int(epoch))
        n = self.steps_per_epoch * self.batch_size
        return a[:n], b[:n], same[:n]

    def dataset(self, start_step: int = 0, augment_images: bool = True) -> tf.data.Dataset:
        """An endless stream of batch dicts, starting at ``start_step`` (for resume)."""
        ds = self._stream(start_step, self._epoch_pairs, [tf.int64, tf.int64, tf.float32])

        def load(a, b, same):
            (za, ca), (zb, cb) = self._labels(a), self._labels(b)
            return {"image_a": self._images(a, augment_images), "image_b": self._images(b, augment_images),
                    "params_a": za, "params_b": zb, "class_a": ca, "class_b": cb,
                    "same": tf.reshape(same, (self.batch_size,))}

        return ds.map(load, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


class PKBatches(_Batches):
    """Batches of P identities x K images: image, whitened params and identity class per image."""

    def __init__(self, split: SplitData, whitening: Whitening, sampler: PKSampler):
        super().__init__(split, whitening, sampler.batch_size, sampler.steps_per_epoch)
        self.sampler = sampler
        self.images_per_step = sampler.batch_size

    def dataset(self, start_step: int = 0, augment_images: bool = True) -> tf.data.Dataset:
        """An endless stream of batch dicts, starting at ``start_step`` (for resume)."""
        ds = self._stream(start_step, lambda e: self.sampler.epoch(int(e)), [tf.int64])

        def load(idx):
            z, c = self._labels(idx)
            return {"image": self._images(idx, augment_images), "params": z, "class": c}

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
