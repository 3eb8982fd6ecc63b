"""Losses against hand-computed values on a tiny model, and against brute force on the real one."""
from __future__ import annotations

import math

import numpy as np
import pytest

from siamface import training  # noqa: F401  (selects tf-keras before TensorFlow loads)
import tensorflow as tf

from siamface.edge_runtime.errors import SiamfaceError
from siamface.edge_runtime.morphable_model import MorphableModel
from siamface.edge_runtime.params import ParamLayout
from siamface.evaluation.scoring import shape_errors_mm
from siamface.training.losses import (MarginHead, aligned_shape_loss, arcface_logits, batch_contrastive_loss,
                             batch_embedding_contrastive_loss, batch_hard_triplet_loss, contrastive_loss,
                             cosface_logits, embedding_contrastive_loss, geometry_loss, margin_loss, masked_mean,
                             point_sensitivity, similarity_free_basis, supervised_contrastive_loss, trait_loss,
                             wpdc_loss, wpdc_weights)
from siamface.training.morphable_tf import TFMorphableModel, landmark_and_sample_indices

TINY_LAYOUT = ParamLayout(n_id=1, n_exp=1)  # 12 pose + 1 + 1 = 14 values; tx = 3, tz = 11, id = 12


def tiny_model() -> TFMorphableModel:
    """Two vertices: (1, 2, 0) and (3, 0, 4); one identity mode, one expression mode."""
    model = MorphableModel(
        name="tiny", sha256="", mean=np.array([[1, 2, 0], [3, 0, 4]], np.float32),
        id_basis=np.array([[[0, 1, 0], [0, 0, 2]]], np.float32),
        exp_basis=np.array([[[1, 0, 0], [0, 0, 0]]], np.float32),
        exp_names=("e",), triangles=np.zeros((0, 3), np.int32), vertex_region=np.zeros(2, np.uint8),
        region_names=("face",), landmarks68=np.zeros(68, np.int32), extras={})
    return TFMorphableModel.from_numpy(model, TINY_LAYOUT, dtype=tf.float64)


def tiny_params(scale: float = 1.0, **changes: float) -> np.ndarray:
    """Camera scale * I with zero translation, coefficients 0; changes by index name."""
    p = np.zeros((1, 14))
    p[0, [0, 5, 10]] = scale
    for name, value in changes.items():
        p[0, {"tx": 3, "ty": 7, "tz": 11, "id": 12, "exp": 13}[name]] += value
    return p


def gradient(fn, x):
    x = tf.Variable(x)
    with tf.GradientTape() as tape:
        loss = fn(x)
    return loss.numpy(), tape.gradient(loss, x).numpy()


# --- geometry ---------------------------------------------------------------------------------

def test_geometry_loss_hand_values():
    tfm = tiny_model()
    true = tiny_params()
    assert geometry_loss(true, tiny_params(tx=3.0), tfm).numpy() == pytest.approx(3.0)
    # id + 2 moves vertex 0 by (0, 2, 0) and vertex 1 by (0, 0, 4): mean of 2 and 4.
    assert geometry_loss(true, tiny_params(id=2.0), tfm).numpy() == pytest.approx(3.0)
    # both: distances sqrt(3^2 + 2^2) and sqrt(3^2 + 4^2) = 5.
    assert geometry_loss(true, tiny_params(tx=3.0, id=2.0), tfm).numpy() == pytest.approx((math.sqrt(13) + 5) / 2)
    assert geometry_loss(true, tiny_params(tz=7.0), tfm).numpy() == 0.0  # depth offset ignored
    assert geometry_loss(true, true, tfm).numpy() == 0.0


def test_geometry_loss_gradients_on_real_model(face_model):
    layout = face_model.layout()
    tfm = TFMorphableModel.from_numpy(face_model, layout, landmark_and_sample_indices(face_model, 100))
    rng = np.random.default_rng(0)
    true = layout.join(np.tile(np.array([[4.0, 0, 0, 60], [0, -4, 0, 60], [0, 0, -4, 0]]), (2, 1, 1)),
                       rng.normal(size=(2, 100)), rng.uniform(0, 1, (2, 53)))
    pred = true + rng.normal(0, 0.05, true.shape).astype(np.float32)
    loss, grad = gradient(lambda p: geometry_loss(true, p, tfm), pred)
    assert loss > 0 and np.isfinite(grad).all()
    assert np.all(grad[:, 11] == 0) and np.count_nonzero(grad) == grad.size - 2  # all but tz
    loss, grad = gradient(lambda p: geometry_loss(true, p, tfm), true)
    assert loss == 0.0 and np.all(grad == 0)  # zero, not NaN, at the optimum


