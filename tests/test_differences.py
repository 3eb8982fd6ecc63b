"""Intervals of a comparison (evaluation.differences): a real change stands out of its interval, no
change gives zero, and too few faces say so instead of claiming a precision they do not have."""
from __future__ import annotations

import numpy as np
import pytest

from siamface.edge_runtime import metrics
from siamface.evaluation.differences import difference_table, differences, eer_difference, nme_difference


def test_a_consistent_landmark_change_is_outside_its_interval_and_none_is_zero():
    rng = np.random.default_rng(0)
    reference = rng.uniform(0.03, 0.06, 40)                       # per-face NME as fractions, as evaluate keeps them
    worse = reference + 0.005 + rng.normal(0, 0.002, 40)
    found = nme_difference(worse, reference)
    assert found["delta"] == pytest.approx(100 * np.mean(worse - reference))
    assert 0 < found["low"] < found["delta"] < found["high"]
    assert found["se"] == pytest.approx(100 * np.std(worse - reference) / np.sqrt(40), rel=0.3)
    counts = (int(np.sum(worse < reference)), int(np.sum(worse > reference)), 40)
    assert (found["better"], found["worse"], found["faces"]) == counts
    same = nme_difference(reference, reference)
    assert (same["delta"], same["se"], same["better"], same["worse"]) == (0.0, 0.0, 0, 0)


def test_an_embedding_that_separates_people_beats_chance_beyond_its_interval():
    rng = np.random.default_rng(1)
    ids = np.repeat(np.arange(30), 4)
    i, j, same = metrics.all_pairs(ids)
    chance = rng.normal(size=i.size)
    good = chance + 4.0 * same
    units = (ids[i], ids[j])
    found = eer_difference(good, chance, same, units)
    assert found["delta"] == pytest.approx(100 * (metrics.eer(good, same) - metrics.eer(chance, same)))
    assert found["high"] < 0 and found["units"] == 30 and found["pairs"] == i.size
    assert eer_difference(chance, chance, same, units)["delta"] == 0.0


def test_the_table_names_each_model_and_says_when_faces_are_too_few():
    curves = {"ref": {"nme": np.array([0.05, 0.04, 0.06])}, "new": {"nme": np.array([0.06, 0.05, 0.05])}}
    found = differences(curves, "ref")
    assert list(found) == ["new"] and found["new"]["reference"] == "ref" and found["new"]["nme"]["se"] is None
    assert "| new | +0.33 (too few to tell) | 1 / 2 of 3 | - |" in difference_table(found)
