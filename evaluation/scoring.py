"""Score predicted parameters and embeddings against exact ground truth (numpy only).

Shared by validation during training, ``siamface evaluate`` and ``siamface compare``, so every
figure in the README comes from one definition.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_runtime.camera import decompose_camera
from edge_runtime.morphable_model import MorphableModel
from edge_runtime.params import ParamLayout
from evaluation import metrics


@dataclass
class GroundTruth:
    """What a labelled evaluation set provides (any field may be None for real data)."""

    landmarks2d: np.ndarray            # (N, 68, 2)
    pose_deg: np.ndarray               # (N, 3) yaw, pitch, roll
    identity: np.ndarray | None = None  # (N,)
    params: np.ndarray | None = None    # (N, P) when synthetic: exact identity coefficients


def poses_deg(params: np.ndarray, layout: ParamLayout) -> np.ndarray:
    """(N, 3) yaw, pitch, roll in degrees from the cameras of parameter vectors."""
    cams = layout.split(params)[0]
    return np.array([decompose_camera(c).degrees for c in cams])


def neutral_shapes(model: MorphableModel, id_coeffs: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Identity-only shapes (no expression) on a vertex subset, model space (cm)."""
    k = id_coeffs.shape[-1]
    return model.mean[vertices] + np.einsum("nk,kvc->nvc", id_coeffs, model.id_basis[:k, vertices])


def score(pred_params: np.ndarray, embeddings: np.ndarray | None, truth: GroundTruth,
          model: MorphableModel, layout: ParamLayout, max_pairs: int = 20000) -> dict:
    """Landmark NME by yaw bin, pose MAE, 3D shape error, verification and pose invariance."""
    pred_lm = model.image_landmarks(pred_params, layout)[..., :2]
    per_image = metrics.nme(pred_lm, truth.landmarks2d)
    out = {"n_images": int(len(pred_params)), "nme": metrics.nme_by_yaw(per_image, truth.pose_deg[:, 0]),
           "pose_mae": metrics.pose_mae(poses_deg(pred_params, layout), truth.pose_deg)}
    pred_id = pred_params[:, layout.identity]
    if truth.params is not None:
        vertices = np.asarray(model.extras.get("fitting_vertices", np.arange(model.n_vertices)))
        gt = neutral_shapes(model, truth.params[:, layout.identity], vertices)
        out["shape_error_mm"] = float(metrics.shape_error_mm(neutral_shapes(model, pred_id, vertices), gt).mean())
    if truth.identity is not None and len(np.unique(truth.identity)) > 1:
        i, j, same = metrics.all_pairs(truth.identity, max_pairs=max_pairs, rng=0)
        codes = {"shape": pred_id} if embeddings is None else {"shape": pred_id, "embedding": embeddings}
        for name, code in codes.items():
            out[f"verification_{name}"] = metrics.verification_report(metrics.cosine_scores(code[i], code[j]), same)
            out[f"pose_invariance_{name}"] = metrics.pose_invariance(code, truth.identity, truth.pose_deg[:, 0])
    return out
