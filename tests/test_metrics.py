"""Metrics against hand-computed numbers, including the edge cases of each protocol."""
from __future__ import annotations

import numpy as np
import pytest

from siamface.edge_runtime.camera import euler_to_matrix
from siamface.edge_runtime.errors import SiamfaceError
from siamface.evaluation import metrics as m


# ----------------------------------------------------------------------------- landmarks

def _box_points(w: float, h: float) -> np.ndarray:
    """68 points inside [0, w] x [0, h] with the corners included, plus a z column."""
    rng = np.random.default_rng(1)
    pts = rng.uniform([0, 0, -5], [w, h, 5], size=(68, 3))
    pts[:4, :2] = [[0, 0], [w, 0], [0, h], [w, h]]
    return pts


def test_nme_uses_xy_and_sqrt_of_gt_box_area():
    gt = _box_points(4.0, 9.0)  # sqrt(4 * 9) = 6
    shifted = gt + [3.0, 4.0, 100.0]  # 5 px everywhere; z must be ignored
    one_off = gt.copy()
    one_off[10, :2] += [6.0, 8.0]  # 10 px on one point of 68
    got = m.nme(np.stack([shifted, one_off]), np.stack([gt, gt]))
    np.testing.assert_allclose(got, [5.0 / 6.0, 10.0 / 68.0 / 6.0])


def test_landmark_groups_nme_and_signed_offsets_in_percent_of_the_box():
    gt = np.stack([_box_points(4.0, 9.0)[:, :2], _box_points(8.0, 18.0)[:, :2]])  # boxes of size 6 and 12
    pred = gt.copy()
    pred[0, 17:27] += [0.6, -1.2]                  # brows: 10 %, -20 % of 6
    pred[1, 17:27] += [1.2, -2.4]                  # the same in percent of 12
    pred[0, 0] += [3.0, 4.0]                       # one jaw point 5 px off: 5 / 6 / 17 of the jaw, one image of two
    groups = m.landmark_groups(pred, gt)
    assert list(groups) == ["jaw", "brows", "nose", "eyes", "mouth"]
    assert groups["brows"] == pytest.approx({"nme": np.hypot(10, 20), "dx": 10.0, "dy": -20.0})
    assert groups["jaw"] == pytest.approx({"nme": 100 * 5 / 6 / 17 / 2, "dx": 100 * 3 / 6 / 17 / 2,
                                           "dy": 100 * 4 / 6 / 17 / 2})
    for name in ("nose", "eyes", "mouth"):
        assert groups[name] == {"nme": 0.0, "dx": 0.0, "dy": 0.0}
    # The groups partition the 68 points: their point-weighted NME is the plain NME.
    sizes = {"jaw": 17, "brows": 10, "nose": 9, "eyes": 12, "mouth": 20}
    assert sum(groups[g]["nme"] * k for g, k in sizes.items()) / 68 == pytest.approx(100 * m.nme(pred, gt).mean())


def test_nme_rejects_mismatched_shapes():
    with pytest.raises(ValueError):
        m.nme(np.zeros((2, 68, 2)), np.zeros((2, 21, 2)))


def test_yaw_bin_edges_belong_to_the_lower_bin():
    got = m.yaw_bin([0.0, 30.0, 30.001, -45.0, 60.0, 60.5, -90.0, 120.0])
    np.testing.assert_array_equal(got, [0, 0, 1, 1, 1, 2, 2, 2])


def test_nme_by_yaw_balanced_mean_skips_empty_bins():
    got = m.nme_by_yaw([0.02, 0.04, 0.06], [10.0, -20.0, 70.0])
    assert got["0-30"] == pytest.approx(3.0) and got["n_0-30"] == 2
    assert np.isnan(got["30-60"]) and got["n_30-60"] == 0
    assert got["60-90"] == pytest.approx(6.0) and got["n_60-90"] == 1
    assert got["mean"] == pytest.approx(4.5)  # (3 + 6) / 2, not (3 + nan + 6) / 3
    assert got["mean_all"] == pytest.approx(4.0)


def test_ced_counts_errors_at_or_below_each_threshold():
    got = m.ced([0.05, 0.02, 0.01, 0.02], [0.0, 0.01, 0.02, 0.03, 0.1])
    np.testing.assert_allclose(got, [0.0, 0.25, 0.75, 0.75, 1.0])


# ----------------------------------------------------------------------------- pose

