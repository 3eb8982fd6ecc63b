"""Intervals of a comparison (evaluation.differences): a real change stands out of its interval, no
change gives zero, and too few faces say so instead of claiming a precision they do not have."""
from __future__ import annotations

import numpy as np
import pytest

from siamface.edge_runtime import metrics
from siamface.evaluation.differences import (difference_table, differences, eer_difference, interval_table, intervals,
                                             nme_difference)


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


def test_a_figure_gets_its_interval_clipped_to_percentages():
    rng = np.random.default_rng(2)
    nme = rng.uniform(0.02, 0.08, 50)
    ids = np.repeat(np.arange(12), 3)
    i, j, same = metrics.all_pairs(ids)
    scores = rng.normal(size=i.size) + 1.0 * same
    found = intervals({"nme": nme, "scores": scores, "same": same, "units": (ids[i], ids[j])})
    assert found["nme"]["value"] == pytest.approx(100 * nme.mean()) and found["nme"]["low"] < 100 * nme.mean()
    assert found["nme"]["se"] == pytest.approx(100 * np.std(nme) / np.sqrt(50), rel=0.3)
    assert found["eer_embedding"]["value"] == pytest.approx(100 * metrics.eer(scores, same))
    assert 0.0 <= found["eer_embedding"]["low"] < found["eer_embedding"]["high"] <= 100.0
    row = f"| m | {100 * nme.mean():.2f} ({found['nme']['low']:.2f} to {found['nme']['high']:.2f}) |"
    assert interval_table({"m": found}).splitlines()[2].startswith(row)


def test_with_yaw_the_figures_are_the_pose_balanced_headline():
    """Where a set has yaw, the interval is around the NME the reports headline (mean of the yaw-bin means)."""
    rng = np.random.default_rng(3)
    nme, yaw = rng.uniform(0.02, 0.08, 90), rng.uniform(-90, 90, 90)
    worse = nme + 0.01 * (np.abs(yaw) > 60)                       # worse on profiles only
    assert intervals({"nme": nme, "yaw": yaw})["nme"]["value"] == pytest.approx(metrics.nme_by_yaw(nme, yaw)["mean"])
    change = nme_difference(worse, nme, yaw)
    headline = metrics.nme_by_yaw(worse, yaw)["mean"] - metrics.nme_by_yaw(nme, yaw)["mean"]
    assert change["delta"] == pytest.approx(headline)
    assert change["delta"] == pytest.approx(1.0 / 3) and change["worse"] == int(np.sum(np.abs(yaw) > 60))
