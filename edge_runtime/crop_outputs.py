"""What the device makes of a batch of face crops: parameters and identity vectors, each crop fused
with its mirror image as the bundle says. Shared by evaluation's predictors and export's threshold
calibration, so both score exactly what the device compares (the reconstructor does the same for
one face, running the mirrored invoke only when it is needed)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .mirror_params import param_mirror
from .morphable_model import MorphableModel
from .normalise import fuse_mirrored, identity_vector, mirror
from .params import ParamLayout, Whitening

Run = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # uint8 crops -> (whitened params, raw embeddings)


@dataclass(frozen=True)
class OutputRules:
    """A bundle's rules for turning network outputs into results (bundle.json ``embedding``,
    ``reconstruction`` and ``whitening``)."""

    layout: ParamLayout
    whitening: Whitening
    decoder: MorphableModel
    flip_embedding: bool = False  # fuse each embedding with the mirrored crop's
    flip_params: bool = False     # fuse the parameters with the mirrored crop's, mapped back
    shape_weight: float = 0.0     # join the shape code to the embedding (normalise.identity_vector)


def crop_outputs(run: Run, crops: np.ndarray, rules: OutputRules, mirrored: bool = True
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(unwhitened params (N, P), unit identity vectors (N, D)) of uint8 crops (N, S, S, 3);
    ``mirrored=False`` skips the mirrored crops (crop-only parameters and embedding), as the device's
    refine pass does on its first crop."""
    z, emb = run(crops)
    params = rules.whitening.unwhiten(z)
    if mirrored and (rules.flip_embedding or rules.flip_params):
        mirrored_z, mirrored_emb = run(mirror(crops))
        if rules.flip_params:
            params = param_mirror(rules.decoder, rules.layout.n_id).fuse(
                params, rules.whitening.unwhiten(mirrored_z), rules.layout, crops.shape[2])
        if rules.flip_embedding:
            emb = fuse_mirrored(emb, mirrored_emb)
    return params, identity_vector(emb, params[:, rules.layout.identity], rules.shape_weight)
