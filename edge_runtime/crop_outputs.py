"""What the device makes of a batch of face crops: parameters and identity vectors, each crop fused
with its mirror image as the bundle says. Shared by evaluation's predictors and export's threshold
calibration, so both score exactly what the device compares (the reconstructor does the same for
one face, running the mirrored invoke only when it is needed)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

from .interpreter import TFLiteModel
from .mirror_params import param_mirror
from .morphable_model import MorphableModel
from .normalise import fuse_mirrored, identity_vector, mirror
from .params import ParamLayout, Whitening

if TYPE_CHECKING:
    from .bundle import Bundle

Run = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # uint8 crops -> (whitened params, raw embeddings)
Texture = Callable[[np.ndarray, np.ndarray], np.ndarray]  # uint8 crops, unwhitened params -> raw texture embeddings


def encoder_run(model: TFLiteModel) -> Run:
    """A bundle's encoder over a batch of crops, one invoke each as on the device."""

    def run(crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        outs = [model.run(c[None]) for c in crops]
        return (np.asarray([o["params"][0] for o in outs], np.float32),
                np.asarray([o["embedding"][0] for o in outs], np.float32))

    return run


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
    texture: Texture | None = None  # the texture identity model (edge_runtime.texture_identity) ...
    texture_weight: float = 0.0   # ... and its share in the identity vector

    @classmethod
    def of_bundle(cls, bundle: "Bundle", num_threads: int = 1) -> "OutputRules":
        """What ``bundle`` says, its texture identity model included."""
        return cls(bundle.layout, bundle.whitening, bundle.face_model, bundle.flip_embedding, bundle.flip_params,
                   bundle.shape_weight, bundle.texture_embedder(num_threads), bundle.texture_weight)


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
    texture = rules.texture(crops, params) if rules.texture is not None and rules.texture_weight > 0.0 else None
    return params, identity_vector(emb, params[:, rules.layout.identity], rules.shape_weight, texture,
                                   rules.texture_weight)