# --- WPDC -------------------------------------------------------------------------------------

def test_point_sensitivity_hand_values():
    sens = point_sensitivity(tiny_params(scale=2.0), tiny_model()).numpy()[0]
    column_norms = [math.sqrt(1 + 9), 2.0, 4.0, math.sqrt(2)]  # ||X[:, c]|| of the mean shape, sqrt(V)
    expected = column_norms * 3 + [2 * math.sqrt(1 + 4), 2.0]  # ||2 B_id||_F, ||2 B_exp||_F
    np.testing.assert_allclose(sens, expected, rtol=1e-12)


def test_point_sensitivity_is_how_far_points_move(face_model):
    """Brute force with the numpy model: move one parameter by 1, measure ||dx||."""
    layout = face_model.layout(20)
    idx = landmark_and_sample_indices(face_model, 30)
    tfm = TFMorphableModel.from_numpy(face_model, layout, idx, dtype=tf.float64)
    rng = np.random.default_rng(1)
    camera = np.array([[3.0, 0.5, -1, 50], [0.4, -3, 0.2, 70], [1, 0.1, -3, 5]])
    p = layout.join(camera, rng.normal(size=20), rng.uniform(0, 1, 53)).astype(np.float64)
    moved = p[None] + np.eye(layout.size)
    points = face_model.image_vertices(np.concatenate([p[None], moved]), layout)[:, idx]
    brute = np.linalg.norm((points[1:] - points[0]).reshape(layout.size, -1), axis=1)
    np.testing.assert_allclose(point_sensitivity(p[None], tfm).numpy()[0], brute, rtol=1e-4)


def test_wpdc_weights_hand_values():
    true = tiny_params(scale=2.0)
    pred = tiny_params(scale=2.0, tx=1.0, id=0.5, tz=100.0)
    w = wpdc_weights(true, pred, tiny_model()).numpy()[0]
    # unnormalised: tx -> sqrt(2) * 1, id -> 2 sqrt(5) * 0.5 = sqrt(5), tz -> 0; divided by the max.
    expected = np.zeros(14)
    expected[3], expected[12] = math.sqrt(2) / math.sqrt(5), 1.0
    np.testing.assert_allclose(w, expected, rtol=1e-12)
    np.testing.assert_array_equal(wpdc_weights(true, true, tiny_model()).numpy(), 0.0)


def test_wpdc_loss_hand_values_and_constant_weights():
    assert wpdc_loss([[0.0, 0.0]], [[2.0, 2.0]], [[1.0, 0.5]]).numpy() == pytest.approx((4 + 2) / 2)
    assert wpdc_loss([[1.0, 2.0]], [[1.0, 2.0]], [[1.0, 0.5]]).numpy() == 0.0

    tfm, std = tiny_model(), 2.0
    true = tiny_params(scale=2.0)
    z_true = np.zeros_like(true)
    z_pred = np.linspace(-1, 1, 14)[None]
    loss, grad = gradient(lambda z: wpdc_loss(z_true, z, wpdc_weights(true, true + std * z, tfm)), z_pred)
    w = wpdc_weights(true, true + std * z_pred, tfm).numpy()
    # Weights are constants: d/dz mean(w (z - z0)^2) = 2 w (z - z0) / P, nothing through w.
    np.testing.assert_allclose(grad, 2 * w * z_pred / 14, rtol=1e-12)
    assert np.count_nonzero(grad) > 10


# --- contrastive ------------------------------------------------------------------------------

def test_contrastive_loss_hand_values_and_margin_cases():
    a = np.zeros((5, 2))
    b = np.array([[3.0, 4.0], [3.0, 4.0], [6.0, 8.0], [0.0, 0.0], [0.0, 0.0]])
    same = np.array([1, 0, 0, 1, 0])
    # d = 5, 5, 10, 0, 0 with margin 6: same 12.5; different below margin 0.5 * 1^2;
    # different above margin 0; identical same 0; identical different 0.5 * 6^2.
    loss = contrastive_loss(a, b, same, margin=6.0).numpy()
    assert loss == pytest.approx((12.5 + 0.5 + 0 + 0 + 18) / 5)
    assert contrastive_loss(a[:1], a[:1], [1], 6.0).numpy() == 0.0


