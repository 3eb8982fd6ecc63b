"""Pair sampler: positive rate, validity, pose preference, determinism; the tf.data pair batches."""
from __future__ import annotations

import numpy as np
import pytest

from edge_runtime.errors import SiamfaceError
from training.pairs import PairSampler


def _labels(n_ids: int = 50, per_id: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    return np.repeat(np.arange(n_ids), per_id), rng.uniform(-90, 90, n_ids * per_id)


def test_positive_rate_and_validity():
    ids, yaw = _labels()
    a, b, same = PairSampler(ids, yaw, p_same=0.4, seed=1).epoch(0, n_pairs=20000)
    assert abs(same.mean() - 0.4) < 0.015
    np.testing.assert_array_equal(ids[a] == ids[b], same.astype(bool))
    assert np.all(a != b)


def test_every_image_is_an_anchor_once_per_epoch():
    ids, yaw = _labels()
    a, _, _ = PairSampler(ids, yaw).epoch(3)
    np.testing.assert_array_equal(np.sort(a), np.arange(len(ids)))


def test_deterministic_for_seed_and_epoch():
    ids, yaw = _labels()
    s1, s2 = PairSampler(ids, yaw, seed=7), PairSampler(ids, yaw, seed=7)
    for x, y in zip(s1.epoch(2), s2.epoch(2)):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(s1.epoch(2)[1], s1.epoch(3)[1])


def test_positives_prefer_different_poses():
    ids, yaw = _labels()
    a, b, same = PairSampler(ids, yaw, p_same=1.0, seed=0, pose_preference=2.0).epoch(0, n_pairs=5000)
    _, bu, _ = PairSampler(ids, yaw, p_same=1.0, seed=0, pose_preference=0.0).epoch(0, n_pairs=5000)
    assert np.abs(yaw[a] - yaw[b]).mean() > np.abs(yaw[a] - yaw[bu]).mean() + 10


def test_needs_two_identities():
    with pytest.raises(SiamfaceError, match="at least two identities"):
        PairSampler(np.zeros(5, int), np.zeros(5))
