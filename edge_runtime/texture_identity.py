"""The bundle's second identity model: a face's unwrapped texture (edge_runtime.unwrap) through
``texture_identity.tflite`` to an embedding. Run on the crop and parameters the device already
has (the refine pass's, mirror-fused), so it costs one unwrap and one small invoke per face.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .interpreter import TFLiteModel
from .morphable_model import MorphableModel
from .params import ParamLayout
from .unwrap import Unwrapper, UnwrapTable


class TextureEmbedder:
    """uint8 crops (N, S, S, 3) and their unwhitened parameters (N, P) -> raw embeddings (N, D)."""

    def __init__(self, model_path: str | Path, table: UnwrapTable, decoder: MorphableModel, layout: ParamLayout,
                 num_threads: int = 1):
        self.model = TFLiteModel(model_path, num_threads)
        self.unwrap = Unwrapper(table, decoder, layout)

    def __call__(self, crops: np.ndarray, params: np.ndarray) -> np.ndarray:
        return self.embed(self.unwrap.table.expand(self.unwrap(crops, params)))

    def embed(self, maps: np.ndarray) -> np.ndarray:
        """The network's input maps (N, H, W, channels) -> raw embeddings (N, D), one invoke each."""
        return np.asarray([self.model.run(m[None])["embedding"][0] for m in maps], np.float32)