def test_contrastive_loss_gradients():
    b = np.array([[3.0, 4.0], [3.0, 4.0], [6.0, 8.0]])
    loss, grad = gradient(lambda a: contrastive_loss(a, b, [1.0, 0.0, 0.0], 6.0), np.zeros((3, 2)))
    # same: d/da 0.5||a-b||^2 = a - b; different, d = 5 < 6: -(m - d)(a - b)/d; beyond margin: 0.
    np.testing.assert_allclose(grad, np.array([[-3, -4], [0.6, 0.8], [0, 0]]) / 3, rtol=1e-12)
    _, grad = gradient(lambda a: contrastive_loss(a, a * 1.0, [0.0], 1.0), np.ones((1, 2)))
    assert np.isfinite(grad).all()


def test_embedding_contrastive_loss_hand_values():
    ea = np.array([[1.0, 0.0], [1.0, 0.0]])
    eb = np.array([[0.0, 1.0], [0.0, 1.0]])
    same_then_diff = [1, 0]
    # L1 distance 2, Q = 5: same (2/5) 2^2 = 1.6; different 10 exp(-2.77 * 2 / 5).
    l1 = embedding_contrastive_loss(ea, eb, same_then_diff, 5.0).numpy()
    assert l1 == pytest.approx((1.6 + 10 * math.exp(-2.77 * 0.4)) / 2)
    # cosine distance 1: same 2/5; different 10 exp(-2.77 / 5).
    cos = embedding_contrastive_loss(ea, 3 * eb, same_then_diff, 5.0, distance="cosine").numpy()
    assert cos == pytest.approx((0.4 + 10 * math.exp(-2.77 / 5)) / 2)
    for distance in ("l1", "cosine"):
        assert embedding_contrastive_loss(ea, ea, [1, 1], 5.0, distance).numpy() == pytest.approx(0.0, abs=1e-12)
        _, grad = gradient(lambda e: embedding_contrastive_loss(e, eb, [1, 1], 5.0, distance), ea)
        assert np.isfinite(grad).all() and np.abs(grad).max() > 0.01
    with pytest.raises(SiamfaceError, match="'l1' or 'cosine'"):
        embedding_contrastive_loss(ea, eb, same_then_diff, 5.0, distance="l2")


# --- ArcFace ----------------------------------------------------------------------------------

def unit(angle: float) -> list[float]:
    return [math.cos(angle), math.sin(angle)]


def test_arcface_hand_values():
    weights = 3.0 * np.array([unit(0.3), unit(1.2), unit(2.5)]).T  # (D=2, C=3), norm irrelevant
    embedding = np.array([[2.0, 0.0], unit(-0.5)])
    labels = np.array([0, 2])
    logits = arcface_logits(embedding, labels, weights, scale=30.0, margin=0.5).numpy()
    # Row 0: angles 0.3, 1.2, 2.5; true class widened to 0.8.
    np.testing.assert_allclose(logits[0], 30 * np.cos([0.8, 1.2, 2.5]), rtol=1e-6)
    # Row 1: angles 0.8, 1.7, 3.0; 3.0 > pi - 0.5, so the fallback cos(3.0) - 0.5 sin(0.5).
    np.testing.assert_allclose(logits[1], 30 * np.array([math.cos(0.8), math.cos(1.7),
                                                         math.cos(3.0) - 0.5 * math.sin(0.5)]), rtol=1e-6)
    expected = np.mean([-logits[i, labels[i]] + np.log(np.exp(logits[i]).sum()) for i in range(2)])
    assert margin_loss(embedding, labels, weights, "arcface", 30.0, 0.5).numpy() == pytest.approx(expected, rel=1e-6)


