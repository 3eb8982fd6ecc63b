"""Fit the morphable model to 68 annotated landmarks, and turn real datasets into training data.

Real datasets carry landmarks and pose, not parameters of our face model, so each image gets
parameters by regularised least squares, alternating
  (a) the camera: an affine fit of the model's 3D landmarks to the targets, snapped to the
      nearest weak-perspective [sR | t] (edge_runtime.camera's orthonormal_rotation), then the
      best scale and translation for that rotation;
  (b) the coefficients: linear least squares with Tikhonov priors, identity ~ N(0, 1) and
      expressions bounded to [0, 1] (scipy's lsq_linear).
Residuals enter (b) divided by the camera scale, i.e. in centimetres on the face, so the prior
weights mean the same at any image resolution: a weight w is the MAP choice for landmark noise
of sqrt(w) cm. All images of one identity can share one identity vector (a joint solve), which
removes most of the identity/expression/pose ambiguity a single view leaves.
"""
from __future__ import annotations

import itertools
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import cv2
import numpy as np
import scipy
from scipy.optimize import lsq_linear

from edge_runtime.camera import decompose_camera, orthonormal_rotation, project
from edge_runtime.crop import CropTransform, crop_from_box, crop_image, landmark_box
from edge_runtime.errors import SiamfaceError
from edge_runtime.morphable_model import MorphableModel
from edge_runtime.params import ParamLayout, Whitening
from training.data.dataset import (FORMAT_VERSION, MANIFEST, atomic_save_npy, atomic_write_json,
                                   label_columns, write_shard)
from training.data.real_formats import RealSample


@dataclass(frozen=True)
class FitConfig:
    """How landmarks are fitted; weights are in cm^2 (see the module docstring)."""

    n_id: int = 40
    id_weight: float = 1e-2
    exp_weight: float = 1e-3
    max_iterations: int = 30
    tol_px: float = 1e-3


@dataclass(frozen=True)
class FitResult:
    """Parameters (image coordinates), mean 2D landmark error in pixels, iterations used."""

    params: np.ndarray
    residual_px: float
    iterations: int


@dataclass(frozen=True)
class LandmarkBasis:
    """The model restricted to its 68 landmark vertices (float64), built once per fit."""

    mean: np.ndarray       # (68, 3)
    id_basis: np.ndarray   # (K, 68, 3)
    exp_basis: np.ndarray  # (E, 68, 3)

    @classmethod
    def of(cls, model: MorphableModel, n_id: int) -> "LandmarkBasis":
        idx = model.landmarks68
        return cls(model.mean[idx].astype(np.float64), model.id_basis[:n_id, idx].astype(np.float64),
                   model.exp_basis[:, idx].astype(np.float64))

    def points(self, id_coeffs: np.ndarray, exp_coeffs: np.ndarray) -> np.ndarray:
        return (self.mean + np.einsum("k,kvc->vc", id_coeffs, self.id_basis)
                + np.einsum("e,evc->vc", exp_coeffs, self.exp_basis))


