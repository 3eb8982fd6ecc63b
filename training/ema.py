"""Exponential moving average of the encoder's weights (Polyak averaging).

A short CPU run ends while the learning rate still makes the weights jitter from step to step;
their running average is a smoother, better model (fine details such as the identity shape gain
most). Training updates the average after every step; validation, best-model selection and the
saved checkpoint use it, and training then goes on from the raw weights.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import tensorflow as tf

from edge_runtime.errors import SiamfaceError


class WeightAverage:
    """Shadow copies of ``variables``; decay min(momentum, (1 + n) / (10 + n)) after n updates,
    so the first steps are not averaged with the random initialisation for long."""

    def __init__(self, variables: list[tf.Variable], momentum: float):
        if not 0.0 < momentum < 1.0:
            raise SiamfaceError(f"ema must be a momentum in (0, 1) (or 0 for no averaging), not {momentum}")
        self.momentum = momentum
        self.weights = list(variables)
        self.shadow = [tf.Variable(v, trainable=False, name=f"ema_{i}") for i, v in enumerate(self.weights)]
        self.updates = tf.Variable(0, dtype=tf.int64, trainable=False, name="ema_updates")

    @property
    def trackable(self) -> tf.train.Checkpoint:
        """What a checkpoint must hold to resume the average (the shadows and the update count)."""
        return tf.train.Checkpoint(shadow=self.shadow, updates=self.updates)

    def update(self) -> None:
        """Fold the current weights into the average (call inside the train step)."""
        n = tf.cast(self.updates, tf.float32)
        decay = tf.minimum(self.momentum, (1.0 + n) / (10.0 + n))
        for shadow, var in zip(self.shadow, self.weights):
            shadow.assign(decay * shadow + (1.0 - decay) * tf.cast(var, shadow.dtype))
        self.updates.assign_add(1)

    @contextmanager
    def swapped(self) -> Iterator[None]:
        """Inside the block the variables hold the averaged weights; after it, the raw ones again."""
        raw = [tf.identity(v) for v in self.weights]
        for var, shadow in zip(self.weights, self.shadow):
            var.assign(shadow)
        try:
            yield
        finally:
            for var, value in zip(self.weights, raw):
                var.assign(value)