def test_arcface_without_margin_is_softmax_cross_entropy():
    rng = np.random.default_rng(0)
    embedding, weights = rng.normal(size=(6, 8)), rng.normal(size=(8, 5))
    labels = rng.integers(0, 5, 6)
    cos = (embedding / np.linalg.norm(embedding, axis=1, keepdims=True)) @ (weights / np.linalg.norm(weights, axis=0))
    expected = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, 30.0 * cos).numpy().mean()
    assert margin_loss(embedding, labels, weights, "arcface", 30.0, 0.0).numpy() == pytest.approx(expected, rel=1e-9)
    assert margin_loss(embedding, labels, weights, "arcface", 30.0, 0.5).numpy() > expected  # the margin makes it harder


def test_cosface_hand_values():
    weights = np.array([unit(0.3), unit(1.2)]).T
    embedding = np.array([unit(0.0), unit(1.0)])
    logits = cosface_logits(embedding, [0, 1], weights, scale=10.0, margin=0.35).numpy()
    np.testing.assert_allclose(logits, 10 * np.array([[math.cos(0.3) - 0.35, math.cos(1.2)],
                                                      [math.cos(0.7), math.cos(0.2) - 0.35]]), rtol=1e-6)
    expected = np.mean([-logits[i, i] + np.log(np.exp(logits[i]).sum()) for i in range(2)])
    assert margin_loss(embedding, [0, 1], weights, "cosface", 10.0, 0.35).numpy() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("kind", ["arcface", "cosface"])
def test_margin_head_trains_its_class_vectors(kind):
    head = MarginHead(n_classes=4, kind=kind, scale=16.0, margin=0.3)
    embedding = tf.Variable(np.random.default_rng(1).normal(size=(3, 8)).astype(np.float32))
    labels = tf.constant([0, 3, 1])
    with tf.GradientTape() as tape:
        loss = head(embedding, labels)
    assert head.kernel.shape == (8, 4)
    assert loss.numpy() == pytest.approx(margin_loss(embedding, labels, head.kernel, kind, 16.0, 0.3).numpy())
    g_emb, g_kernel = tape.gradient(loss, [embedding, head.kernel])
    assert np.abs(g_emb.numpy()).max() > 0 and np.abs(g_kernel.numpy()).max() > 0
    assert MarginHead.from_config(head.get_config()).get_config() == head.get_config()
    with pytest.raises(SiamfaceError, match="unknown margin head"):
        MarginHead(4, kind="sphereface")


# --- batch identity losses (P x K) ------------------------------------------------------------

def _all_pairs(n):
    return [(i, j) for i in range(n) for j in range(n) if i != j]


def test_batch_contrastive_losses_are_balanced_means_of_the_pair_losses():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(7, 3))
    labels = np.array([0, 0, 1, 1, 1, 2, 3])
    pairs = _all_pairs(7)
    pos = [(i, j) for i, j in pairs if labels[i] == labels[j]]
    neg = [(i, j) for i, j in pairs if labels[i] != labels[j]]

    def pair_mean(fn, chosen, same):
        i, j = np.array(chosen).T
        return fn(x[i], x[j], np.full(len(i), same)).numpy()

    for batch_fn, pair_fn in [(lambda e, y: batch_contrastive_loss(e, y, 2.0), lambda a, b, s: contrastive_loss(a, b, s, 2.0)),
                              *[(lambda e, y, d=d: batch_embedding_contrastive_loss(e, y, 5.0, d),
                                 lambda a, b, s, d=d: embedding_contrastive_loss(a, b, s, 5.0, d))
                                for d in ("l1", "cosine")]]:
        expected = 0.5 * pair_mean(pair_fn, pos, 1.0) + 0.5 * pair_mean(pair_fn, neg, 0.0)
        assert batch_fn(x, labels).numpy() == pytest.approx(expected, rel=1e-9)
        _, grad = gradient(lambda e: batch_fn(e, labels), x)
        assert np.isfinite(grad).all() and np.abs(grad).max() > 1e-3
    # one person only: no negatives, the loss is the positives' half
    same_only = batch_contrastive_loss(x[:2], [5, 5], 2.0).numpy()
    assert same_only == pytest.approx(0.5 * contrastive_loss(x[:1], x[1:2], [1.0], 2.0).numpy())