def fit_camera(points: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Weak-perspective camera (3x4) taking model points (N, 3) onto image targets (N, 2 or 3).

    With 2D targets the depth translation is unobservable and set to 0.
    """
    dim = target.shape[1]
    homogeneous = np.concatenate([points, np.ones((len(points), 1))], axis=1)
    affine = np.linalg.lstsq(homogeneous, target, rcond=None)[0].T  # (dim, 4)
    _, rotation = orthonormal_rotation(affine[:, :3])
    rotated = points @ rotation[:dim].T
    centred = rotated - rotated.mean(axis=0)
    scale = float(np.sum(centred * (target - target.mean(axis=0))) / np.sum(centred * centred))
    translation = np.zeros(3)
    translation[:dim] = target.mean(axis=0) - scale * rotated.mean(axis=0)
    return np.concatenate([scale * rotation, translation[:, None]], axis=1)


def _solve_coefficients(basis: LandmarkBasis, cameras: Sequence[np.ndarray], targets: Sequence[np.ndarray],
                        config: FitConfig) -> tuple[np.ndarray, np.ndarray]:
    """One identity vector shared by all images, one expression vector each: a bounded linear solve."""
    n_id, n_exp, n = basis.id_basis.shape[0], basis.exp_basis.shape[0], len(targets)
    blocks, rhs = [], []
    for i, (camera, target) in enumerate(zip(cameras, targets)):
        dim = target.shape[1]
        scale = np.linalg.norm(camera[0, :3])
        linear = camera[:dim, :3] / scale
        row = np.zeros((68 * dim, n_id + n * n_exp))
        row[:, :n_id] = np.einsum("dc,kvc->vdk", linear, basis.id_basis).reshape(-1, n_id)
        row[:, n_id + i * n_exp:n_id + (i + 1) * n_exp] = np.einsum(
            "dc,evc->vde", linear, basis.exp_basis).reshape(-1, n_exp)
        blocks.append(row)
        rhs.append(((target - project(basis.mean, camera)[:, :dim]) / scale).ravel())
    prior = np.sqrt(np.concatenate([np.full(n_id, config.id_weight), np.full(n * n_exp, config.exp_weight)]))
    system = np.concatenate(blocks + [np.diag(prior)])
    values = np.concatenate(rhs + [np.zeros(len(prior))])
    lower = np.concatenate([np.full(n_id, -np.inf), np.zeros(n * n_exp)])
    upper = np.concatenate([np.full(n_id, np.inf), np.ones(n * n_exp)])
    solution = lsq_linear(system, values, bounds=(lower, upper), method="bvls").x
    return solution[:n_id], solution[n_id:].reshape(n, n_exp)


def _residual_px(basis: LandmarkBasis, camera: np.ndarray, id_coeffs: np.ndarray, exp_coeffs: np.ndarray,
                 target: np.ndarray) -> float:
    predicted = project(basis.points(id_coeffs, exp_coeffs), camera)[:, :2]
    return float(np.linalg.norm(predicted - target[:, :2], axis=1).mean())


def fit_identity(model: MorphableModel, targets: Sequence[np.ndarray], config: FitConfig = FitConfig()) -> list[FitResult]:
    """Fit images of one person jointly: shared identity, per-image camera and expression.

    ``targets``: per image (68, 2) pixels, or (68, 3) with z in the project's image convention.
    """
    targets = [np.asarray(t, np.float64) for t in targets]
    if not targets or any(t.shape not in ((68, 2), (68, 3)) for t in targets):
        raise SiamfaceError(f"landmark targets must be (68, 2) or (68, 3), got {[t.shape for t in targets]}")
    basis = LandmarkBasis.of(model, config.n_id)
    layout = model.layout(config.n_id)
    id_coeffs = np.zeros(config.n_id)
    exp_coeffs = np.zeros((len(targets), len(model.exp_names)))
    previous = np.inf
    for iteration in range(1, config.max_iterations + 1):
        cameras = [fit_camera(basis.points(id_coeffs, e), t) for e, t in zip(exp_coeffs, targets)]
        id_coeffs, exp_coeffs = _solve_coefficients(basis, cameras, targets, config)
        residuals = [_residual_px(basis, c, id_coeffs, e, t) for c, e, t in zip(cameras, exp_coeffs, targets)]
        if abs(previous - np.mean(residuals)) < config.tol_px:
            break
        previous = float(np.mean(residuals))
    return [FitResult(layout.join(c, id_coeffs, e), r, iteration)
            for c, e, r in zip(cameras, exp_coeffs, residuals)]


def fit_landmarks(model: MorphableModel, target: np.ndarray, config: FitConfig = FitConfig()) -> FitResult:
    """Fit one image's 68 landmarks (see ``fit_identity``)."""
    return fit_identity(model, [target], config)[0]
