"""The losses of the Siamese method: geometry (and WPDC) per image, contrastive per pair, and
the identity losses over a whole batch (every pair, batch-hard triplet, supervised contrastive,
ArcFace/CosFace margin heads).

Parameter losses take UNwhitened parameter vectors where they decode geometry (the caller
unwhitens the network's output); WPDC itself compares whitened vectors. The camera's depth
offset tz is ignored everywhere, as in 3DDFA: a weak-perspective image does not show it.
Per-image losses take an optional (B,) ``mask``: a sample with mask 0 (no 3D labels) adds
nothing, and the mean runs over the others; its labels must still be finite (zeros will do).

``LossConfig`` and ``TrainingLosses`` at the end put them together as a training run configures them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import tensorflow as tf
import tf_keras as keras

from siamface.edge_runtime.errors import SiamfaceError
from siamface.edge_runtime.morphable_model import MorphableModel
from siamface.edge_runtime.params import ParamLayout, Whitening
from siamface.training.morphable_tf import TFMorphableModel, landmark_and_sample_indices

TZ_INDEX = 11  # the camera's (row 2, column 3) entry in the row-major 3x4 pose block


def safe_norm(x: tf.Tensor, axis: int = -1) -> tf.Tensor:
    """Euclidean norm with a zero (not NaN) gradient where the vector is exactly zero."""
    sq = tf.reduce_sum(tf.square(x), axis)
    nonzero = sq > 0
    return tf.where(nonzero, tf.sqrt(tf.where(nonzero, sq, tf.ones_like(sq))), tf.zeros_like(sq))


def masked_mean(per_sample: tf.Tensor, mask: tf.Tensor | None = None) -> tf.Tensor:
    """Mean over all entries of the samples whose mask is 1 (0 when none is): (B, ...) -> ()."""
    per_sample = tf.convert_to_tensor(per_sample)
    if mask is None:
        return tf.reduce_mean(per_sample)
    per_row = tf.reshape(per_sample, [tf.shape(per_sample)[0], -1])
    mask = tf.cast(tf.reshape(mask, [-1]), per_sample.dtype)
    return tf.reduce_sum(mask * tf.reduce_mean(per_row, 1)) / tf.maximum(tf.reduce_sum(mask), 1.0)


def _depth_offset_mask(tf_model: TFMorphableModel) -> tf.Tensor:
    """(P,) bool, True at tz."""
    return tf.one_hot(TZ_INDEX, tf_model.layout.size, dtype=tf.int32) > 0


def geometry_loss(params_true: tf.Tensor, params_pred: tf.Tensor, tf_model: TFMorphableModel,
                  mask: tf.Tensor | None = None) -> tf.Tensor:
    """mean_{b,v} || x_v(p_pred) - x_v(p_true) ||_2 over the model's vertices, in image pixels.

    x_v(p) is the image-space point (x, y, depth) of vertex v. The prediction's tz is replaced
    by the true one first, so pose, shape and expression errors count, the depth offset does not.
    """
    params_true = tf.convert_to_tensor(params_true, tf_model.dtype)
    params_pred = tf.where(_depth_offset_mask(tf_model), params_true,
                           tf.convert_to_tensor(params_pred, tf_model.dtype))
    diff = tf_model.image_points(params_pred) - tf_model.image_points(params_true)
    return masked_mean(safe_norm(diff), mask)


def similarity_free_basis(mean: np.ndarray, id_basis: np.ndarray) -> np.ndarray:
    """(K, V, 3) identity modes minus their first-order similarity part (translation, uniform
    scale, small rotations of the mean shape): what is left is what a similarity-aligned shape
    error can see. A weak-perspective photo shows no head size, so training should not chase it.
    """
    centred = mean - mean.mean(axis=0)
    axes = np.eye(3)
    directions = ([np.broadcast_to(a, mean.shape) for a in axes] + [centred]
                  + [np.cross(a, centred) for a in axes])
    q, _ = np.linalg.qr(np.stack([d.reshape(-1) for d in directions], axis=1))  # (3V, 7) orthonormal
    flat = id_basis.reshape(len(id_basis), -1)
    return (flat - (flat @ q) @ q.T).reshape(id_basis.shape)


def aligned_shape_loss(id_true: tf.Tensor, id_pred: tf.Tensor, basis: tf.Tensor,
                       mask: tf.Tensor | None = None) -> tf.Tensor:
    """mean_{b,v} || sum_k (id_pred - id_true)_bk basis_kv ||_2: the neutral shapes' vertex
    distance with ``similarity_free_basis`` (so, to first order, after similarity alignment)."""
    id_pred = tf.convert_to_tensor(id_pred)
    diff = tf.einsum("bk,kvc->bvc", id_pred - tf.cast(id_true, id_pred.dtype), tf.cast(basis, id_pred.dtype))
    return masked_mean(safe_norm(diff), mask)


def point_sensitivity(params: tf.Tensor, tf_model: TFMorphableModel) -> tf.Tensor:
    """(B, P): ||d x / d p_i||, the Frobenius norm over all (V, 3) image coordinates.

    The image points are linear in each single parameter, so this times |dp_i| is exactly how
    far the points move when p_i alone changes by dp_i. Camera entry (r, c < 3) moves row r by
    the shape's c coordinates: ||X[:, c]||; translation (r, 3): sqrt(V); basis mode k under the
    camera's 3x3 block A: ||A B_k||_F = sqrt(sum_ij (A^T A)_ij (B_k^T B_k)_ij).
    """
    camera, id_coeffs, exp_coeffs = tf_model.split(params)
    shape = tf_model.shape(id_coeffs, exp_coeffs)                                  # (B, V, 3)
    sqrt_v = tf.fill(tf.shape(shape[:, :1, 0]), tf.sqrt(tf.cast(tf_model.n_vertices, shape.dtype)))
    per_row = tf.concat([tf.norm(shape, axis=1), sqrt_v], axis=1)                  # (B, 4)
    a = camera[:, :, :3]
    ata = tf.einsum("bri,brj->bij", a, a)
    bases = tf.concat([tf_model.id_basis, tf_model.exp_basis], axis=0)             # (K + E, V, 3)
    gram = tf.einsum("kvi,kvj->kij", bases, bases)
    basis = tf.sqrt(tf.maximum(tf.einsum("bij,kij->bk", ata, gram), 0.0))
    return tf.concat([tf.tile(per_row, [1, 3]), basis], axis=1)


def wpdc_weights(params_true: tf.Tensor, params_pred: tf.Tensor, tf_model: TFMorphableModel) -> tf.Tensor:
    """(B, P) WPDC weights as in 3DDFA, constants for the optimiser (stop-gradient).

    w_i = ||d x / d p_i|| (at the true parameters) * |p_pred_i - p_true_i|, i.e. how far the
    decoded points move if only parameter i were wrong; w_tz = 0; each row divided by its max.
    """
    params_true = tf.convert_to_tensor(params_true, tf_model.dtype)
    params_pred = tf.convert_to_tensor(params_pred, tf_model.dtype)
    w = point_sensitivity(params_true, tf_model) * tf.abs(params_pred - params_true)
    w = tf.where(_depth_offset_mask(tf_model), tf.zeros_like(w), w)
    w = w / tf.maximum(tf.reduce_max(w, axis=1, keepdims=True), 1e-12)
    return tf.stop_gradient(w)


def wpdc_loss(z_true: tf.Tensor, z_pred: tf.Tensor, weights: tf.Tensor, mask: tf.Tensor | None = None) -> tf.Tensor:
    """mean_{b,i} w_bi (z_pred_bi - z_true_bi)^2 on whitened parameters (3DDFA's WPDC)."""
    z_pred = tf.convert_to_tensor(z_pred)
    return masked_mean(tf.cast(weights, z_pred.dtype) * tf.square(z_pred - tf.cast(z_true, z_pred.dtype)), mask)


def _contrastive_terms(d: tf.Tensor, margin: float) -> tuple[tf.Tensor, tf.Tensor]:
    """Hadsell's per-pair terms at distance d: (same person 0.5 d^2, different 0.5 max(0, m - d)^2)."""
    return 0.5 * tf.square(d), 0.5 * tf.square(tf.nn.relu(margin - d))


def contrastive_loss(a: tf.Tensor, b: tf.Tensor, same: tf.Tensor, margin: float) -> tf.Tensor:
    """mean over pairs of 0.5 y d^2 + 0.5 (1 - y) max(0, m - d)^2, d = ||a - b||_2 (Hadsell et al. 2006).

    Used on the shape (identity) coefficients of the two images of a pair; y = 1 for one person.
    """
    a = tf.convert_to_tensor(a)
    y = tf.cast(tf.reshape(same, [-1]), a.dtype)
    pos, neg = _contrastive_terms(safe_norm(a - tf.cast(b, a.dtype)), margin)
    return tf.reduce_mean(y * pos + (1.0 - y) * neg)


def _embedding_distance(ea: tf.Tensor, eb: tf.Tensor, distance: str) -> tf.Tensor:
    """E between embeddings (broadcasting): L1 distance, or 1 - cosine similarity."""
    if distance == "l1":
        return tf.reduce_sum(tf.abs(ea - eb), -1)
    if distance == "cosine":
        return 1.0 - tf.reduce_sum(tf.math.l2_normalize(ea, -1) * tf.math.l2_normalize(eb, -1), -1)
    raise SiamfaceError(f"unknown embedding distance {distance!r}: use 'l1' or 'cosine'")


def _embedding_terms(e: tf.Tensor, margin: float) -> tuple[tf.Tensor, tf.Tensor]:
    """Chopra's per-pair terms at distance E, Q = margin: (same (2/Q) E^2, different 2Q exp(-2.77 E / Q))."""
    return (2.0 / margin) * tf.square(e), 2.0 * margin * tf.exp(-2.77 * e / margin)


def embedding_contrastive_loss(ea: tf.Tensor, eb: tf.Tensor, same: tf.Tensor, margin: float,
                               distance: str = "l1") -> tf.Tensor:
    """mean over pairs of y (2/Q) E^2 + (1 - y) 2Q exp(-2.77 E / Q), with Q = margin.

    The authors' identity loss (Chopra, Hadsell, LeCun 2005), Q an upper bound of the distance E:
    E = ||ea - eb||_1 as in their code, or E = 1 - cos(ea, eb) with distance="cosine".
    """
    ea = tf.convert_to_tensor(ea)
    y = tf.cast(tf.reshape(same, [-1]), ea.dtype)
    pos, neg = _embedding_terms(_embedding_distance(ea, tf.cast(eb, ea.dtype), distance), margin)
    return tf.reduce_mean(y * pos + (1.0 - y) * neg)


def pair_masks(labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(B, B) bool masks of the batch's positive pairs (same label, i != j) and negative pairs."""
    labels = tf.reshape(labels, [-1])
    same = tf.equal(labels[:, None], labels[None, :])
    return tf.logical_and(same, ~tf.eye(tf.shape(labels)[0], dtype=tf.bool)), ~same


def balanced_pair_mean(pos_term: tf.Tensor, neg_term: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """0.5 mean of pos_term over positive pairs + 0.5 mean of neg_term over negative pairs.

    A P x K batch has far more negative pairs than positive ones (16 x 4: per image 3 vs 60);
    weighting both kinds alike keeps the scale of the per-pair loss at p_same 0.5. A kind
    absent from the batch adds 0.
    """
    pos, neg = pair_masks(labels)

    def mean(term, mask):
        mask = tf.cast(mask, term.dtype)
        return tf.reduce_sum(mask * term) / tf.maximum(tf.reduce_sum(mask), 1.0)

    return 0.5 * mean(pos_term, pos) + 0.5 * mean(neg_term, neg)


def batch_contrastive_loss(x: tf.Tensor, labels: tf.Tensor, margin: float) -> tf.Tensor:
    """``contrastive_loss`` over every pair of the batch (positives and negatives weighted alike)."""
    x = tf.convert_to_tensor(x)
    pos, neg = _contrastive_terms(safe_norm(x[:, None] - x[None]), margin)
    return balanced_pair_mean(pos, neg, labels)


def batch_embedding_contrastive_loss(embedding: tf.Tensor, labels: tf.Tensor, margin: float,
                                     distance: str = "l1") -> tf.Tensor:
    """``embedding_contrastive_loss`` over every pair of the batch (positives and negatives alike)."""
    e = tf.convert_to_tensor(embedding)
    pos, neg = _embedding_terms(_embedding_distance(e[:, None], e[None], distance), margin)
    return balanced_pair_mean(pos, neg, labels)


def _cosine_matrix(embedding: tf.Tensor) -> tf.Tensor:
    e = tf.math.l2_normalize(tf.convert_to_tensor(embedding), -1)
    return tf.matmul(e, e, transpose_b=True)


def batch_hard_triplet_loss(embedding: tf.Tensor, labels: tf.Tensor, margin: float) -> tf.Tensor:
    """Batch-hard triplet loss (Hermans et al. 2017) on cosine distance 1 - cos.

    Each anchor takes its farthest positive and its nearest negative in the batch:
    max(0, d_ap - d_an + margin), averaged over the anchors that have both.
    """
    d = 1.0 - _cosine_matrix(embedding)
    pos, neg = pair_masks(labels)
    hardest_pos = tf.reduce_max(tf.where(pos, d, -1.0), axis=1)
    hardest_neg = tf.reduce_min(tf.where(neg, d, 3.0), axis=1)
    valid = tf.cast(tf.logical_and(tf.reduce_any(pos, 1), tf.reduce_any(neg, 1)), d.dtype)
    per_anchor = tf.nn.relu(hardest_pos - hardest_neg + margin)
    return tf.reduce_sum(valid * per_anchor) / tf.maximum(tf.reduce_sum(valid), 1.0)


def supervised_contrastive_loss(embedding: tf.Tensor, labels: tf.Tensor, temperature: float) -> tf.Tensor:
    """Supervised contrastive loss (Khosla et al. 2020, L_out) on cosine similarity / temperature.

    For anchor i with positives P(i): -mean_{p in P(i)} log(exp(s_ip) / sum_{a != i} exp(s_ia)),
    averaged over the anchors with a positive. With K = 2 it is SimCLR's NT-Xent with labels.
    """
    s = _cosine_matrix(embedding) / temperature
    pos, _ = pair_masks(labels)
    others = ~tf.eye(tf.shape(s)[0], dtype=tf.bool)
    log_prob = s - tf.reduce_logsumexp(tf.where(others, s, -1e4), axis=1, keepdims=True)
    pos = tf.cast(pos, s.dtype)
    n_pos = tf.reduce_sum(pos, 1)
    per_anchor = -tf.reduce_sum(pos * log_prob, 1) / tf.maximum(n_pos, 1.0)
    has_pos = tf.cast(n_pos > 0, s.dtype)
    return tf.reduce_sum(has_pos * per_anchor) / tf.maximum(tf.reduce_sum(has_pos), 1.0)


def _class_cosines(embedding: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
    """(B, C) cosines between embeddings (B, D) and class vectors (D, C)."""
    embedding = tf.convert_to_tensor(embedding)
    return tf.matmul(tf.math.l2_normalize(embedding, 1), tf.math.l2_normalize(tf.cast(weights, embedding.dtype), 0))


def arcface_logits(embedding: tf.Tensor, labels: tf.Tensor, weights: tf.Tensor, scale: float = 30.0,
                   margin: float = 0.5) -> tf.Tensor:
    """(B, C) logits s cos(theta_j), with the true class's angle widened: s cos(theta_y + m).

    theta_j is the angle between the embedding and class vector j (weights is (D, C)). Past
    theta_y > pi - m, cos(theta_y + m) would rise again, so s (cos theta_y - m sin(pi - m))
    is used there instead (insightface's fallback), keeping the logit decreasing in theta_y.
    """
    cos = tf.clip_by_value(_class_cosines(embedding, weights), -1.0, 1.0)
    labels = tf.cast(tf.reshape(labels, [-1]), tf.int32)
    target = tf.gather(cos, labels, axis=1, batch_dims=1)
    sin = tf.sqrt(tf.maximum(1.0 - tf.square(target), 1e-12))
    widened = tf.where(target > math.cos(math.pi - margin),
                       target * math.cos(margin) - sin * math.sin(margin),
                       target - margin * math.sin(math.pi - margin))
    one_hot = tf.one_hot(labels, tf.shape(cos)[1], dtype=cos.dtype)
    return scale * (cos + one_hot * (widened - target)[:, None])


def cosface_logits(embedding: tf.Tensor, labels: tf.Tensor, weights: tf.Tensor, scale: float = 30.0,
                   margin: float = 0.35) -> tf.Tensor:
    """(B, C) logits s cos(theta_j), the true class's lowered by the margin: s (cos theta_y - m)
    (CosFace / large-margin cosine loss, Wang et al. 2018)."""
    cos = _class_cosines(embedding, weights)
    labels = tf.cast(tf.reshape(labels, [-1]), tf.int32)
    return scale * (cos - margin * tf.one_hot(labels, tf.shape(cos)[1], dtype=cos.dtype))


MARGIN_LOGITS = {"arcface": arcface_logits, "cosface": cosface_logits}


def margin_loss(embedding: tf.Tensor, labels: tf.Tensor, weights: tf.Tensor, kind: str = "arcface",
                scale: float = 30.0, margin: float = 0.5) -> tf.Tensor:
    """Mean softmax cross-entropy of the margin logits: ``kind`` arcface (additive angular margin,
    Deng et al. 2019) or cosface."""
    logits = MARGIN_LOGITS[kind](embedding, labels, weights, scale, margin)
    labels = tf.cast(tf.reshape(labels, [-1]), tf.int32)
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))


class MarginHead(keras.layers.Layer):
    """Training-only classifier over training identities: holds the (D, C) class vectors.

    ``head(embedding, labels)`` returns the ArcFace or CosFace loss; it is never part of the encoder.
    """

    def __init__(self, n_classes: int, kind: str = "arcface", scale: float = 30.0, margin: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        if kind not in MARGIN_LOGITS:
            raise SiamfaceError(f"unknown margin head {kind!r}: use {' or '.join(MARGIN_LOGITS)}")
        self.n_classes, self.kind, self.scale, self.margin = int(n_classes), kind, float(scale), float(margin)

    def build(self, input_shape):
        self.kernel = self.add_weight(name="class_vectors", shape=(int(input_shape[-1]), self.n_classes),
                                      initializer="glorot_uniform", trainable=True)
        super().build(input_shape)

    def call(self, embedding: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
        return margin_loss(embedding, labels, self.kernel, self.kind, self.scale, self.margin)

    def get_config(self) -> dict:
        return {**super().get_config(), "n_classes": self.n_classes, "kind": self.kind, "scale": self.scale,
                "margin": self.margin}


def trait_loss(predicted: tf.Tensor, traits: tf.Tensor) -> tf.Tensor:
    """Mean squared error over the standardised traits of the samples that have them."""
    traits, predicted = tf.cast(traits, tf.float32), tf.cast(predicted, tf.float32)
    mask = tf.reduce_all(tf.math.is_finite(traits), axis=1)
    error = tf.square(tf.where(mask[:, None], traits, 0.0) - predicted)
    return masked_mean(tf.reduce_mean(error, axis=1), mask)


@dataclass
class LossConfig:
    """Loss weights (0 switches a loss off, for ablations) and their margins."""

    geometry: float = 0.5             # mean distance (crop pixels) of 68 landmarks + sampled vertices
    n_sample_vertices: int = 200
    geometry_shapes_identity: bool = False  # True lets geometry gradients move the identity code too
    param: float = 2.0                # L2 on whitened parameters: keeps the shape code near its posterior mean
    shape: float = 3.0                # mm between neutral identity shapes, similarity part removed
    wpdc: float = 0.0                 # weighted parameter distance (3DDFA-style)
    # The predicted expression's geometry alone (decoded with the true pose and identity, crop pixels):
    # in `geometry` pose errors of several pixels set every point's gradient direction, and the
    # expression, a pixel or two at the mouth and eyes, learnt almost nothing (docs/results.md).
    expression: float = 0.0
    shape_contrastive: float = 0.05   # contrastive on identity coefficients (the pair; pk: every pair)
    shape_margin: float = 4.0
    # On the embedding: "contrastive" (the paper's; pk: over every pair of the batch), "triplet"
    # (batch-hard), "supcon" (supervised contrastive), "arcface" / "cosface" (margin head over
    # the training identities) or "none". Batch losses on pairs see the 2B images of the batch.
    identity: str = "contrastive"
    identity_weight: float = 0.5
    identity_q: float = 10.0          # contrastive: Q, the bound of the embedding distance
    identity_distance: str = "l1"     # contrastive: "l1" (authors' code) or "cosine"
    triplet_margin: float = 0.2       # on cosine distance
    supcon_temperature: float = 0.1
    classifier: str = "none"          # a margin head next to the identity loss: "arcface", "cosface" or "none"
    classifier_weight: float = 0.1
    arcface_scale: float = 30.0
    arcface_margin: float = 0.5       # additive angular margin (radians)
    cosface_scale: float = 30.0
    cosface_margin: float = 0.35      # additive cosine margin
    identity_start_step: int = 0      # staged schedule: identity, classifier and trait losses join at this step
    # Regress the person's visible traits (skin tone, hair, brows, eye colour, facial hair; the
    # ``traits`` label column of synthetic data) from the embedding through a training-only linear
    # head: it says which cues identify a person. 0: off; samples without traits add nothing.
    traits: float = 0.0
    # True: the trait term trains only the embedding branch (encoder.embedding_from_stage >= 1) and
    # its head, its gradient stopped before the shared stages the landmarks read.
    traits_branch_only: bool = False


IDENTITY_LOSSES = ("none", "contrastive", "triplet", "supcon", "arcface", "cosface")
CLASSIFIERS = ("none", "arcface", "cosface")


class TrainingLosses:
    """The configured losses on a batch and the model's outputs; returns named scalars.

    ``pairs`` scores a Siamese pair batch, ``batch`` a P x K batch. A sample whose whitened
    labels hold NaN (no 3D labels, e.g. an identity-only photo dataset) adds nothing to the
    geometry, parameter, shape and WPDC terms; the identity terms still use it.
    """

    def __init__(self, cfg: LossConfig, model: MorphableModel, layout: ParamLayout, whitening: Whitening,
                 n_classes: int, embedding_dim: int, n_traits: int = 0):
        self.cfg, self.layout = cfg, layout
        idx = landmark_and_sample_indices(model, cfg.n_sample_vertices)
        self.tf_model = TFMorphableModel.from_numpy(model, layout, idx)
        free = similarity_free_basis(self.tf_model.mean.numpy(), self.tf_model.id_basis.numpy())
        self.shape_basis = tf.constant(10.0 * free, tf.float32)  # cm -> mm
        self.mean = tf.constant(whitening.mean)
        self.std = tf.constant(whitening.std)
        if cfg.identity not in IDENTITY_LOSSES:
            raise SiamfaceError(f"loss.identity must be one of {', '.join(IDENTITY_LOSSES)}, not {cfg.identity!r}")
        if cfg.classifier not in CLASSIFIERS:
            raise SiamfaceError(f"loss.classifier must be one of {', '.join(CLASSIFIERS)}, not {cfg.classifier!r}")
        head = cfg.identity if cfg.identity in MARGIN_LOGITS else cfg.classifier
        if cfg.identity in MARGIN_LOGITS and cfg.classifier != "none":
            raise SiamfaceError(f"loss.identity={cfg.identity} is already a margin head: set loss.classifier=none")
        self.margin_head = None
        if head != "none":
            scale, margin = ((cfg.arcface_scale, cfg.arcface_margin) if head == "arcface"
                             else (cfg.cosface_scale, cfg.cosface_margin))
            self.margin_head = MarginHead(n_classes, head, scale, margin)
            self.margin_head.build((None, embedding_dim))
        self.trait_head = None
        if cfg.traits:
            if not n_traits:
                raise SiamfaceError("loss.traits needs data with a traits column (synthetic data written since "
                                    "2026-12-02): regenerate it with `siamface data synth`, or set loss.traits=0")
            self.trait_head = keras.layers.Dense(n_traits, name="trait_head", dtype="float32")
            self.trait_head.build((None, embedding_dim))

    def unwhiten(self, z):
        return tf.cast(z, tf.float32) * self.std + self.mean

    def image_terms(self, z_true: tf.Tensor, z_pred: tf.Tensor, suffix: str = "") -> dict:
        """Per-image losses, masked where the labels are NaN (those become zeros first: a NaN
        would reach the gradient even through a zero weight)."""
        cfg, lay = self.cfg, self.layout
        z_true = tf.cast(z_true, tf.float32)
        mask = tf.reduce_all(tf.math.is_finite(z_true), axis=1)
        z_true = tf.where(mask[:, None], z_true, 0.0)
        z_pred = tf.cast(z_pred, tf.float32)
        p_true, p_pred = self.unwhiten(z_true), self.unwhiten(z_pred)
        terms = {}
        if cfg.geometry:
            p_geo = p_pred if cfg.geometry_shapes_identity else tf.concat(
                [p_pred[:, lay.pose], tf.stop_gradient(p_pred[:, lay.identity]), p_pred[:, lay.expression]], 1)
            terms[f"geometry{suffix}"] = cfg.geometry * geometry_loss(p_true, p_geo, self.tf_model, mask)
        if cfg.expression:
            p_exp = tf.concat([p_true[:, lay.pose], p_true[:, lay.identity], p_pred[:, lay.expression]], 1)
            terms[f"expression{suffix}"] = cfg.expression * geometry_loss(p_true, p_exp, self.tf_model, mask)
        if cfg.param:
            terms[f"param{suffix}"] = cfg.param * masked_mean(tf.square(z_true - z_pred), mask)
        if cfg.shape:
            terms[f"shape{suffix}"] = cfg.shape * aligned_shape_loss(
                p_true[:, lay.identity], p_pred[:, lay.identity], self.shape_basis, mask)
        if cfg.wpdc:
            weights = wpdc_weights(p_true, p_pred, self.tf_model)
            terms[f"wpdc{suffix}"] = cfg.wpdc * wpdc_loss(z_true, z_pred, weights, mask)
        return terms

    def _identity_terms(self, embedding: tf.Tensor, labels: tf.Tensor, traits: tf.Tensor | None,
                        identity_on: tf.Tensor, contrastive: Callable[[], tf.Tensor]) -> dict:
        """Identity losses on L2-normalised embeddings with their identity classes and traits;
        ``contrastive`` computes the paper's loss (per pair, or over every pair of a P x K batch)."""
        cfg, terms = self.cfg, {}
        if cfg.identity_weight and cfg.identity != "none":
            if cfg.identity == "contrastive":
                value = contrastive()
            elif cfg.identity == "triplet":
                value = batch_hard_triplet_loss(embedding, labels, cfg.triplet_margin)
            elif cfg.identity == "supcon":
                value = supervised_contrastive_loss(embedding, labels, cfg.supcon_temperature)
            else:
                value = self.margin_head(embedding, labels)
            terms["identity"] = identity_on * cfg.identity_weight * value
        if cfg.classifier != "none" and cfg.classifier_weight:
            terms["classifier"] = identity_on * cfg.classifier_weight * self.margin_head(embedding, labels)
        if self.trait_head is not None:
            terms["traits"] = identity_on * cfg.traits * trait_loss(self.trait_head(embedding), traits)
        return terms

    def pairs(self, batch: dict, out: dict, identity_on: tf.Tensor) -> dict:
        """Siamese pair batch: per-image terms of both sides, contrastive terms per pair."""
        cfg, lay = self.cfg, self.layout
        terms = {**self.image_terms(batch["params_a"], out["params_a"], "_a"),
                 **self.image_terms(batch["params_b"], out["params_b"], "_b")}
        if cfg.shape_contrastive:
            id_a = self.unwhiten(out["params_a"])[:, lay.identity]
            id_b = self.unwhiten(out["params_b"])[:, lay.identity]
            terms["shape_contrastive"] = cfg.shape_contrastive * contrastive_loss(
                id_a, id_b, batch["same"], cfg.shape_margin)
        if cfg.identity != "none" or cfg.classifier != "none" or self.trait_head is not None:
            emb = tf.concat([out["embedding_a"], out["embedding_b"]], axis=0)
            labels = tf.concat([batch["class_a"], batch["class_b"]], axis=0)
            traits = tf.concat([batch["traits_a"], batch["traits_b"]], axis=0) if "traits_a" in batch else None
            terms.update(self._identity_terms(emb, labels, traits, identity_on, lambda: embedding_contrastive_loss(
                out["embedding_a"], out["embedding_b"], batch["same"], cfg.identity_q, cfg.identity_distance)))
        terms["total"] = tf.add_n(list(terms.values()))
        return terms

    def batch(self, batch: dict, out: dict, identity_on: tf.Tensor) -> dict:
        """P x K batch: per-image terms, contrastive and identity terms over every pair of the batch."""
        cfg, lay = self.cfg, self.layout
        terms = self.image_terms(batch["params"], out["params"])
        if cfg.shape_contrastive:
            codes = self.unwhiten(out["params"])[:, lay.identity]
            terms["shape_contrastive"] = cfg.shape_contrastive * batch_contrastive_loss(
                codes, batch["class"], cfg.shape_margin)
        terms.update(self._identity_terms(out["embedding"], batch["class"], batch.get("traits"), identity_on, lambda: (
            batch_embedding_contrastive_loss(out["embedding"], batch["class"], cfg.identity_q,
                                                    cfg.identity_distance))))
        terms["total"] = tf.add_n(list(terms.values()))
        return terms
