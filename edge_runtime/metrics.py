"""Metrics for landmarks, pose, 3D shape and identity, in plain numpy.

Protocols follow docs/REFERENCE.md section 4: AFLW2000-3D 68-point NME with pose-balanced
yaw bins, pose MAE in degrees, LFW-style verification (ROC, EER, TAR@FAR, 10-fold accuracy),
rank-1 identification, and a pose-invariance ratio for shape codes. Numpy only and in the
base layer, so training's validation, export's parity and threshold, calibration on a device and
the evaluation reports all use one definition without TensorFlow.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .errors import SiamfaceError
from .normalise import l2_normalize

YAW_BINS = ("0-30", "30-60", "60-90")
YAW_EDGES = (30.0, 60.0)


# ----------------------------------------------------------------------------- landmarks

def nme(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-image NME (fraction, not percent) of (N, 68, 2+) landmarks, AFLW2000-3D protocol.

    Mean Euclidean error over the points in x, y only, divided by sqrt(w * h) of the bounding
    box of the ground-truth points; the report multiplies by 100.
    """
    pred = np.asarray(pred, np.float64)[..., :2]
    gt = np.asarray(gt, np.float64)[..., :2]
    if pred.shape != gt.shape or pred.ndim != 3:
        raise ValueError(f"nme needs matching (N, P, 2+) arrays, got {pred.shape} and {gt.shape}")
    wh = gt.max(axis=1) - gt.min(axis=1)
    norm = np.sqrt(wh[:, 0] * wh[:, 1])
    return np.linalg.norm(pred - gt, axis=2).mean(axis=1) / norm


LANDMARK_GROUPS = {"jaw": slice(0, 17), "brows": slice(17, 27), "nose": slice(27, 36), "eyes": slice(36, 48),
                   "mouth": slice(48, 68)}


def landmark_groups(pred: np.ndarray, gt: np.ndarray) -> dict[str, dict[str, float]]:
    """Per iBUG group (jaw, brows, nose, eyes, mouth) of (N, 68, 2+) landmarks, in percent of
    sqrt(w * h) of each image's ground-truth box (``nme``'s normaliser): ``nme`` (the mean
    Euclidean error over the group's points and the images) and the mean signed offset
    ``dx``, ``dy`` (prediction minus truth; +y is down). An offset near the group's NME means
    the error is systematic: a convention the model does not share (brows drawn on another
    edge, a 3D jaw against a 2D one), not noise."""
    pred = np.asarray(pred, np.float64)[..., :2]
    gt = np.asarray(gt, np.float64)[..., :2]
    if pred.shape != gt.shape or pred.shape[1:] != (68, 2):
        raise ValueError(f"landmark groups need matching (N, 68, 2+) arrays, got {pred.shape} and {gt.shape}")
    wh = gt.max(axis=1) - gt.min(axis=1)
    diff = 100.0 * (pred - gt) / np.sqrt(wh[:, 0] * wh[:, 1])[:, None, None]
    return {name: {"nme": float(np.linalg.norm(diff[:, s], axis=-1).mean()),
                   "dx": float(diff[:, s, 0].mean()), "dy": float(diff[:, s, 1].mean())}
            for name, s in LANDMARK_GROUPS.items()}


def yaw_bin(yaw_deg: np.ndarray | float) -> np.ndarray:
    """Yaw bin index by |yaw|: 0 for [0, 30], 1 for (30, 60], 2 for (60, inf) degrees."""
    return np.searchsorted(YAW_EDGES, np.abs(np.asarray(yaw_deg, np.float64)), side="left")


def nme_by_yaw(per_image: np.ndarray, yaw_deg: np.ndarray) -> dict[str, float]:
    """Per-bin NME means in percent (NaN when empty), counts ``n_<bin>``, and two headlines.

    ``mean`` is the mean of the non-empty bin means (the pose-balanced number papers report);
    ``mean_all`` is the plain mean over images.
    """
    errors = 100.0 * np.asarray(per_image, np.float64)
    bins = yaw_bin(yaw_deg)
    out: dict[str, float] = {}
    for b, name in enumerate(YAW_BINS):
        sel = errors[bins == b]
        out[name] = float(sel.mean()) if sel.size else float("nan")
        out[f"n_{name}"] = int(sel.size)
    bin_means = [out[name] for name in YAW_BINS if out[f"n_{name}"]]
    out["mean"] = float(np.mean(bin_means)) if bin_means else float("nan")
    out["mean_all"] = float(errors.mean()) if errors.size else float("nan")
    return out