def test_wrap_degrees_into_half_open_interval():
    np.testing.assert_allclose(m.wrap_degrees([180.0, -180.0, 190.0, -2.0, 358.0]),
                               [-180.0, -180.0, -170.0, -2.0, -2.0])


def test_pose_mae_wraps_angle_differences():
    pred = [[179.0, 10.0, -5.0], [0.0, 0.0, 0.0]]
    gt = [[-179.0, 20.0, 5.0], [10.0, 350.0, 0.0]]
    got = m.pose_mae(pred, gt)
    assert got == pytest.approx({"yaw": 6.0, "pitch": 10.0, "roll": 5.0, "mean": 7.0})


# ----------------------------------------------------------------------------- 3D shape

CUBE = np.array([[x, y, z] for x in (-1.0, 1.0) for y in (-1.0, 1.0) for z in (-1.0, 1.0)])


def test_rotated_and_translated_face_has_zero_error(face_model):
    gt = face_model.mean.astype(np.float64)
    rot = euler_to_matrix(np.pi / 2, 0.0, 0.0)  # 90 degrees of yaw
    pred = gt @ rot.T + [3.0, -7.0, 20.0]
    assert float(m.shape_error_mm(pred, gt)) == pytest.approx(0.0, abs=1e-9)
    np.testing.assert_allclose(m.rigid_align(pred, gt), gt, atol=1e-9)


def test_scale_is_an_error_unless_with_scale():
    # 1.1 x a centred cube: rotation stays identity, each corner is 0.1 * sqrt(3) cm off.
    assert float(m.shape_error_mm(1.1 * CUBE, CUBE)) == pytest.approx(np.sqrt(3.0))
    scaled_error = m.shape_error_mm(1.1 * CUBE, CUBE, with_scale=True)
    assert float(scaled_error) == pytest.approx(0.0, abs=1e-9)


def test_shape_error_is_batched():
    rot = euler_to_matrix(0.3, -0.2, np.pi / 2)
    pred = np.stack([CUBE @ rot.T + 5.0, 1.1 * CUBE])
    np.testing.assert_allclose(m.shape_error_mm(pred, np.stack([CUBE, CUBE])),
                               [0.0, np.sqrt(3.0)], atol=1e-9)


def test_shape_errors_of_a_large_set_are_computed_in_blocks(face_model):
    """A whole synthetic split (30,000 faces) once needed 24 GB at once; blocks give the same values
    across their edges as face-by-face computation."""
    from siamface.edge_runtime.scoring import SHAPE_BLOCK, shape_errors_mm

    rng = np.random.default_rng(0)
    n, k = 2 * SHAPE_BLOCK + 3, 10
    pred, true = rng.standard_normal((n, k)), rng.standard_normal((n, k))
    errors = shape_errors_mm(face_model, pred, true)
    assert errors.shape == (n,) and np.all(errors > 0)
    for i in (0, SHAPE_BLOCK - 1, SHAPE_BLOCK, 2 * SHAPE_BLOCK, n - 1):
        assert errors[i] == pytest.approx(shape_errors_mm(face_model, pred[i], true[i])[0], rel=1e-9)


def test_rigid_align_never_reflects():
    src = np.array([[0.0, 0, 0], [3, 0, 0], [0, 2, 0], [0, 0, 1], [1, 1, 1]])
    mirrored = src * [-1.0, 1.0, 1.0]
    aligned = m.rigid_align(src, mirrored)
    dist = lambda p: np.linalg.norm(p[:, None] - p[None], axis=-1)  # noqa: E731
    np.testing.assert_allclose(dist(aligned), dist(src), atol=1e-9)  # still rigid
    assert float(m.shape_error_mm(src, mirrored)) > 1.0  # a reflection would give 0


# ----------------------------------------------------------------------------- verification

def test_cosine_scores_ignore_norms():
    a = [[1.0, 0.0], [3.0, 4.0], [1.0, 1.0]]
    b = [[0.0, 2.0], [6.0, 8.0], [-1.0, -1.0]]
    np.testing.assert_allclose(m.cosine_scores(a, b), [0.0, 1.0, -1.0], atol=1e-12)


