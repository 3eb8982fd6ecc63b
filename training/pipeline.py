"""tf.data input pipelines: Siamese pair batches for training, plain batches for evaluation.

Pairs are drawn per epoch by ``PairSampler``; images are gathered a whole batch at a time from
the memory-mapped shards (one numpy call per batch, none per sample), then normalised and
photometrically augmented in the graph, and prefetched.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from edge_runtime.params import Whitening
from training.data.dataset import SplitData
from training.pairs import PairSampler

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


class PairBatches:
    """Batches of (image_a, image_b) with whitened params, identity classes and the same flag."""

    def __init__(self, split: SplitData, whitening: Whitening, sampler: PairSampler, batch_size: int):
        self.split, self.whitening, self.sampler, self.batch_size = split, whitening, sampler, batch_size
        self.params_z = whitening.whiten(split.params)
        _, self.classes = np.unique(split.identity, return_inverse=True)
        self.n_classes = int(self.classes.max()) + 1
        self.steps_per_epoch = max(1, len(split) // batch_size)

    def _epoch_pairs(self, epoch: np.ndarray):
        a, b, same = self.sampler.epoch(int(epoch))
        n = self.steps_per_epoch * self.batch_size
        return a[:n], b[:n], same[:n]

    def _gather(self, a: np.ndarray, b: np.ndarray):
        s = self.split
        return (s.images(a), s.images(b), self.params_z[a], self.params_z[b],
                self.classes[a].astype(np.int32), self.classes[b].astype(np.int32))

    def dataset(self, start_step: int = 0, augment_images: bool = True) -> tf.data.Dataset:
        """An endless stream of batch dicts, starting at ``start_step`` (for resume)."""
        size, p = self.split.image_size, self.params_z.shape[1]
        epochs = tf.data.Dataset.range(start_step // self.steps_per_epoch, 2**31)
        pairs = epochs.map(lambda e: tf.numpy_function(self._epoch_pairs, [e], [tf.int64, tf.int64, tf.float32]))
        ds = pairs.flat_map(lambda a, b, s: tf.data.Dataset.from_tensor_slices((a, b, s)))
        ds = ds.batch(self.batch_size, drop_remainder=True).skip(start_step % self.steps_per_epoch)

        def load(a, b, same):
            ia, ib, za, zb, ca, cb = tf.numpy_function(
                self._gather, [a, b], [tf.uint8, tf.uint8, tf.float32, tf.float32, tf.int32, tf.int32])
            ia.set_shape((self.batch_size, size, size, 3))
            ib.set_shape((self.batch_size, size, size, 3))
            if augment_images:
                ia, ib = augment(ia), augment(ib)
            za.set_shape((self.batch_size, p))
            zb.set_shape((self.batch_size, p))
            return {"image_a": normalise(ia), "image_b": normalise(ib), "params_a": za, "params_b": zb,
                    "class_a": tf.reshape(ca, (self.batch_size,)), "class_b": tf.reshape(cb, (self.batch_size,)),
                    "same": tf.reshape(same, (self.batch_size,))}

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