def ced(per_image: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Cumulative error distribution: fraction of images with error <= each threshold."""
    errors = np.sort(np.asarray(per_image, np.float64))
    counts = np.searchsorted(errors, np.asarray(thresholds, np.float64), side="right")
    return counts / max(errors.size, 1)


# ----------------------------------------------------------------------------- pose

def wrap_degrees(angle: np.ndarray) -> np.ndarray:
    """Angles wrapped into [-180, 180), so 179 - (-179) is -2, not 358."""
    return (np.asarray(angle, np.float64) + 180.0) % 360.0 - 180.0


def pose_mae(pred_deg: np.ndarray, gt_deg: np.ndarray) -> dict[str, float]:
    """Mean absolute (wrapped) error of (N, 3) yaw, pitch, roll in degrees, and their mean."""
    diff = wrap_degrees(np.asarray(pred_deg, np.float64) - np.asarray(gt_deg, np.float64))
    err = np.abs(diff).reshape(-1, 3).mean(axis=0)
    return {"yaw": float(err[0]), "pitch": float(err[1]), "roll": float(err[2]),
            "mean": float(err.mean())}


# ----------------------------------------------------------------------------- 3D shape

def rigid_align(src: np.ndarray, dst: np.ndarray, with_scale: bool = False) -> np.ndarray:
    """``src`` (..., V, 3) moved onto ``dst`` by the least-squares rotation and translation.

    Kabsch / Umeyama with the reflection fix; ``with_scale`` adds a uniform scale (a
    similarity). Shape errors are measured after this so the pose estimate does not count.
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(axis=-2, keepdims=True), dst.mean(axis=-2, keepdims=True)
    x, y = src - mu_s, dst - mu_d
    u, sig, vt = np.linalg.svd(np.swapaxes(y, -1, -2) @ x)
    d = np.ones(sig.shape)
    d[..., 2] = np.where(np.linalg.det(u @ vt) < 0, -1.0, 1.0)
    rot = (u * d[..., None, :]) @ vt
    scale = np.ones(sig.shape[:-1] + (1, 1))
    if with_scale:
        var = (x ** 2).sum(axis=(-1, -2))
        scale = ((sig * d).sum(axis=-1) / var)[..., None, None]
    return scale * (x @ np.swapaxes(rot, -1, -2)) + mu_d


def shape_error_mm(pred: np.ndarray, gt: np.ndarray, unit_mm: float = 10.0,
                   with_scale: bool = False) -> np.ndarray:
    """Mean per-vertex distance (mm) after rigidly aligning ``pred`` onto ``gt``.

    (V, 3) gives a 0-d array, (N, V, 3) gives (N,). The face model is in centimetres,
    hence ``unit_mm=10``.
    """
    aligned = rigid_align(pred, gt, with_scale)
    return unit_mm * np.linalg.norm(aligned - np.asarray(gt, np.float64), axis=-1).mean(axis=-1)


# ----------------------------------------------------------------------------- verification

def cosine_scores(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two (N, D) embedding arrays -> (N,)."""
    return (l2_normalize(a) * l2_normalize(b)).sum(axis=-1)


def _check_pairs(scores: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, np.float64).ravel()
    same = np.asarray(same).astype(bool).ravel()
    n_same = int(same.sum())
    if scores.shape != same.shape or n_same == 0 or n_same == same.size:
        raise SiamfaceError(
            f"verification needs both same and different pairs ({n_same} same of {same.size},"
            f" {scores.size} scores): evaluate on a set with at least two identities")
    return scores, same


def roc_curve(scores: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(far, tar, thresholds), a pair being accepted when ``score >= threshold``.

    Higher score = more likely the same person. The first point is threshold +inf
    (FAR = TAR = 0), then one point per distinct score in decreasing order, the last
    accepting everything (FAR = TAR = 1). Tied scores form one point.
    """
    scores, same = _check_pairs(scores, same)
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], same[order]
    last_of_group = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
    tp = np.cumsum(y)[last_of_group]
    fp = np.cumsum(~y)[last_of_group]
    far = np.r_[0.0, fp / fp[-1]]
    tar = np.r_[0.0, tp / tp[-1]]
    return far, tar, np.r_[np.inf, s[last_of_group]]


def roc_auc(scores: np.ndarray, same: np.ndarray) -> float:
    """Area under the ROC curve (ties count one half, as in the Mann-Whitney statistic)."""
    far, tar, _ = roc_curve(scores, same)
    return float(np.trapezoid(tar, far))


def eer(scores: np.ndarray, same: np.ndarray) -> float:
    """Equal error rate: where FAR = FRR (1 - TAR), linearly interpolated between ROC points."""
    far, tar, _ = roc_curve(scores, same)
    gap = far - (1.0 - tar)  # rises from -1 to +1 along the curve
    i = int(np.argmax(gap >= 0))
    if gap[i] == 0:
        return float(far[i])
    a = -gap[i - 1] / (gap[i] - gap[i - 1])
    return float(far[i - 1] + a * (far[i] - far[i - 1]))


def tar_at_far(scores: np.ndarray, same: np.ndarray, far: float) -> float:
    """Largest TAR over the ROC points whose FAR <= ``far`` (no interpolation).

    Only observed thresholds count, so with fewer than 1 / ``far`` different pairs this is
    the TAR at FAR = 0 (a pessimistic reading, never an extrapolation).
    """
    return threshold_at_far(scores, same, far)["tar"]


def threshold_at_far(scores: np.ndarray, same: np.ndarray, far: float) -> dict[str, float]:
    """The operating point for a target FAR: threshold (accept ``score >= threshold``), its
    measured FAR and TAR; the ROC point with the largest TAR whose FAR <= ``far``."""
    fars, tars, thresholds = roc_curve(scores, same)
    ok = np.flatnonzero(fars <= far)
    i = ok[np.argmax(tars[ok])]
    return {"threshold": float(thresholds[i]), "far": float(fars[i]), "tar": float(tars[i])}


def best_threshold(scores: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """(threshold, accuracy) maximising accuracy of ``score >= threshold``.

    Candidates are -inf, the midpoints between consecutive distinct scores, and +inf;
    on ties the lowest threshold wins.
    """
    scores, same = np.asarray(scores, np.float64).ravel(), np.asarray(same).astype(bool).ravel()
    u = np.unique(scores)
    cand = np.r_[-np.inf, (u[:-1] + u[1:]) / 2.0, np.inf]
    pos, neg = np.sort(scores[same]), np.sort(scores[~same])
    correct = pos.size - np.searchsorted(pos, cand) + np.searchsorted(neg, cand)
    i = int(np.argmax(correct))
    return float(cand[i]), float(correct[i] / scores.size)


def kfold_accuracy(scores: np.ndarray, same: np.ndarray, k: int = 10) -> tuple[float, float]:
    """LFW-style (mean, std) accuracy: ``best_threshold`` on k - 1 folds, scored on the k-th.

    Folds are contiguous slices in the given order (``np.array_split``), as LFW's ten
    sets; std is the population std over folds (numpy's default, as the LFW scripts).
    """
    scores, same = _check_pairs(scores, same)
    if scores.size < k:
        raise SiamfaceError(f"{k}-fold verification accuracy needs at least {k} pairs, got {scores.size}: "
                            f"evaluate on more images or pairs")
    folds = np.array_split(np.arange(scores.size), k)
    accs = []
    for test in folds:
        train = np.setdiff1d(np.arange(scores.size), test)
        thr, _ = best_threshold(scores[train], same[train])
        accs.append(np.mean((scores[test] >= thr) == same[test]))
    return float(np.mean(accs)), float(np.std(accs))


def verification_report(scores: np.ndarray, same: np.ndarray, k: int = 10) -> dict[str, float]:
    """Every verification number the report prints, from one set of pair scores."""
    scores, same = _check_pairs(scores, same)
    acc_mean, acc_std = kfold_accuracy(scores, same, k)
    thr, acc = best_threshold(scores, same)
    return {
        "n_same": int(same.sum()), "n_diff": int((~same).sum()),
        "auc": roc_auc(scores, same), "eer": eer(scores, same),
        "tar_at_far_1e-2": tar_at_far(scores, same, 1e-2),
        "tar_at_far_1e-3": tar_at_far(scores, same, 1e-3),
        "acc_mean": acc_mean, "acc_std": acc_std,
        "best_threshold": thr, "best_accuracy": acc,
        "best_threshold_far": float(np.mean(scores[~same] >= thr)),
    }


# ----------------------------------------------------------------------------- identification

def topk_accuracy(gallery: np.ndarray, gallery_labels: np.ndarray, probes: np.ndarray,
                  probe_labels: np.ndarray, k: int = 1) -> float:
    """Fraction of probes whose identity is among the k most similar gallery identities.

    Cosine similarity (embeddings need not be normalised); an identity with several gallery
    entries scores its best one. Ties count against the probe; a probe whose identity is not
    enrolled is a miss.
    """
    labels, idx = np.unique(np.asarray(gallery_labels), return_inverse=True)
    probe_labels = np.asarray(probe_labels)
    sim = l2_normalize(probes) @ l2_normalize(gallery).T
    per_id = np.full((sim.shape[0], labels.size), -np.inf)
    for c in range(labels.size):
        per_id[:, c] = sim[:, idx == c].max(axis=1)
    pos = np.searchsorted(labels, probe_labels)
    enrolled = (pos < labels.size) & (labels[np.minimum(pos, labels.size - 1)] == probe_labels)
    true = per_id[np.arange(per_id.shape[0]), np.minimum(pos, labels.size - 1)]
    rank = (per_id >= true[:, None]).sum(axis=1) - 1
    return float(np.mean(enrolled & (rank < k)))


def rank1(gallery: np.ndarray, gallery_labels: np.ndarray, probes: np.ndarray,
          probe_labels: np.ndarray) -> float:
    """Rank-1 identification rate (``topk_accuracy`` with k = 1)."""
    return topk_accuracy(gallery, gallery_labels, probes, probe_labels, 1)


def template_scores(codes: np.ndarray, identities: np.ndarray, enrolled: int = 4, max_people: int = 1000
                    ) -> tuple[np.ndarray, np.ndarray] | None:
    """(scores (probes, people), own column per probe): every photo as a probe against every person's
    template as a gallery holds it (``identity.Gallery``: the normalised mean of unit codes), each
    template of ``enrolled`` photos; the probe's own person's from their other photos, so a probe is
    never its own template. People with at most ``enrolled`` photos are left out, and beyond
    ``max_people`` an evenly spaced choice of them is kept (the scores grow as photos x people);
    None without two."""
    ids = np.asarray(identities)
    unit = l2_normalize(codes)
    people, counts = np.unique(ids, return_counts=True)
    people = people[counts > enrolled]
    if len(people) < 2:
        return None
    if len(people) > max_people:
        people = people[np.linspace(0, len(people) - 1, max_people).astype(int)]
    rows = [np.flatnonzero(ids == p) for p in people]
    templates = l2_normalize(np.stack([unit[r[:enrolled]].mean(axis=0) for r in rows]))
    probes = np.concatenate(rows)
    own = np.repeat(np.arange(len(people)), [len(r) for r in rows])
    scores = unit[probes] @ templates.T
    for k, (probe, person) in enumerate(zip(probes, own)):  # leave the probe out of its own template
        others = rows[person][rows[person] != probe][:enrolled]
        scores[k, person] = unit[probe] @ l2_normalize(unit[others].mean(axis=0))
    return scores, own


def template_report(codes: np.ndarray, identities: np.ndarray, enrolled: int = 4, max_people: int = 1000
                    ) -> dict | None:
    """Verification and rank-1 identification against ``enrolled``-photo templates (``template_scores``):
    what `siamface identify` does with a gallery of such people; None without two such people."""
    found = template_scores(codes, identities, enrolled, max_people)
    if found is None:
        return None
    scores, own = found
    same = own[:, None] == np.arange(scores.shape[1])[None, :]
    return {**verification_report(scores.ravel(), same.ravel()), "enrolled": enrolled,
            "people": int(scores.shape[1]), "rank1": float(np.mean(scores.argmax(axis=1) == own))}


# ----------------------------------------------------------------------------- pose invariance

def pose_invariance(codes: np.ndarray, identities: np.ndarray,
                    yaw_deg: np.ndarray) -> dict[str, float]:
    """How much a shape code moves with pose compared with how much it moves between people.

    With m_c the mean code of identity c over all its images and g the mean of the m_c:
    - intra_c = sqrt(mean over c's images of ||x - m_c||^2); ``intra`` is its mean over the
      identities with at least two images;
    - ``intra_<bin>``: the same RMS restricted to c's images in that yaw bin, averaged over
      those identities that have images there (NaN when none): which poses drift most;
    - ``inter`` = sqrt(mean over identities of ||m_c - g||^2);
    - ``ratio`` = intra / inter: lower means more pose-invariant and more discriminative.
    """
    codes = np.asarray(codes, np.float64).reshape(len(codes), -1)
    identities, bins = np.asarray(identities), yaw_bin(yaw_deg)
    labels = np.unique(identities)
    if labels.size < 2:
        raise SiamfaceError("pose invariance needs codes of at least two identities: "
                            "evaluate on a set with several people")
    means = np.stack([codes[identities == c].mean(axis=0) for c in labels])
    sq = ((codes - means[np.searchsorted(labels, identities)]) ** 2).sum(axis=1)
    intra = [np.sqrt(sq[identities == c].mean()) for c in labels if (identities == c).sum() > 1]
    out = {"intra": float(np.mean(intra)) if intra else float("nan")}
    for b, name in enumerate(YAW_BINS):
        per = [np.sqrt(sq[(identities == c) & (bins == b)].mean()) for c in labels
               if (identities == c).sum() > 1 and np.any((identities == c) & (bins == b))]
        out[f"intra_{name}"] = float(np.mean(per)) if per else float("nan")
    out["inter"] = float(np.sqrt(((means - means.mean(axis=0)) ** 2).sum(axis=1).mean()))
    out["ratio"] = out["intra"] / out["inter"] if out["inter"] > 0 else float("inf")
    out["n_identities"] = int(labels.size)
    return out


def far_by_distance(different: np.ndarray, distance: np.ndarray, far: float = 0.1) -> dict[str, float]:
    """What a code tells people apart by: the scores of different-person pairs and a true difference
    between each pair's two people (e.g. of face shape); at the threshold that accepts ``far`` of
    them, the share accepted in the nearest and in the farthest quarter of ``distance``. A code that
    uses that difference accepts the nearest quarter far more often than the farthest; one that
    ignores it, alike."""
    s, d = np.asarray(different, np.float64), np.asarray(distance, np.float64)
    threshold = np.quantile(s, 1.0 - far, method="higher")   # accepts (about) ``far`` of them
    near_cut, far_cut = np.quantile(d, [0.25, 0.75])
    return {"far": far, "nearest_quarter": float(np.mean(s[d <= near_cut] >= threshold)),
            "farthest_quarter": float(np.mean(s[d >= far_cut] >= threshold)), "n_diff": int(d.size)}


# ----------------------------------------------------------------------------- pairs

def all_pairs(identities: np.ndarray, max_pairs: int | None = None,
              rng: np.random.Generator | int | None = None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Verification pairs (i, j, same) with i < j over a labelled set, shuffled.

    Every same-identity pair (or a sample of ``max_pairs // 2`` of them) and as many distinct
    different-identity pairs sampled uniformly (fewer if the set has fewer). The order is
    shuffled so contiguous k-fold folds mix both kinds. ``rng`` is a Generator or a seed;
    None means seed 0, so the pairs are deterministic.
    """
    ids = np.asarray(identities)
    rng = np.random.default_rng(0 if rng is None else rng)
    n = ids.size
    same_i, same_j = [], []
    for c in np.unique(ids):
        members = np.flatnonzero(ids == c)
        a, b = np.triu_indices(members.size, k=1)
        same_i.append(members[a])
        same_j.append(members[b])
    si, sj = np.concatenate(same_i), np.concatenate(same_j)
    n_same_all = si.size
    if max_pairs is not None and si.size > max_pairs // 2:
        keep = np.sort(rng.choice(si.size, max_pairs // 2, replace=False))
        si, sj = si[keep], sj[keep]
    total = n * (n - 1) // 2
    n_diff = min(si.size, total - n_same_all)
    # Drawing n_diff + n_same_all distinct pairs guarantees n_diff different ones.
    di, dj = _triu_pairs(n, rng.choice(total, min(total, n_diff + n_same_all), replace=False))
    diff = ids[di] != ids[dj]
    di, dj = di[diff][:n_diff], dj[diff][:n_diff]
    i, j = np.r_[si, di], np.r_[sj, dj]
    same = np.r_[np.ones(si.size, bool), np.zeros(di.size, bool)]
    order = rng.permutation(i.size)
    return i[order], j[order], same[order]


def _triu_pairs(n: int, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Linear indices into the row-major strict upper triangle of an n x n matrix -> (i, j)."""
    rows = np.arange(n, dtype=np.int64)
    start = rows * n - rows * (rows + 1) // 2
    i = np.searchsorted(start, k, side="right") - 1
    return i, k - start[i] + i + 1


# ----------------------------------------------------------------------------- uncertainty

Z95 = 1.96  # a normal 95 % interval: a figure or a change +- Z95 standard errors


def normal_interval(value: float, se: float, bounds: tuple[float, float] = (-np.inf, np.inf)
                    ) -> tuple[float, float] | None:
    """value +- Z95 standard errors, clipped to ``bounds`` (a rate's [0, 1]); None for an infinite
    standard error (too few units to tell)."""
    if not np.isfinite(se):
        return None
    return max(bounds[0], value - Z95 * se), min(bounds[1], value + Z95 * se)


def eer_on_units(scores: np.ndarray, same: np.ndarray, units: tuple[np.ndarray, np.ndarray],
                 reference: np.ndarray | None = None) -> tuple[Callable[[np.ndarray], float], int]:
    """(statistic of a mask over the units, number of units) for half_sample_se: the EER of the pairs
    whose both units (``units``: each pair's two people or photos) are kept, minus ``reference``'s
    EER on the same pairs when given; NaN for a half without both kinds of pair."""
    a, b = units
    same = np.asarray(same, bool)

    def statistic(kept: np.ndarray) -> float:
        both = kept[a] & kept[b]
        if same[both].all() or not same[both].any():
            return float("nan")
        return eer(scores[both], same[both]) - (0.0 if reference is None else eer(reference[both], same[both]))

    return statistic, int(max(a.max(), b.max())) + 1


def half_sample_se(statistic: Callable[[np.ndarray], float], n_units: int, halves: int = 100, seed: int = 0) -> float:
    """Standard error of ``statistic(all units)`` from random halves of ``n_units`` independent units
    (faces, people or photos): the spread of ``statistic(kept)`` over ``halves`` random halves,
    ``kept`` a boolean mask over the units (a delete-half jackknife: for a mean that spread equals the
    whole set's standard error, and it stays valid for quantile-like figures such as the EER).
    Infinite with fewer than 4 units; halves where the statistic is undefined (NaN) are left out."""
    if n_units < 4:
        return float("inf")
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(halves):
        kept = np.zeros(n_units, bool)
        kept[rng.choice(n_units, n_units // 2, replace=False)] = True
        values.append(statistic(kept))
    values = np.asarray(values, np.float64)
    return float(np.std(values[np.isfinite(values)])) if np.isfinite(values).sum() > 1 else float("inf")