def test_roc_curve_with_a_tie_and_its_auc():
    scores, same = [0.9, 0.8, 0.8, 0.3], [1, 1, 0, 0]
    far, tar, thr = m.roc_curve(scores, same)
    np.testing.assert_allclose(far, [0.0, 0.0, 0.5, 1.0])
    np.testing.assert_allclose(tar, [0.0, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(thr, [np.inf, 0.9, 0.8, 0.3])
    # Mann-Whitney: (1 + 1 + 0.5 + 1) / 4 pos-neg pairs.
    assert m.roc_auc(scores, same) == pytest.approx(0.875)


def test_perfect_separation():
    scores, same = [0.9, 0.2, 0.8, 0.1], [1, 0, 1, 0]
    assert m.roc_auc(scores, same) == pytest.approx(1.0)
    assert m.eer(scores, same) == pytest.approx(0.0)
    assert m.tar_at_far(scores, same, 0.0) == pytest.approx(1.0)


def test_fully_overlapping_scores():
    scores, same = [0.5, 0.5, 0.5, 0.5], [1, 0, 1, 0]
    far, tar, _ = m.roc_curve(scores, same)
    np.testing.assert_allclose(far, [0.0, 1.0])
    np.testing.assert_allclose(tar, [0.0, 1.0])
    assert m.roc_auc(scores, same) == pytest.approx(0.5)
    assert m.eer(scores, same) == pytest.approx(0.5)
    assert m.tar_at_far(scores, same, 1e-2) == 0.0


def test_eer_interpolates_between_roc_points():
    # ROC (far, frr): (0, 2/3) at 0.8 then (1/2, 1/3) at 0.7: FAR = FRR = 1/3 two thirds along.
    scores, same = [0.9, 0.8, 0.4, 0.7, 0.3], [1, 1, 1, 0, 0]
    assert m.eer(scores, same) == pytest.approx(1.0 / 3.0)


def test_tar_at_far_takes_largest_tar_within_budget():
    pos, neg = [0.9, 0.7, 0.6, 0.4], [0.8, 0.5, 0.2, 0.1]
    scores, same = pos + neg, [1] * 4 + [0] * 4
    assert m.tar_at_far(scores, same, 0.25) == pytest.approx(0.75)  # threshold 0.6
    assert m.tar_at_far(scores, same, 0.2) == pytest.approx(0.25)  # only FAR 0: threshold 0.9
    assert m.tar_at_far(scores, same, 1e-3) == pytest.approx(0.25)


def test_best_threshold_is_a_midpoint_and_lowest_on_ties():
    assert m.best_threshold([0.3, 0.5, 0.9], [0, 1, 1]) == pytest.approx((0.4, 1.0))
    # 0.15 and 0.35 both give 3/4 correct.
    assert m.best_threshold([0.1, 0.2, 0.3, 0.4], [0, 1, 0, 1]) == pytest.approx((0.15, 0.75))


def test_kfold_accuracy_on_a_hand_computed_set():
    # Fold 1 = pairs 0-2, fold 2 = pairs 3-5 (contiguous).
    # Threshold from fold 2 (0.2 d, 0.35 d, 0.8 s) is 0.575: fold 1 gets 0.9 s, 0.3 d right,
    # 0.5 s wrong -> 2/3. Threshold from fold 1 (0.3 d, 0.5 s, 0.9 s) is 0.4: fold 2 all right.
    scores = [0.9, 0.3, 0.5, 0.8, 0.2, 0.35]
    same = [1, 0, 1, 1, 0, 0]
    mean, std = m.kfold_accuracy(scores, same, k=2)
    assert mean == pytest.approx(5.0 / 6.0)
    assert std == pytest.approx(1.0 / 6.0)


def test_verification_report_on_interleaved_perfect_set():
    pos = 0.9 - 0.01 * np.arange(10)  # 0.90 .. 0.81
    neg = 0.1 + 0.01 * np.arange(10)  # 0.10 .. 0.19
    scores = np.ravel(np.column_stack([pos, neg]))  # each of 10 folds holds one of each
    same = np.tile([1, 0], 10)
    got = m.verification_report(scores, same)
    assert got["n_same"] == 10 and got["n_diff"] == 10
    assert got["auc"] == pytest.approx(1.0) and got["eer"] == pytest.approx(0.0)
    assert got["tar_at_far_1e-2"] == pytest.approx(1.0)
    assert got["tar_at_far_1e-3"] == pytest.approx(1.0)
    assert got["acc_mean"] == pytest.approx(1.0) and got["acc_std"] == pytest.approx(0.0)
    assert got["best_threshold"] == pytest.approx(0.5)  # midpoint of 0.19 and 0.81
    assert got["best_accuracy"] == pytest.approx(1.0)
    assert got["best_threshold_far"] == 0.0


def test_verification_needs_both_kinds_of_pair():
    with pytest.raises(SiamfaceError, match="at least two identities"):
        m.roc_curve([0.1, 0.9], [1, 1])


# ----------------------------------------------------------------------------- identification

GALLERY = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 3.0], [-2.0, 0.0]])
GALLERY_LABELS = np.array(["A", "A", "B", "C"])


