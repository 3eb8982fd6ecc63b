"""Landmark fitting verified where the truth is known (`siamface data fit-check`).

Real datasets get their training labels by fitting the morphable model to annotated landmarks
(training.data.fitting). Here synthetic people are photographed at random poses and expressions,
their 68 landmarks (optionally with pixel noise, like a human annotator's) are fitted back one
image at a time (2D, and 3D as AFLW2000-3D provides) and jointly per identity, and the recovered
landmarks and identity shape are compared with the truth.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from siamface.edge_runtime.camera import CameraPose, compose_camera
from siamface.edge_runtime.morphable_model import MorphableModel
from siamface.edge_runtime.scoring import shape_errors_mm
from siamface.training.data.fitting import FitConfig, fit_identity, fit_landmarks


@dataclass
class FitCheckConfig:
    identities: int = 20
    images_per_identity: int = 5
    noise_px: float = 0.0        # Gaussian noise added to the 2D landmark targets
    seed: int = 0
    fit: FitConfig = field(default_factory=FitConfig)


def random_photo(model: MorphableModel, n_id: int, id_coeffs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Parameters of one photo of a person: a few expressions, a random pose, face ~100 px wide."""
    exp = np.zeros(len(model.exp_names))
    exp[rng.choice(len(exp), 3, replace=False)] = rng.uniform(0.1, 0.7, 3)
    pose = CameraPose(scale=rng.uniform(5, 8), yaw=np.radians(rng.uniform(-60, 60)),
                      pitch=np.radians(rng.uniform(-20, 20)), roll=np.radians(rng.uniform(-20, 20)),
                      tx=100 + rng.uniform(-10, 10), ty=100 + rng.uniform(-10, 10))
    return model.layout(n_id).join(compose_camera(pose), id_coeffs, exp)


def fit_check(model: MorphableModel, cfg: FitCheckConfig = FitCheckConfig()) -> dict[str, np.ndarray]:
    """Per-image and per-identity errors of every fitting mode, keyed by what they measure.

    ``landmarks_px``: fitted 2D landmarks vs the noise-free truth; ``residual_px``: vs the fitted
    targets; ``shape_mm_*``: the neutral identity shape after similarity alignment, for one 2D image,
    one 3D image, a joint fit of all images of the identity, and the average face.
    """
    rng = np.random.default_rng(cfg.seed)
    k = cfg.fit.n_id
    layout = model.layout(k)

    def shape_mm(id_coeffs: np.ndarray, truth: np.ndarray) -> float:
        return float(shape_errors_mm(model, id_coeffs[None], truth[None])[0])

    out: dict[str, list[float]] = {key: [] for key in ("landmarks_px", "residual_px", "shape_mm_single",
                                                       "shape_mm_single_3d", "shape_mm_joint", "shape_mm_mean_face")}
    for _ in range(cfg.identities):
        truth = rng.standard_normal(k)
        clean = [model.image_landmarks(random_photo(model, k, truth, rng), layout).astype(np.float64)
                 for _ in range(cfg.images_per_identity)]
        noisy = [lm[:, :2] + rng.normal(0.0, cfg.noise_px, (68, 2)) if cfg.noise_px else lm[:, :2] for lm in clean]
        for lm, target in zip(clean, noisy):
            fit = fit_landmarks(model, target, cfg.fit)
            out["landmarks_px"].append(float(np.linalg.norm(
                model.image_landmarks(fit.params, layout)[:, :2] - lm[:, :2], axis=1).mean()))
            out["residual_px"].append(fit.residual_px)
            out["shape_mm_single"].append(shape_mm(layout.split(fit.params)[1], truth))
        fit3d = fit_landmarks(model, np.c_[noisy[0], clean[0][:, 2]], cfg.fit)
        out["shape_mm_single_3d"].append(shape_mm(layout.split(fit3d.params)[1], truth))
        joint = fit_identity(model, noisy, cfg.fit)
        out["shape_mm_joint"].append(shape_mm(layout.split(joint[0].params)[1], truth))
        out["shape_mm_mean_face"].append(shape_mm(np.zeros(k), truth))
    return {key: np.asarray(v) for key, v in out.items()}
