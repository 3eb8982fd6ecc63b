"""Cross-batch memory (Wang et al. 2020, "Cross-Batch Memory for Embedding Learning"): the last
steps' embeddings and identities, so a contrastive loss sees thousands of negatives where a
batch of 16 people holds 60 per photo.

The entries are constants to the loss (no gradient reaches earlier batches); on a small learning
rate step the encoder moves little, so an embedding written a few dozen steps ago is close to
what the encoder would give now. Each replica keeps its own memory of its own batches; the memory
is not checkpointed: a resumed run starts it empty and refills it in ``size / batch`` steps.
"""
from __future__ import annotations

import tensorflow as tf


class EmbeddingMemory:
    """A ring buffer of ``size`` unit embeddings with their identity labels (-1: empty slot)."""

    def __init__(self, size: int, dim: int):
        local = dict(trainable=False, synchronization=tf.VariableSynchronization.ON_READ,
                     aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        self.size = int(size)
        self.embeddings = tf.Variable(tf.zeros((self.size, dim), tf.float32), name="memory_embeddings", **local)
        self.labels = tf.Variable(tf.fill((self.size,), tf.constant(-1, tf.int64)), name="memory_labels", **local)
        self.next = tf.Variable(tf.constant(0, tf.int64), name="memory_next", **local)

    def read(self) -> tuple[tf.Tensor, tf.Tensor]:
        """(size, dim) embeddings and (size,) labels, -1 where nothing was written yet."""
        return tf.identity(self.embeddings), tf.identity(self.labels)

    def write(self, embedding: tf.Tensor, labels: tf.Tensor) -> None:
        """Store a batch (its unit embeddings, without gradient) over the oldest entries."""
        embedding = tf.stop_gradient(tf.math.l2_normalize(tf.cast(embedding, tf.float32), -1))
        labels = tf.cast(tf.reshape(labels, [-1]), tf.int64)
        n = tf.shape(labels, out_type=tf.int64)[0]
        slots = (self.next + tf.range(n, dtype=tf.int64)) % self.size
        self.embeddings.scatter_nd_update(slots[:, None], embedding)
        self.labels.scatter_nd_update(slots[:, None], labels)
        self.next.assign((self.next + n) % self.size)