def test_batch_hard_triplet_hand_values():
    # 2-D unit vectors at angles: person 0 at 0 and 0.4 rad, person 1 at 0.5 and 2.0 rad.
    e = np.array([unit(0.0), unit(0.4), unit(0.5), unit(2.0)])
    d = 1 - np.cos(np.subtract.outer([0.0, 0.4, 0.5, 2.0], [0.0, 0.4, 0.5, 2.0]))
    labels = [0, 0, 1, 1]
    hardest = [(d[0, 1], d[0, 2]), (d[1, 0], d[1, 2]), (d[2, 3], d[2, 1]), (d[3, 2], d[3, 1])]
    expected = np.mean([max(0.0, p - n + 0.2) for p, n in hardest])
    assert batch_hard_triplet_loss(e, labels, 0.2).numpy() == pytest.approx(expected, rel=1e-9)
    assert batch_hard_triplet_loss(e * 3.0, labels, 0.2).numpy() == pytest.approx(expected, rel=1e-9)
    # an anchor without a positive (person 2 alone at 3.0 rad) is left out, not counted as zero;
    # it is the nearest negative of the photo at 2.0 rad (distance 1 - cos 1.0)
    hardest[3] = (d[3, 2], 1 - math.cos(1.0))
    expected = np.mean([max(0.0, p - n + 0.2) for p, n in hardest])
    with_single = batch_hard_triplet_loss(np.vstack([e, [unit(3.0)]]), labels + [2], 0.2).numpy()
    assert with_single == pytest.approx(expected, rel=1e-9)


def test_supervised_contrastive_brute_force():
    rng = np.random.default_rng(2)
    e = rng.normal(size=(6, 4))
    labels = np.array([0, 0, 0, 1, 1, 2])                            # person 2 has no positive
    u = e / np.linalg.norm(e, axis=1, keepdims=True)
    s = u @ u.T / 0.1
    per_anchor = []
    for i in range(5):
        denominator = np.log(sum(np.exp(s[i, a]) for a in range(6) if a != i))
        positives = [p for p in range(6) if p != i and labels[p] == labels[i]]
        per_anchor.append(-np.mean([s[i, p] - denominator for p in positives]))
    assert supervised_contrastive_loss(e, labels, 0.1).numpy() == pytest.approx(np.mean(per_anchor), rel=1e-9)
    loss, grad = gradient(lambda x: supervised_contrastive_loss(x, labels, 0.1), e)
    assert np.isfinite(grad).all() and np.abs(grad).max() > 1e-3
    # pulling person 0's photos together lowers it
    tighter = e.copy()
    tighter[:3] = e[0] + 0.01 * rng.normal(size=(3, 4))
    assert supervised_contrastive_loss(tighter, labels, 0.1).numpy() < loss


# --- masking samples without 3D labels --------------------------------------------------------

def test_masked_mean_ignores_masked_samples():
    values = np.array([[1.0, 3.0], [10.0, 30.0], [5.0, 7.0]])
    assert masked_mean(values).numpy() == pytest.approx(values.mean())
    assert masked_mean(values, [1.0, 0.0, 1.0]).numpy() == pytest.approx((2.0 + 6.0) / 2)
    assert masked_mean(values, [0.0, 0.0, 0.0]).numpy() == 0.0


def test_masked_per_image_losses_equal_the_losses_without_the_sample():
    tfm = tiny_model()
    true = np.vstack([tiny_params(), tiny_params(scale=2.0), tiny_params(id=1.0)])
    pred = true + np.random.default_rng(3).normal(0, 0.3, true.shape)
    mask = np.array([True, False, True])
    keep = np.flatnonzero(mask)
    basis = tfm.id_basis
    for fn in (lambda t, p, m=None: geometry_loss(t, p, tfm, m),
               lambda t, p, m=None: aligned_shape_loss(t[:, 12:13], p[:, 12:13], basis, m),
               lambda t, p, m=None: wpdc_loss(t, p, wpdc_weights(t, p, tfm), m)):
        masked, grad = gradient(lambda p: fn(true, p, mask), pred)
        assert masked == pytest.approx(fn(true[keep], pred[keep]).numpy(), rel=1e-12)
        assert np.all(grad[1] == 0) and np.abs(grad[keep]).max() > 0


