"""Pair and P x K samplers: validity, positive rate, pose preference, determinism, short identities."""
from __future__ import annotations

import numpy as np
import pytest

from siamface.edge_runtime.errors import SiamfaceError
from siamface.training.pairs import PairSampler, PKSampler


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


# --- P x K batches ------------------------------------------------------------------------------

def _batches(sampler: PKSampler, epoch: int = 0) -> np.ndarray:
    """(steps, P, K) from the photo-major (steps, K, P) stream."""
    steps, p, k = sampler.steps_per_epoch, sampler.n_identities, sampler.n_images
    return sampler.epoch(epoch).reshape(steps, k, p).transpose(0, 2, 1)


def test_pk_batches_hold_p_distinct_identities_with_k_distinct_photos():
    ids, yaw = _labels(n_ids=50, per_id=8)
    sampler = PKSampler(ids, yaw, n_identities=16, n_images=4, seed=3)
    batches = _batches(sampler)
    assert sampler.batch_size == 64 and sampler.steps_per_epoch == 3 and batches.shape == (3, 16, 4)
    people = ids[batches]
    assert np.all(people == people[..., :1])                      # each row of K: one person
    assert all(len(np.unique(b[:, 0])) == 16 for b in people)     # P different people per batch
    assert len(np.unique(people[..., 0])) == 48                   # nobody twice in an epoch
    assert all(len(np.unique(row)) == 4 for b in batches for row in b)  # K different photos
    first = sampler.epoch(0)[:64]                                  # photo-major: P people, then P again
    np.testing.assert_array_equal(ids[first[:16]], ids[first[16:32]])
    assert len(np.unique(ids[first[:16]])) == 16


def test_pk_sampler_is_deterministic_per_seed_and_epoch():
    ids, yaw = _labels()
    a, b = PKSampler(ids, yaw, 8, 4, seed=7), PKSampler(ids, yaw, 8, 4, seed=7)
    np.testing.assert_array_equal(a.epoch(2), b.epoch(2))
    assert not np.array_equal(a.epoch(2), a.epoch(3))
    assert not np.array_equal(a.epoch(2), PKSampler(ids, yaw, 8, 4, seed=8).epoch(2))


def test_pk_photos_spread_in_pose():
    ids, yaw = _labels(n_ids=200, per_id=10, seed=1)

    def spread(preference):
        chosen = yaw[_batches(PKSampler(ids, yaw, 20, 3, seed=0, pose_preference=preference))]
        return (chosen.max(-1) - chosen.min(-1)).mean()

    assert spread(2.0) > spread(0.0) + 15


def test_pk_short_identities_repeat_and_singletons_stay_out():
    # person 0: 1 photo (no positive), person 1: 2 photos, persons 2-5: 5 photos.
    ids = np.array([0, 1, 1] + [p for p in range(2, 6) for _ in range(5)])
    yaw = np.full(len(ids), np.nan)                                # unknown poses count as frontal
    sampler = PKSampler(ids, yaw, n_identities=5, n_images=3, seed=0)
    assert sampler.short_identities == 1 and sampler.steps_per_epoch == 1
    batch = _batches(sampler)[0]
    assert 0 not in ids[batch]
    short = batch[ids[batch[:, 0]] == 1][0]
    assert sorted(set(short)) == [1, 2] and len(short) == 3        # both photos, one of them twice
    with pytest.raises(SiamfaceError, match="P = 6 identities with two or more photos, the data has 5"):
        PKSampler(ids, yaw, n_identities=6, n_images=3)
    with pytest.raises(SiamfaceError, match="K >= 2"):
        PKSampler(ids, yaw, n_identities=4, n_images=1)


def test_pair_sampler_accepts_unknown_poses():
    ids, yaw = _labels()
    yaw[::3] = np.nan
    a, b, same = PairSampler(ids, yaw, p_same=1.0, seed=0).epoch(0, n_pairs=500)
    assert np.all(ids[a] == ids[b]) and np.all(a != b)
