"""A common face of the two things users evaluate: a Keras checkpoint or a TFLite bundle.

Both map face crops (uint8, N x S x S x 3) to unwhitened parameters and L2-normalised
embeddings. Bundles run on the real TFLite interpreter; checkpoints need TensorFlow, imported
only when one is evaluated.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from siamface.edge_runtime.errors import SiamfaceError
from siamface.edge_runtime.crop_outputs import OutputRules, Run, crop_outputs, encoder_run
from siamface.edge_runtime.morphable_model import MorphableModel
from siamface.edge_runtime.normalise import normalise_pixels
from siamface.edge_runtime.params import ParamLayout, Whitening


@dataclass
class Predictor:
    name: str
    kind: str                    # "checkpoint" or the bundle variant
    size: int                    # input crop size
    rules: OutputRules           # how outputs become parameters and identity vectors, as on the device
    run: Run                     # uint8 crops -> (z, raw embedding)
    meta: dict
    invoke_ms: list[float] = field(default_factory=list)

    @property
    def layout(self) -> ParamLayout:
        return self.rules.layout

    @property
    def decoder(self) -> MorphableModel:
        return self.rules.decoder

    def predict(self, crops: np.ndarray, mirrored: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(unwhitened params (N, P), unit identity vectors (N, D)) as the device makes them
        (edge_runtime.crop_outputs); ``mirrored=False`` skips the mirrored crops, as the device's
        refine pass does on its first crop."""
        start = time.perf_counter()
        out = crop_outputs(self.run, crops, self.rules, mirrored)
        n_runs = 2 if mirrored and (self.rules.flip_embedding or self.rules.flip_params) else 1
        self.invoke_ms.append((time.perf_counter() - start) * 1000.0 / max(1, n_runs * len(crops)))
        return out


def bundle_predictor(path: str | Path, num_threads: int = 1) -> Predictor:
    from siamface.edge_runtime.bundle import load_bundle
    from siamface.edge_runtime.interpreter import TFLiteModel

    bundle = load_bundle(path)
    run = encoder_run(TFLiteModel(bundle.model_path, num_threads))

    return Predictor(str(path), bundle.variant, bundle.input_size, OutputRules.of_bundle(bundle, num_threads), run,
                     {**bundle.meta, "size_bytes": bundle.meta["model"]["size_bytes"]})


def checkpoint_predictor(path: str | Path) -> Predictor:
    """A Keras checkpoint, its parameters and embedding made as the bundles ``siamface export``
    writes from it (mirrored crop fused by default); its identity vector is the embedding alone,
    as the shape code's weight is chosen at export."""
    from siamface.export.exporter import ExportConfig
    from siamface.training.checkpoint import load_checkpoint
    from siamface.training.face_model import check_same_face_model, load_training_face_model

    encoder, meta = load_checkpoint(path)
    model = load_training_face_model(meta["config"].get("face_model") or None)
    check_same_face_model(meta["face_model"], model, f"checkpoint {path}",
                          "set SIAMFACE_FACE_MODEL to the matching asset, or evaluate its exported bundle")

    def run(crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        outs = [encoder(normalise_pixels(crops[i:i + 64].astype(np.float32)), training=False)
                for i in range(0, len(crops), 64)]
        return np.concatenate([np.asarray(o[0]) for o in outs]), np.concatenate([np.asarray(o[1]) for o in outs])

    rules = OutputRules(ParamLayout.from_dict(meta["param_layout"]), Whitening.from_dict(meta["whitening"]), model,
                        ExportConfig.flip_embedding, ExportConfig.flip_params)
    return Predictor(str(path), f"checkpoint-{meta['kind']}", int(meta["image_size"]), rules, run, meta)


def mean_face_predictor(reference: Predictor) -> Predictor:
    """The baseline a trained model must beat: the training set's mean parameters (mean pose,
    mean face, mean expression) for every image, and one constant embedding (chance identity)."""

    def run(crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(crops)
        return np.zeros((n, reference.layout.size), np.float32), np.ones((n, 2), np.float32)

    return Predictor(f"mean of {reference.name}", "mean-face", reference.size,
                     OutputRules(reference.layout, reference.rules.whitening, reference.decoder), run,
                     {"face_model": reference.meta["face_model"]} if "face_model" in reference.meta else {})


def open_predictor(path: str | Path) -> Predictor:
    """A bundle folder (bundle.json) or a checkpoint folder (checkpoint.json)."""
    path = Path(path)
    if (path / "bundle.json").is_file() or path.name == "bundle.json":
        return bundle_predictor(path)
    if (path / "checkpoint.json").is_file():
        return checkpoint_predictor(path)
    raise SiamfaceError(f"{path} is neither a bundle (bundle.json) nor a checkpoint (checkpoint.json): "
                        f"pass a folder written by `siamface export` or `siamface train`")
