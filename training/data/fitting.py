"""Fit the morphable model to 68 annotated landmarks (``fit_dataset`` turns real datasets into
training data with it).

Real datasets carry landmarks and pose, not parameters of our face model, so each image gets
parameters by regularised least squares, alternating
  (a) the camera: an affine fit of the model's 3D landmarks to the targets, snapped to the
      nearest weak-perspective [sR | t] (edge_runtime.camera's orthonormal_rotation), then the
      best scale and translation for that rotation;
  (b) the coefficients: linear least squares with Tikhonov priors, identity ~ N(0, 1) and
      expressions bounded to [0, 1] (a small box-constrained quadratic program),
for a few rounds, then refining camera and coefficients together by Levenberg-Marquardt steps
(the same bounded solve with camera corrections added): alternation alone crawls, because
camera and identity trade off against each other (face width vs yaw and scale).
Residuals enter (b) divided by the camera scale, i.e. in centimetres on the face, so the prior
weights mean the same at any image resolution: a weight w is the MAP choice for landmark noise
of sqrt(w) cm. All images of one identity can share one identity vector (a joint solve), which
removes most of the identity/expression/pose ambiguity a single view leaves.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Sequence

import cv2
import numpy as np

from siamface.edge_runtime.camera import orthonormal_rotation, project
from siamface.edge_runtime.crop import CropTransform
from siamface.edge_runtime.errors import SiamfaceError
from siamface.edge_runtime.morphable_model import MorphableModel
from siamface.training.config_io import Range


@dataclass(frozen=True)
class FitConfig:
    """How landmarks are fitted; weights are in cm^2 (see the module docstring).

    ``alternations`` camera/coefficient rounds come first, then joint steps up to
    ``max_iterations`` in all, stopping when a step lowers the cost by less than ``tol`` (relative).
    """

    n_id: Annotated[int, Range(ge=1)] = 40
    id_weight: Annotated[float, Range(ge=0)] = 1e-2
    exp_weight: Annotated[float, Range(ge=0)] = 1e-3
    alternations: Annotated[int, Range(ge=0)] = 5
    max_iterations: Annotated[int, Range(ge=1)] = 30
    tol: Annotated[float, Range(ge=0)] = 1e-6


@dataclass(frozen=True)
class FitResult:
    """Parameters (image coordinates), mean 2D landmark error in pixels, steps taken (incl. rejected)."""

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


def box_qp(hessian: np.ndarray, linear: np.ndarray, lower: np.ndarray, upper: np.ndarray, x: np.ndarray,
           max_iterations: int = 100, tol: float = 1e-9) -> np.ndarray:
    """argmin 0.5 x'Hx - c'x on a box, H positive definite: projected Newton with Armijo steps.

    Warm-started from the previous alternation it takes a few Cholesky-sized solves, where
    scipy's lsq_linear (trf or bvls) needs hundreds of milliseconds per call at this size.
    """
    x = np.clip(x, lower, upper)
    objective = lambda v: 0.5 * v @ hessian @ v - linear @ v  # noqa: E731
    for _ in range(max_iterations):
        gradient = hessian @ x - linear
        if np.linalg.norm(x - np.clip(x - gradient, lower, upper)) < tol:
            break
        free = ~(((x <= lower) & (gradient > 0)) | ((x >= upper) & (gradient < 0)))
        step = np.zeros_like(x)
        step[free] = -np.linalg.solve(hessian[np.ix_(free, free)], gradient[free])
        value, alpha = objective(x), 1.0
        while True:
            candidate = np.clip(x + alpha * step, lower, upper)
            if objective(candidate) <= value + 1e-4 * gradient @ (candidate - x) or alpha < 1e-8:
                break
            alpha *= 0.5
        x = candidate
    return x


N_POSE_STEP = 7  # log-scale, rotation vector (3), translation (3, in cm on the face)


def _skew(points: np.ndarray) -> np.ndarray:
    """(N, 3) -> (N, 3, 3) cross-product matrices [p]x."""
    x, y, z = points[:, 0], points[:, 1], points[:, 2]
    zero = np.zeros_like(x)
    return np.stack([np.stack([zero, -z, y], -1), np.stack([z, zero, -x], -1), np.stack([-y, x, zero], -1)], 1)


@dataclass
class _State:
    """The unknowns of one fit: per-image cameras and expressions, one identity."""

    cameras: list[np.ndarray]
    id_coeffs: np.ndarray
    exp_coeffs: np.ndarray  # (n, E)

    def cost(self, basis: LandmarkBasis, targets: Sequence[np.ndarray], config: FitConfig) -> float:
        """Squared landmark error in cm on the face plus the priors: what each step lowers."""
        total = config.id_weight * self.id_coeffs @ self.id_coeffs + config.exp_weight * np.sum(self.exp_coeffs ** 2)
        for camera, exp, target in zip(self.cameras, self.exp_coeffs, targets):
            predicted = project(basis.points(self.id_coeffs, exp), camera)[:, :target.shape[1]]
            total += np.sum((predicted - target) ** 2) / np.linalg.norm(camera[0, :3]) ** 2
        return float(total)


def _step(basis: LandmarkBasis, state: _State, targets: Sequence[np.ndarray], config: FitConfig,
          with_pose: bool, damping: float = 0.0) -> _State:
    """One linearised solve for increments of the identity, the expressions and (optionally) the cameras.

    Residuals are divided by each camera's scale (cm on the face). Without pose the problem is
    linear and one step is its exact solution; with pose it is a Gauss-Newton step, which moves
    camera and shape together where plain alternation crawls along their shared valley;
    ``damping`` (Marquardt: times the Hessian's diagonal) shortens it where the linearisation fails.
    """
    n_id, n_exp, n = basis.id_basis.shape[0], basis.exp_basis.shape[0], len(targets)
    n_pose = N_POSE_STEP if with_pose else 0
    block = n_pose + n_exp
    size = n_id + n * block
    hessian, linear = np.zeros((size, size)), np.zeros(size)
    for i, (camera, exp, target) in enumerate(zip(state.cameras, state.exp_coeffs, targets)):
        dim = target.shape[1]
        scale = np.linalg.norm(camera[0, :3])
        rows = camera[:dim, :3] / scale
        points = basis.points(state.id_coeffs, exp)
        columns = [np.einsum("dc,kvc->vdk", rows, basis.id_basis).reshape(-1, n_id)]
        if with_pose:
            translation = np.zeros((68, dim, 3))
            translation[:, np.arange(dim), np.arange(dim)] = 1.0
            columns += [(points @ rows.T).reshape(-1, 1),
                        -np.einsum("dc,vce->vde", rows, _skew(points)).reshape(-1, 3),
                        translation.reshape(-1, 3)]
        columns.append(np.einsum("dc,evc->vde", rows, basis.exp_basis).reshape(-1, n_exp))
        jacobian = np.concatenate(columns, axis=1)
        rhs = ((target - project(points, camera)[:, :dim]) / scale).ravel()
        cols = np.r_[0:n_id, n_id + i * block:n_id + (i + 1) * block]
        hessian[np.ix_(cols, cols)] += jacobian.T @ jacobian
        linear[cols] += jacobian.T @ rhs
    prior = np.concatenate([np.full(n_id, config.id_weight)]
                           + [np.r_[np.full(n_pose, 1e-9), np.full(n_exp, config.exp_weight)]] * n)
    current = np.concatenate([state.id_coeffs] + [np.r_[np.zeros(n_pose), e] for e in state.exp_coeffs])
    hessian[np.diag_indices(size)] = (1.0 + damping) * (hessian.diagonal() + prior)
    linear -= prior * current  # the priors pull the coefficients, not their increments, to zero
    free = np.full(n_id + n_pose, np.inf)
    lower = np.concatenate([-free[:n_id]] + [np.r_[-free[n_id:], -e] for e in state.exp_coeffs])
    upper = np.concatenate([free[:n_id]] + [np.r_[free[n_id:], 1.0 - e] for e in state.exp_coeffs])
    delta = box_qp(hessian, linear, lower, upper, np.zeros(size))
    cameras, exps = [], []
    for i, (camera, exp) in enumerate(zip(state.cameras, state.exp_coeffs)):
        inc = delta[n_id + i * block:n_id + (i + 1) * block]
        exps.append(np.clip(exp + inc[n_pose:], 0.0, 1.0))
        if with_pose:
            scale = np.linalg.norm(camera[0, :3])
            rotation = camera[:, :3] / scale @ cv2.Rodrigues(inc[1:4])[0]
            camera = np.concatenate([scale * np.exp(inc[0]) * rotation, camera[:, 3:] + scale * inc[4:7, None]], axis=1)
        cameras.append(camera)
    return _State(cameras, state.id_coeffs + delta[:n_id], np.array(exps))


def _residual_px(basis: LandmarkBasis, camera: np.ndarray, id_coeffs: np.ndarray, exp_coeffs: np.ndarray,
                 target: np.ndarray) -> float:
    predicted = project(basis.points(id_coeffs, exp_coeffs), camera)[:, :2]
    return float(np.linalg.norm(predicted - target[:, :2], axis=1).mean())


def fit_identity(model: MorphableModel, targets: Sequence[np.ndarray], config: FitConfig = FitConfig()) -> list[FitResult]:
    """Fit images of one person jointly: shared identity, per-image camera and expression.

    ``targets``: per image (68, 2) pixels, or (68, 3) with z in the project's image convention.
    First ``alternations`` rounds of (a) camera by ``fit_camera``, (b) exact coefficient solve;
    then Levenberg-Marquardt steps on everything until the cost stops falling (or max_iterations).
    """
    targets = [np.asarray(t, np.float64) for t in targets]
    if not targets or any(t.shape not in ((68, 2), (68, 3)) for t in targets):
        raise SiamfaceError(f"landmark targets must be (68, 2) or (68, 3), got {[t.shape for t in targets]}")
    basis = LandmarkBasis.of(model, config.n_id)
    state = _State([], np.zeros(config.n_id), np.zeros((len(targets), len(model.exp_names))))
    cost, damping = np.inf, 1e-3
    for iteration in range(1, config.max_iterations + 1):
        if iteration <= config.alternations:
            state.cameras = [fit_camera(basis.points(state.id_coeffs, e), t) for e, t in zip(state.exp_coeffs, targets)]
            state = _step(basis, state, targets, config, with_pose=False)
            cost = state.cost(basis, targets, config)
            continue
        candidate = _step(basis, state, targets, config, with_pose=True, damping=damping)
        new_cost = candidate.cost(basis, targets, config)
        if new_cost >= cost:
            damping *= 10.0
            if damping > 1e3:
                break
            continue
        state, improvement, cost, damping = candidate, cost - new_cost, new_cost, damping / 10.0
        if improvement < config.tol * cost:
            break
    layout = model.layout(config.n_id)
    return [FitResult(layout.join(c, state.id_coeffs, e), _residual_px(basis, c, state.id_coeffs, e, t), iteration)
            for c, e, t in zip(state.cameras, state.exp_coeffs, targets)]


def fit_landmarks(model: MorphableModel, target: np.ndarray, config: FitConfig = FitConfig()) -> FitResult:
    """Fit one image's 68 landmarks (see ``fit_identity``)."""
    return fit_identity(model, [target], config)[0]
def camera_to_crop(camera: np.ndarray, transform: CropTransform) -> np.ndarray:
    """Compose a crop's scale and offset into a camera: project(X, result) == to_crop(project(X, camera))."""
    out = np.asarray(camera, np.float64) * transform.scale
    out[0, 3] -= transform.scale * transform.x0
    out[1, 3] -= transform.scale * transform.y0
    return out
