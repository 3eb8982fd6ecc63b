"""The weight average: its update rule by hand and the swap (training with it: test_train.py)."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from edge_runtime.errors import SiamfaceError
from training.ema import WeightAverage


def test_update_follows_the_warmed_up_decay_by_hand():
    w = tf.Variable([0.0, 2.0])
    avg = WeightAverage([w], momentum=0.5)
    expected = np.array([0.0, 2.0])
    for n, value in enumerate(([4.0, 2.0], [8.0, -2.0], [0.0, 0.0])):
        w.assign(value)
        avg.update()
        decay = min(0.5, (1 + n) / (10 + n))      # 0.1, 2/11, 0.25
        expected = decay * expected + (1 - decay) * np.array(value)
        np.testing.assert_allclose(avg.shadow[0].numpy(), expected, rtol=1e-6)
    assert int(avg.updates.numpy()) == 3


def test_swapped_holds_the_average_inside_and_the_raw_weights_after():
    w = tf.Variable([1.0, 1.0])
    avg = WeightAverage([w], momentum=0.9)
    w.assign([5.0, -5.0])
    avg.update()                                   # decay 0.1: 0.1 * 1 + 0.9 * 5
    with avg.swapped():
        np.testing.assert_allclose(w.numpy(), [4.6, -4.4], rtol=1e-6)
    np.testing.assert_allclose(w.numpy(), [5.0, -5.0])
    with pytest.raises(SiamfaceError, match="momentum"):
        WeightAverage([w], momentum=1.0)