def test_trait_loss_hand_value_and_people_without_traits_add_nothing():
    predicted = np.array([[1.0, 2.0], [0.0, 0.0], [3.0, -1.0]])
    traits = np.array([[1.0, 0.0], [np.nan, np.nan], [0.0, 1.0]])
    loss, grad = gradient(lambda p: trait_loss(p, traits), predicted)
    assert loss == pytest.approx(((0 + 4) / 2 + (9 + 4) / 2) / 2)
    assert np.all(grad[1] == 0) and np.all(np.isfinite(grad))                 # the NaN row: no gradient
    np.testing.assert_allclose(grad[[0, 2]], [[0.0, 1.0], [1.5, -1.0]])      # d/dp of the mean square
    assert trait_loss(predicted, np.full((3, 2), np.nan)).numpy() == 0.0


def test_aligned_shape_loss_hand_value():
    basis = tf.constant([[[3.0, 4.0, 0.0], [0.0, 0.0, 0.0]]], tf.float64)   # one mode, two vertices
    loss = aligned_shape_loss(tf.constant([[1.0]], tf.float64), tf.constant([[3.0]], tf.float64), basis)
    assert float(loss) == pytest.approx((10.0 + 0.0) / 2)                    # ||2 * (3, 4, 0)|| = 10


def test_similarity_free_basis_drops_size_position_and_small_rotations(face_model):
    v = face_model.face_vertices[::5]
    mean = face_model.mean[v].astype(np.float64)
    centred = mean - mean.mean(0)
    rotation = np.cross([0.0, 1.0, 0.0], centred)                            # d/dθ of a yaw rotation
    modes = np.stack([0.1 * centred + [1.0, 2.0, 3.0], rotation, face_model.id_basis[5, v]])
    free = similarity_free_basis(mean, modes)
    assert np.abs(free[:2]).max() < 1e-9 * np.abs(modes[:2]).max()           # pure similarity: nothing left
    np.testing.assert_allclose(similarity_free_basis(mean, free), free, atol=1e-9)  # a projection
    assert 0.1 < np.linalg.norm(free[2]) / np.linalg.norm(modes[2]) < 1.0    # a real mode keeps its shape part


def test_aligned_shape_loss_is_the_similarity_aligned_error(face_model):
    """In mm, against the Procrustes-aligned metric docs/results.md reports, for mean-face predictions."""
    v = face_model.face_vertices
    basis = tf.constant(10.0 * similarity_free_basis(face_model.mean[v], face_model.id_basis[:, v]))
    true = np.random.default_rng(0).standard_normal((8, face_model.id_basis.shape[0]))
    loss = float(aligned_shape_loss(tf.constant(true), tf.zeros_like(tf.constant(true)), basis))
    assert loss == pytest.approx(shape_errors_mm(face_model, np.zeros_like(true), true).mean(), rel=0.02)


def test_expression_term_sees_only_the_expression(face_model):
    """loss.expression decodes the prediction's expression under the true pose and identity: a
    wrong pose or identity adds nothing to it, a wrong expression does, and its gradient reaches
    only the expression outputs (pose errors cannot drown the expression's signal)."""
    from siamface.edge_runtime.params import Whitening
    from siamface.training.losses import LossConfig, TrainingLosses

    layout = face_model.layout(20)
    cfg = LossConfig(geometry=0.0, param=0.0, shape=0.0, shape_contrastive=0.0, identity="none", expression=1.0)
    losses = TrainingLosses(cfg, face_model, layout, Whitening(np.zeros(layout.size, np.float32),
                                                              np.ones(layout.size, np.float32)), 4, 8)
    true = np.zeros((2, layout.size), np.float32)
    true[:, [0, 5, 10]] = 3.0                                  # 3 px per cm, frontal
    true[:, layout.identity] = np.random.default_rng(0).normal(0, 1, (2, 20))
    true[1, layout.expression.start + face_model.exp_names.index("jawOpen")] = 0.8
    off_pose = true.copy()
    off_pose[:, [3, 7]] += 5.0
    off_pose[:, layout.identity] += 1.0
    assert losses.image_terms(true, off_pose)["expression"].numpy() == pytest.approx(0.0, abs=1e-5)
    wrong = off_pose.copy()
    wrong[:, layout.expression.start + face_model.exp_names.index("mouthSmile_L")] = 0.7
    value, grad = gradient(lambda z: losses.image_terms(true, z)["expression"], wrong)
    assert value > 0.05
    assert np.all(grad[:, layout.pose] == 0) and np.all(grad[:, layout.identity] == 0)
    assert np.abs(grad[:, layout.expression]).max() > 0