def test_topk_accuracy_per_identity_and_unenrolled_probes():
    probes = np.array([[2.0, 0.2], [0.1, 1.0], [1.0, 0.9], [-1.0, 0.1], [5.0, 5.0]])
    labels = np.array(["A", "B", "B", "C", "D"])
    # Probe 3 is nearer A (0.81, from A's second entry) than B (0.67): B ranks second.
    # Probe 5's identity D is not enrolled: always a miss.
    assert m.rank1(GALLERY, GALLERY_LABELS, probes, labels) == pytest.approx(3 / 5)
    assert m.topk_accuracy(GALLERY, GALLERY_LABELS, probes, labels, k=2) == pytest.approx(4 / 5)
    assert m.topk_accuracy(GALLERY, GALLERY_LABELS, probes, labels, k=3) == pytest.approx(4 / 5)


def test_rank1_ties_count_against_the_probe():
    gallery, labels = np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0, 1])
    assert m.rank1(gallery, labels, np.array([[1.0, 1.0]]), np.array([0])) == 0.0
    assert m.topk_accuracy(gallery, labels, np.array([[1.0, 1.0]]), np.array([0]), k=2) == 1.0


def test_template_probes_never_sit_in_their_own_template():
    # Every photo its own orthogonal direction: no photo says anything about another, so a probe's
    # score against its own person's template is 0; with the probe inside the template it would be 1/2.
    ids = np.repeat(np.arange(3), 5)
    scores, own = m.template_scores(np.eye(15), ids, enrolled=4)
    assert scores.shape == (15, 3) and own.tolist() == ids.tolist()
    np.testing.assert_allclose(scores, 0.0, atol=1e-12)


def test_template_report_on_separable_people_and_who_is_left_out():
    rng = np.random.default_rng(0)
    centres = np.eye(8)[:4] * 3.0
    ids = np.array([0] * 6 + [1] * 5 + [2] * 5 + [3] * 4)  # person 3: 4 photos, no probe beside a full template
    codes = centres[ids] + rng.normal(0, 0.3, (len(ids), 8))
    rep = m.template_report(codes, ids, enrolled=4)
    assert rep["people"] == 3 and rep["enrolled"] == 4 and rep["n_same"] == 16 and rep["n_diff"] == 32
    assert rep["eer"] == 0.0 and rep["rank1"] == 1.0
    capped = m.template_report(codes, ids, enrolled=4, max_people=2)
    assert capped["people"] == 2 and capped["n_same"] == 11          # persons 0 and 2: 6 + 5 probes
    assert m.template_report(codes[ids < 2], ids[ids < 2], enrolled=5) is None  # one person with 6 photos


# ----------------------------------------------------------------------------- pose invariance

def test_pose_invariance_hand_computed():
    codes = [[0.0, 0.0], [2.0, 0.0],  # identity 0: mean (1, 0), RMS 1
             [10.0, 3.0], [10.0, -3.0],  # identity 1: mean (10, 0), RMS 3
             [5.5, 9.0]]  # identity 2: one image, no intra spread, counts in inter
    ids = [0, 0, 1, 1, 2]
    yaw = [0.0, 45.0, -10.0, 80.0, 0.0]
    got = m.pose_invariance(codes, ids, yaw)
    assert got["intra"] == pytest.approx(2.0)
    assert got["intra_0-30"] == pytest.approx(2.0)  # (1 + 3) / 2
    assert got["intra_30-60"] == pytest.approx(1.0)
    assert got["intra_60-90"] == pytest.approx(3.0)
    # Means (1,0), (10,0), (5.5,9); centre (5.5,3); squared distances 29.25, 29.25, 36.
    assert got["inter"] == pytest.approx(np.sqrt(31.5))
    assert got["ratio"] == pytest.approx(2.0 / np.sqrt(31.5))
    assert got["n_identities"] == 3


