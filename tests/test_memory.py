"""The cross-batch memory's ring buffer: what it holds after batches, and in what order it forgets."""
from __future__ import annotations

import numpy as np

from siamface import training  # noqa: F401  (selects tf-keras before TensorFlow loads)
import tensorflow as tf

from siamface.training.memory import EmbeddingMemory


def test_memory_keeps_the_latest_unit_embeddings_and_overwrites_the_oldest():
    memory = EmbeddingMemory(size=5, dim=2)
    embeddings, labels = memory.read()
    assert (labels.numpy() == -1).all() and (embeddings.numpy() == 0).all()
    memory.write(tf.constant([[3.0, 4.0], [0.0, 2.0], [1.0, 0.0]]), tf.constant([10, 11, 12]))
    embeddings, labels = memory.read()
    assert labels.numpy().tolist() == [10, 11, 12, -1, -1]
    np.testing.assert_allclose(embeddings.numpy()[:3], [[0.6, 0.8], [0.0, 1.0], [1.0, 0.0]], atol=1e-7)
    memory.write(tf.constant([[0.0, -1.0]] * 3), tf.constant([20, 21, 22]))   # wraps: slots 3, 4, 0
    embeddings, labels = memory.read()
    assert labels.numpy().tolist() == [22, 11, 12, 20, 21]
    np.testing.assert_allclose(embeddings.numpy()[[0, 3, 4]], [[0.0, -1.0]] * 3)
    np.testing.assert_allclose(embeddings.numpy()[1], [0.0, 1.0])
