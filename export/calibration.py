"""A bundle's verification threshold from pair scores, set at a target false-accept rate (FAR): on
held-out synthetic people at export, and on the user's own photos by `siamface calibrate`
(``evaluation.calibrate``, which embeds them through the device path).
"""
from __future__ import annotations

import math

import numpy as np

from siamface.edge_runtime import metrics
from siamface.edge_runtime.errors import SiamfaceError
from siamface.edge_runtime.identity import cosine_threshold
from siamface.edge_runtime.normalise import identity_vector
from siamface.edge_runtime.params import ParamLayout

_CHUNK = 1 << 16  # pairs scored at once: bounded memory for the ~N^2/2 pairs of a big folder
SHAPE_WEIGHTS = tuple(round(0.05 * k, 2) for k in range(11))  # the shape code's shares tried: 0 to 0.5


def every_pair(identities: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs (i, j, same) with i < j over a labelled set: every different-person pair counts,
    so the lowest FAR that can be measured is as low as the set allows."""
    identities = np.asarray(identities)
    i, j = np.triu_indices(len(identities), k=1)
    return i, j, identities[i] == identities[j]


def pair_scores(embeddings: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Cosine similarity of embeddings[i] and embeddings[j], pair by pair."""
    return np.concatenate([metrics.cosine_scores(embeddings[i[k:k + _CHUNK]], embeddings[j[k:k + _CHUNK]])
                           for k in range(0, len(i), _CHUNK)] or [np.zeros(0)])


def check_measurable(far_target: float, n_different: int) -> None:
    """Refuse a FAR below 1/n: n different-person pairs cannot measure it (one false accept is 1/n)."""
    if n_different and far_target < 1.0 / n_different:
        raise SiamfaceError(
            f"{n_different} different-person pairs cannot measure a FAR below 1/{n_different} = {1 / n_different:.2g}; "
            f"FAR {far_target:g} needs {math.ceil(1 / far_target)} or more: add photos of more people or ask for "
            f"FAR {1 / n_different:.2g} or higher")


def rate_intervals(accepted: np.ndarray, same: np.ndarray, units: tuple[np.ndarray, np.ndarray]) -> dict:
    """95 % intervals of the FAR and TAR of these decisions, from random halves of the units behind
    each pair (people or photos; metrics.half_sample_se), clipped to [0, 1]: how far the rates could
    move on another draw of as many people. None where the units are too few to tell."""
    a, b = units
    n_units = int(max(a.max(), b.max())) + 1
    out = {}
    for key, kind in (("far_interval", ~same), ("tar_interval", same)):
        def rate(kept: np.ndarray, kind=kind) -> float:
            both = kept[a] & kept[b] & kind
            return float(accepted[both].mean()) if both.any() else float("nan")

        se = metrics.half_sample_se(rate, n_units)
        bounds = metrics.normal_interval(float(accepted[kind].mean()), se, (0.0, 1.0))
        out[key] = None if bounds is None else list(bounds)
    return out


def operating_point(scores: np.ndarray, same: np.ndarray, far_target: float, clamp_far: bool = False,
                    units: tuple[np.ndarray, np.ndarray] | None = None) -> dict:
    """The threshold (cosine, within [-1, 1]) at ``far_target``, with the FAR and TAR measured at it.

    With n different-person pairs no FAR below 1/n can be measured: ``clamp_far`` sets the threshold
    at FAR 1/n instead and records ``far_target_used``, otherwise asking for less is an error. When
    no same-person pair is accepted at the FAR, the threshold sits just above every different-person
    score. A threshold outside [-1, 1] (float cosines of a collapsed model's embeddings reach a hair
    above 1) is clamped to the range, its unclamped value recorded, and FAR and TAR are measured
    at the clamped value, so the record always describes the threshold the device uses. With
    ``units`` (each pair's two people or photos) the FAR and TAR get their 95 % intervals.
    """
    scores, same = np.asarray(scores, np.float64).ravel(), np.asarray(same, bool).ravel()
    n_same, n_diff = int(same.sum()), int((~same).sum())
    if n_same == 0 or n_diff == 0:
        raise SiamfaceError(f"a threshold needs same-person and different-person pairs, got {n_same} and {n_diff}: "
                            f"use photos of two or more people, with two or more photos of some of them")
    point: dict = {"far_target": far_target}
    if not clamp_far:
        check_measurable(far_target, n_diff)
    elif far_target < 1.0 / n_diff:
        point["far_target_used"] = far_target = 1.0 / n_diff
    raw = metrics.threshold_at_far(scores, same, far_target)["threshold"]
    if not np.isfinite(raw):
        raw = float(scores[~same].max()) + 1e-6
    threshold = cosine_threshold(np.clip(raw, -1.0, 1.0), "verification threshold from pair scores")
    if threshold != raw:
        point["threshold_unclamped"] = raw
    accepted = scores >= threshold
    return {**point, "threshold": threshold, "far": float(accepted[~same].mean()), "tar": float(accepted[same].mean()),
            **(rate_intervals(accepted, same, units) if units is not None else {}),
            "false_accepts": int(accepted[~same].sum()), "true_accepts": int(accepted[same].sum()),
            "n_pairs": {"same": n_same, "different": n_diff}, "eer": metrics.eer(scores, same),
            "similarity": "cosine"}


def shortfall(point: dict) -> str | None:
    """A warning when the FAR measured at the threshold exceeds the one asked for (None otherwise):
    only a threshold clamped to 1.0 does that, when even identical-looking scores are impostors."""
    target = point.get("far_target_used", point["far_target"])
    if point["far"] <= target:
        return None
    return (f"no cosine threshold reaches FAR {target:.3g} on these pairs: at {point['threshold']:g}, "
            f"{point['false_accepts']} of {point['n_pairs']['different']} different-person pairs are still "
            f"accepted; the model does not tell these people apart")


def choose_shape_weight(params: np.ndarray, embeddings: np.ndarray, identities: np.ndarray, layout: ParamLayout,
                        weights: tuple[float, ...] = SHAPE_WEIGHTS, halves: int = 100,
                        seed: int = 0) -> tuple[float, dict]:
    """(weight, record): the share of the shape code in the identity vector (normalise.identity_vector),
    chosen on these images (validation people at export, never the held-out people the threshold and
    reports use) by ``choose_share``."""
    shape = params[:, layout.identity]
    return choose_share({w: identity_vector(embeddings, shape, w) for w in weights}, identities, halves, seed)


def choose_share(vectors: dict[float, np.ndarray], identities: np.ndarray, halves: int = 100,
                 seed: int = 0) -> tuple[float, dict]:
    """(share, record): of identity vectors made with each share of a part (share 0: without it), the
    share with the lowest equal error rate over all pairs, kept only when its gain over share 0
    exceeds twice that gain's noise; otherwise 0, so a part that carries nothing does not take a
    share that won by chance. The noise is the spread of the gain over ``halves`` random halves of
    the people (a delete-half jackknife: that spread estimates the whole set's standard error). Ties
    go to the smaller share. The record holds the EER of each share, the lowest one's share, its gain
    and the noise."""
    i, j, same = every_pair(identities)
    weights = sorted(vectors)
    scores = {w: pair_scores(vectors[w], i, j) for w in weights}
    eers = {w: metrics.eer(scores[w], same) for w in weights}
    lowest = min(weights, key=lambda w: (round(eers[w], 6), w))
    gain = eers[0.0] - eers[lowest]
    noise = _gain_noise(scores[0.0], scores[lowest], same, identities, (i, j), halves, seed) if lowest else 0.0
    weight = lowest if gain > 2 * noise else 0.0
    return float(weight), {"eer_by_weight": {f"{w:g}": eers[w] for w in weights}, "lowest": float(lowest),
                           "gain": float(gain), "gain_noise": noise,
                           "rule": "the lowest EER's share when its gain over share 0 exceeds twice its noise "
                                   f"(spread over {halves} random halves of the people), else 0"}


def _gain_noise(before: np.ndarray, after: np.ndarray, same: np.ndarray, identities: np.ndarray,
                pairs: tuple[np.ndarray, np.ndarray], halves: int, seed: int) -> float:
    """Standard error of the EER gain (``before``'s EER minus ``after``'s, pair scores of the same
    pairs) from random halves of the people (metrics.half_sample_se); infinite with fewer than 4
    people, where halves cannot hold two people each."""
    people = np.unique(identities, return_inverse=True)[1]
    change, n_people = metrics.eer_on_units(after, same, (people[pairs[0]], people[pairs[1]]), reference=before)
    return metrics.half_sample_se(change, n_people, halves, seed)  # the gain's spread: the change's, sign aside
