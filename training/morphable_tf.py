"""The TensorFlow twin of edge_runtime.morphable_model: decode parameter batches inside losses.

Same maths as ``MorphableModel.image_vertices`` and ``edge_runtime.camera.project``, on a
batch of UNwhitened parameter vectors, for all vertices or for a subset (the 68 landmarks
plus a spread of face vertices is enough for a geometry loss and far cheaper than 15k).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from siamface.edge_runtime.morphable_model import MorphableModel
from siamface.edge_runtime.params import ParamLayout


def landmark_and_sample_indices(model: MorphableModel, n_sample: int, seed: int = 0) -> np.ndarray:
    """The 68 landmark vertices, then ``n_sample`` well-spread vertices (farthest-point sampling).

    Candidates are ``model.extras['fitting_vertices']`` when the asset has them (the face
    region, no eyeballs or mouth interior), else every vertex. The seed picks the first sample;
    each next one is the candidate farthest from the landmarks and the samples so far.
    """
    landmarks = np.asarray(model.landmarks68, np.int64)
    candidates = np.setdiff1d(model.face_vertices, landmarks)
    if n_sample <= 0:
        return landmarks.astype(np.int32)
    points = model.mean[candidates].astype(np.float64)
    dist = np.min(np.linalg.norm(points[:, None] - model.mean[landmarks][None], axis=-1), axis=1)
    chosen = [int(np.random.default_rng(seed).integers(len(candidates)))]
    for _ in range(min(n_sample, len(candidates)) - 1):
        dist = np.minimum(dist, np.linalg.norm(points - points[chosen[-1]], axis=1))
        dist[chosen[-1]] = -1.0
        chosen.append(int(np.argmax(dist)))
    return np.concatenate([landmarks, candidates[chosen]]).astype(np.int32)


@dataclass(frozen=True, eq=False)
class TFMorphableModel:
    """Constant tensors of a face model (identity prefix of K modes) on V chosen vertices."""

    layout: ParamLayout
    mean: tf.Tensor       # (V, 3)
    id_basis: tf.Tensor   # (K, V, 3)
    exp_basis: tf.Tensor  # (E, V, 3)
    vertex_indices: np.ndarray | None  # (V,) into the full mesh, None for all vertices

    @classmethod
    def from_numpy(cls, model: MorphableModel, layout: ParamLayout, vertex_subset: np.ndarray | None = None,
                   dtype: tf.DType = tf.float32) -> "TFMorphableModel":
        model.layout(layout.n_id)  # validates K against the asset
        idx = slice(None) if vertex_subset is None else np.asarray(vertex_subset, np.int64)
        return cls(layout=layout,
                   mean=tf.constant(model.mean[idx], dtype),
                   id_basis=tf.constant(model.id_basis[: layout.n_id, idx], dtype),
                   exp_basis=tf.constant(model.exp_basis[:, idx], dtype),
                   vertex_indices=None if vertex_subset is None else np.asarray(vertex_subset, np.int32))

    @property
    def n_vertices(self) -> int:
        return int(self.mean.shape[0])

    @property
    def dtype(self) -> tf.DType:
        return self.mean.dtype

    def split(self, params: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """(B, P) -> camera (B, 3, 4), identity (B, K), expression (B, E)."""
        params = tf.convert_to_tensor(params, self.dtype)
        lay = self.layout
        camera = tf.reshape(params[:, lay.pose], (-1, 3, 4))
        return camera, params[:, lay.identity], params[:, lay.expression]

    def shape(self, id_coeffs: tf.Tensor, exp_coeffs: tf.Tensor) -> tf.Tensor:
        """Model-space vertices (B, V, 3): mean + id @ id_basis + exp @ exp_basis (cm)."""
        return (self.mean
                + tf.einsum("bk,kvc->bvc", tf.convert_to_tensor(id_coeffs, self.dtype), self.id_basis)
                + tf.einsum("be,evc->bvc", tf.convert_to_tensor(exp_coeffs, self.dtype), self.exp_basis))

    def image_points(self, params: tf.Tensor) -> tf.Tensor:
        """Image-space vertices (B, V, 3) of parameter vectors: P[:, :3] @ X + P[:, 3] (pixels)."""
        camera, id_coeffs, exp_coeffs = self.split(params)
        return project(self.shape(id_coeffs, exp_coeffs), camera)


def project(points: tf.Tensor, camera: tf.Tensor) -> tf.Tensor:
    """Model-space points (B, V, 3) through cameras (B, 3, 4) -> image space (B, V, 3)."""
    return tf.einsum("bvj,bij->bvi", points, camera[:, :, :3]) + camera[:, None, :, 3]
