"""Score predicted parameters and embeddings against exact ground truth (numpy only).

Shared by validation during training, ``siamface evaluate`` and ``siamface compare``, so every
figure in the README and docs/results.md comes from one definition; in the numpy-only base layer
so that training, export and evaluation all sit above it (a device can score a bundle on
labelled photos too).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import metrics
from .camera import decompose_camera
from .errors import SiamfaceError
from .morphable_model import MorphableModel
from .params import ParamLayout


Pairs = tuple[np.ndarray, np.ndarray, np.ndarray]  # (i, j, same) indices into the images


@dataclass
class GroundTruth:
    """What a labelled evaluation set provides (any field may be None for real data)."""

    landmarks2d: np.ndarray | None      # (N, 68, 2); None for photos without landmarks
    pose_deg: np.ndarray | None         # (N, 3) yaw, pitch, roll; None without landmarks or for .pts sets
    identity: np.ndarray | None = None  # (N,)
    params: np.ndarray | None = None    # (N, P) when synthetic: exact identity coefficients
    pairs: Pairs | None = None          # the listed pairs of a pairs file (LFW protocol)
    convention: str = "3d"              # landmarks68's: "3d" fixed vertices, "2d" jaw on the contour (.pts sets)

    def verification_pairs(self, max_pairs: int = 20000) -> Pairs | None:
        """The pairs identity metrics use: the listed ones, else all pairs of a set with several
        identities (sampled beyond ``max_pairs``, seed 0 so every model sees the same), else None."""
        if self.pairs is not None:
            return self.pairs
        if self.identity is not None and len(np.unique(self.identity)) > 1:
            return metrics.all_pairs(self.identity, max_pairs=max_pairs, rng=0)
        return None


def poses_deg(params: np.ndarray, layout: ParamLayout) -> np.ndarray:
    """(N, 3) yaw, pitch, roll in degrees from the cameras of parameter vectors."""
    cams = layout.split(params)[0]
    return np.array([decompose_camera(c).degrees for c in cams])


# Faces per block of shape_errors_mm: 14 MB per float64 array of 9,409 vertices. Under glibc's
# largest mmap threshold (32 MB), so each block reuses the last one's memory instead of faulting in
# fresh pages (at 256 faces, 60 MB arrays, a 30,000-image split spent minutes on page faults).
SHAPE_BLOCK = 64
# Different-person pairs whose true shape difference ``score`` measures (about 3 s on 2 loaded cores).
SHAPE_PAIRS = 2000


def shape_errors_mm(model: MorphableModel, pred_id: np.ndarray, true_id: np.ndarray) -> np.ndarray:
    """(N,) mm between predicted and true neutral identity shapes over the face vertices, after
    similarity alignment (rotation, translation, uniform scale).

    Scale is aligned because a weak-perspective photo cannot show it: a large head far away and a
    small one near look the same, the camera's scale absorbs the size. (In the ICT model the first
    identity mode is 97% a uniform scaling.) NoW-style benchmarks align scale for the same reason.
    """
    v = model.face_vertices
    pred_id, true_id = np.atleast_2d(pred_id), np.atleast_2d(true_id)
    k = true_id.shape[-1]
    mean, basis = model.mean[v], model.id_basis[:k, v].reshape(k, -1)

    def neutral(coeffs: np.ndarray) -> np.ndarray:  # identity-only shapes, model space (cm): one BLAS product
        return mean + (coeffs @ basis).reshape(len(coeffs), len(v), 3)

    return np.concatenate([  # in blocks: a whole set's shapes at once (N x V x 3, float64) outgrow memory
        metrics.shape_error_mm(neutral(pred_id[i:i + SHAPE_BLOCK]), neutral(true_id[i:i + SHAPE_BLOCK]), with_scale=True)
        for i in range(0, max(len(true_id), 1), SHAPE_BLOCK)])


def _verification(codes: dict[str, np.ndarray], pairs: Pairs) -> dict:
    i, j, same = pairs
    return {f"verification_{name}": metrics.verification_report(metrics.cosine_scores(code[i], code[j]), same)
            for name, code in codes.items()}


def shape_reliance(codes: dict[str, np.ndarray], pairs: Pairs, true_id: np.ndarray, model: MorphableModel) -> dict:
    """``far_by_true_shape_<code>``: whether a code tells people apart by their 3D face shape
    (``metrics.far_by_distance`` over the true faces' similarity-aligned shape difference, in mm, on
    up to SHAPE_PAIRS of the different-person pairs, spread over the list)."""
    i, j, same = pairs
    diff = np.flatnonzero(~same)
    diff = diff[np.linspace(0, len(diff) - 1, min(len(diff), SHAPE_PAIRS)).astype(int)]
    i, j = i[diff], j[diff]
    distance = shape_errors_mm(model, true_id[i], true_id[j])
    return {f"far_by_true_shape_{name}": metrics.far_by_distance(metrics.cosine_scores(code[i], code[j]), distance)
            for name, code in codes.items()}


def _templates(embeddings: np.ndarray | None, truth: GroundTruth) -> dict:
    """``identification_templates``: the embedding against 4-photo templates, where people have 5+ photos."""
    found = None if embeddings is None or truth.identity is None else metrics.template_report(embeddings, truth.identity)
    return {} if found is None else {"identification_templates": found}


def rank1_first_enrolled(codes: np.ndarray, identity: np.ndarray) -> float | None:
    """Rank-1 identification with each person's first image enrolled and their other images as
    probes (people with one image stay in the gallery as distractors); None without probes."""
    _, first = np.unique(identity, return_index=True)
    probes = np.setdiff1d(np.arange(len(identity)), first)
    if probes.size == 0:
        return None
    return metrics.rank1(codes[first], identity[first], codes[probes], identity[probes])


def identity_score(pred_params: np.ndarray, embeddings: np.ndarray, truth: GroundTruth, layout: ParamLayout,
                   max_pairs: int = 20000) -> dict:
    """Photos with only identities or same/different pairs (LFW): verification of the shape code and
    the embedding, and rank-1 when identities are known. No landmark, pose or yaw-binned figures:
    there is no ground truth for them."""
    pairs = truth.verification_pairs(max_pairs)
    if pairs is None:
        raise SiamfaceError("identity metrics need a pairs file or at least two identities: add people to the set")
    codes = {"shape": pred_params[:, layout.identity], "embedding": embeddings}
    out = {"n_images": int(len(pred_params)), **_verification(codes, pairs), **_templates(embeddings, truth)}
    if truth.identity is not None:
        out["n_identities"] = int(len(np.unique(truth.identity)))
        for name, code in codes.items():
            out[f"rank1_{name}"] = rank1_first_enrolled(code, truth.identity)
    return out


def score(pred_params: np.ndarray, embeddings: np.ndarray | None, truth: GroundTruth,
          model: MorphableModel, layout: ParamLayout, max_pairs: int = 20000) -> dict:
    """Landmark NME by yaw bin (over all images when the set has no pose truth, as .pts sets),
    NME and signed offset per landmark group, pose MAE, 3D shape error, verification and pose
    invariance (``identity_score`` for photos without landmarks)."""
    if truth.landmarks2d is None:
        return identity_score(pred_params, embeddings, truth, layout, max_pairs)
    pred_lm = model.image_landmarks(pred_params, layout, truth.convention)[..., :2]
    per_image = metrics.nme(pred_lm, truth.landmarks2d)
    out = {"n_images": int(len(pred_params)), "landmark_convention": truth.convention,
           "landmark_groups": metrics.landmark_groups(pred_lm, truth.landmarks2d)}
    if truth.pose_deg is None:
        out["nme"] = {"mean": float(100.0 * per_image.mean()), "mean_all": float(100.0 * per_image.mean())}
    else:
        out.update(nme=metrics.nme_by_yaw(per_image, truth.pose_deg[:, 0]),
                   pose_mae=metrics.pose_mae(poses_deg(pred_params, layout), truth.pose_deg))
    pred_id = pred_params[:, layout.identity]
    if truth.params is not None:
        out["shape_error_mm"] = float(shape_errors_mm(model, pred_id, truth.params[:, layout.identity]).mean())
    pairs = truth.verification_pairs(max_pairs)
    if pairs is not None:
        codes = {"shape": pred_id} if embeddings is None else {"shape": pred_id, "embedding": embeddings}
        out.update(_verification(codes, pairs), **_templates(embeddings, truth))
        for name, code in codes.items():
            out[f"pose_invariance_{name}"] = metrics.pose_invariance(code, truth.identity, truth.pose_deg[:, 0])
        if truth.params is not None and not np.all(pairs[2]):
            out.update(shape_reliance(codes, pairs, truth.params[:, layout.identity], model))
    return out