def test_far_by_distance_hand_computed():
    distance = np.arange(1.0, 9.0)                  # eight different-person pairs
    got = m.far_by_distance(-distance, distance, far=0.25)  # the nearer, the higher: accepts distances 1 and 2
    assert (got["nearest_quarter"], got["farthest_quarter"], got["n_diff"]) == (1.0, 0.0, 8)
    ignores = np.array([-1, -5, -2, -6, -3, -7, -4, -8.0])  # no order in distance
    got = m.far_by_distance(ignores, distance, far=0.25)  # accepts distances 1 and 3
    assert (got["nearest_quarter"], got["farthest_quarter"]) == (0.5, 0.0)
    got = m.far_by_distance(ignores, distance[::-1], far=0.25)  # accepts distances 8 and 6
    assert (got["nearest_quarter"], got["farthest_quarter"]) == (0.0, 0.5)


def test_shape_reliance_tells_a_shape_code_from_one_blind_to_shape(face_model):
    """The true identity coefficients accept the different people with the nearest faces; a code
    drawn at random per person accepts every distance alike."""
    from siamface.edge_runtime.scoring import shape_reliance

    rng = np.random.default_rng(0)
    people, k = 300, 20
    ids = np.repeat(np.arange(people), 2)
    true_id = np.repeat(rng.standard_normal((people, k)), 2, axis=0)
    blind = np.repeat(rng.standard_normal((people, 16)), 2, axis=0)
    got = shape_reliance({"shape": true_id, "blind": blind}, m.all_pairs(ids, rng=0), true_id, face_model)
    shape, blind = got["far_by_true_shape_shape"], got["far_by_true_shape_blind"]
    assert shape["n_diff"] == people and shape["far"] == 0.1
    assert shape["nearest_quarter"] >= 0.15 and shape["farthest_quarter"] <= 0.05   # 0.20 and 0.0
    assert abs(blind["nearest_quarter"] - blind["farthest_quarter"]) < 0.1


def test_pose_invariance_needs_two_identities():
    with pytest.raises(SiamfaceError, match="two identities"):
        m.pose_invariance([[0.0], [1.0]], [7, 7], [0.0, 50.0])


# ----------------------------------------------------------------------------- pairs

def _as_set(i, j):
    return {(int(a), int(b)) for a, b in zip(i, j)}


def test_all_pairs_has_every_same_pair_and_as_many_different():
    ids = np.array([0, 0, 0, 1, 1, 2])
    i, j, same = m.all_pairs(ids)
    assert _as_set(i[same], j[same]) == {(0, 1), (0, 2), (1, 2), (3, 4)}
    diff = _as_set(i[~same], j[~same])
    assert len(diff) == 4 and (~same).sum() == 4
    assert all(a < b and ids[a] != ids[b] for a, b in diff)
    again = m.all_pairs(ids)
    for x, y in zip((i, j, same), again):
        np.testing.assert_array_equal(x, y)


def test_all_pairs_takes_every_different_pair_when_short():
    i, j, same = m.all_pairs(np.array([0, 0, 0, 0, 1]), rng=3)
    assert same.sum() == 6
    assert _as_set(i[~same], j[~same]) == {(0, 4), (1, 4), (2, 4), (3, 4)}


def test_all_pairs_caps_at_max_pairs():
    ids = np.repeat(np.arange(5), 4)  # 30 same pairs
    i, j, same = m.all_pairs(ids, max_pairs=10, rng=np.random.default_rng(5))
    assert same.sum() == 5 and (~same).sum() == 5
    assert np.all(ids[i[same]] == ids[j[same]]) and np.all(ids[i[~same]] != ids[j[~same]])


def test_all_pairs_feed_verification_end_to_end():
    # Five tight clusters on the unit circle: every pair score separates perfectly.
    ids = np.repeat(np.arange(5), 4)
    angles = 2 * np.pi * ids / 5 + np.random.default_rng(0).normal(0, 0.01, ids.size)
    emb = np.column_stack([np.cos(angles), np.sin(angles)])
    i, j, same = m.all_pairs(ids)
    report = m.verification_report(m.cosine_scores(emb[i], emb[j]), same)
    assert report["auc"] == pytest.approx(1.0)
    assert report["acc_mean"] == pytest.approx(1.0)


def test_half_sample_se_is_the_standard_error_of_a_mean():
    """Random halves of the units give the whole set's standard error (delete-half jackknife)."""
    x = np.random.default_rng(0).normal(0.0, 2.0, 400)
    assert m.half_sample_se(lambda kept: float(x[kept].mean()), x.size, halves=400) == pytest.approx(0.1, rel=0.15)
    assert m.half_sample_se(lambda kept: 0.0, 3) == float("inf")   # halves of 3 units say nothing
