"""A face's parameters seen in a mirror, so a reconstruction can fuse a crop's prediction with its
mirrored crop's: the flip test of face alignment, done on the whole 3DMM so landmarks, mesh and
pose stay one consistent face.

Mirroring a crop of side S takes pixel x to S - 1 - x (pixel centres at integers). For a face
model whose mesh is left-right symmetric (ICT's: every vertex has a partner at (-x, y, z)) the
mirrored crop's parameters map back exactly where the model allows: the camera's image-x row and
its model-x column change sign (its x translation becomes S - 1 - t_x), each expression swaps
with its mirror blendshape (mouthSmile_L <-> mouthSmile_R, mouthLeft <-> mouthRight), and the
identity coefficients go through the linear map that carries each mirrored identity mode onto the
modes (ICT's leading modes are symmetric or antisymmetric; later ones are fitted by least squares).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .errors import SiamfaceError
from .morphable_model import MorphableModel
from .params import ParamLayout

SAMPLE_STEP = 8            # every 8th fitting vertex (about 1,000 of ICT's) fixes the maps
PARTNER_TOLERANCE = 0.05   # cm: median distance of a mirrored vertex from its partner on a symmetric mesh
EXPRESSION_TOLERANCE = 0.2  # relative RMS of a mirrored blendshape against its partner


@dataclass(frozen=True)
class ParamMirror:
    identity: np.ndarray    # (K, K): a mirrored face's identity coefficients are ``coeffs @ identity``
    expression: np.ndarray  # (E,): its expression weights are ``weights[expression]`` (an involution)

    def unmirror(self, params: np.ndarray, layout: ParamLayout, side: int) -> np.ndarray:
        """Parameters (..., P) predicted on a mirrored crop of ``side`` pixels -> the same face's
        parameters in the unmirrored crop."""
        camera, id_coeffs, exp_coeffs = layout.split(np.asarray(params, np.float64))
        camera = camera.copy()
        camera[..., :, 0] *= -1.0          # the model's x axis, mirrored
        camera[..., 0, :] *= -1.0          # the image's x axis, mirrored ...
        camera[..., 0, 3] += side - 1.0    # ... about the crop's centre line
        return layout.join(camera, id_coeffs @ self.identity, exp_coeffs[..., self.expression])

    def fuse(self, params: np.ndarray, mirrored: np.ndarray, layout: ParamLayout, side: int) -> np.ndarray:
        """The mean of a crop's parameters and its mirrored crop's, mapped back: the same whichever
        of the two crops is called the original."""
        return ((np.asarray(params, np.float64) + self.unmirror(mirrored, layout, side)) / 2).astype(np.float32)


FLIP_X = np.array([-1.0, 1.0, 1.0])


def mirror_partners(points: np.ndarray, queries: np.ndarray, chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """For each of ``queries`` (indices into ``points`` (V, 3)): the index of the point nearest its
    mirror image (x -> -x) and the distance to it, in numpy (the device has no KD-tree), a few
    hundred queries at a time."""
    points = np.asarray(points, np.float64)
    norms = (points ** 2).sum(axis=1)
    index = np.empty(len(queries), np.int64)
    for lo in range(0, len(queries), chunk):
        seen = points[queries[lo:lo + chunk]] * FLIP_X
        index[lo:lo + chunk] = (norms[None, :] - 2.0 * seen @ points.T).argmin(axis=1)  # |seen|^2 is the row's constant
    return index, np.linalg.norm(points[queries] * FLIP_X - points[index], axis=1)


@lru_cache(maxsize=4)
def param_mirror(model: MorphableModel, n_id: int) -> ParamMirror:
    """The mirror maps of ``model``'s first ``n_id`` identity modes and its expressions, derived
    from the mesh (0.1-0.2 s on the development VM, once per model); a one-line error when the mesh is not
    left-right symmetric, as a model without mirror partners cannot be fused."""
    sample = model.face_vertices[::SAMPLE_STEP]
    partner, gap = mirror_partners(model.mean, sample)
    if np.median(gap) > PARTNER_TOLERANCE:
        raise SiamfaceError(f"face model {model.name} is not left-right symmetric, so its parameters cannot be "
                            f"mirrored: export the bundle with flip_params=false")

    def at(basis: np.ndarray, vertices: np.ndarray, mirrored: bool) -> np.ndarray:
        """(modes, 3n): each mode at the vertices, x negated when seen in the mirror."""
        part = basis[:, vertices].astype(np.float64) * (FLIP_X if mirrored else 1.0)
        return part.reshape(len(basis), -1)

    modes, mirrored_modes = at(model.id_basis[:n_id], sample, False), at(model.id_basis[:n_id], partner, True)
    carry, *_ = np.linalg.lstsq(modes.T, mirrored_modes.T, rcond=None)  # mirrored mode k = sum_j carry[j, k] mode j
    shapes, mirrored_shapes = at(model.exp_basis, sample, False), at(model.exp_basis, partner, True)
    norms = (shapes ** 2).sum(1)
    misfit = (mirrored_shapes ** 2).sum(1)[:, None] + norms[None, :] - 2.0 * mirrored_shapes @ shapes.T  # squared
    swap = misfit.argmin(axis=1)
    relative = np.sqrt(np.maximum(misfit[np.arange(len(swap)), swap], 0.0) / np.maximum(norms, 1e-18))
    if np.any(swap[swap] != np.arange(len(swap))) or relative.max() > EXPRESSION_TOLERANCE:
        worst = model.exp_names[int(relative.argmax())]
        raise SiamfaceError(f"face model {model.name}: blendshape {worst} has no mirror partner, so its parameters "
                            f"cannot be mirrored: export the bundle with flip_params=false")
    return ParamMirror(identity=carry.T, expression=swap)
