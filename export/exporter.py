"""Export a checkpoint to bundles: convert each variant, check parity with the real interpreter,
calibrate its verification threshold on held-out identities, write the bundle.
"""
from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Annotated

import numpy as np
from tqdm import tqdm

from siamface.edge_runtime.bundle import load_bundle
from siamface.edge_runtime.crop import CENTER_SHIFT, SIDE_FACTOR
from siamface.edge_runtime.errors import SiamfaceError
from siamface.edge_runtime.mirror_params import param_mirror
from siamface.edge_runtime.crop_outputs import OutputRules, Run, crop_outputs
from siamface.edge_runtime.normalise import PIXEL_NORMALISATION
from siamface.edge_runtime.params import Whitening
from siamface.edge_runtime.provenance import package_versions
from siamface.export import parity
from siamface.export.bundle import write_bundle
from siamface.export.calibration import choose_shape_weight, every_pair, operating_point, pair_scores, shortfall
from siamface.export.tflite import FULL_INTEGER, VARIANTS, convert
from siamface.training.checkpoint import load_checkpoint
from siamface.training.config_io import Range
from siamface.training.data.dataset import Dataset, SplitData
from siamface.training.face_model import check_same_face_model, load_training_face_model

FLOAT_VARIANTS = ("fp32", "fp16", "dynamic-int8", "int8-ptq")
QAT_VARIANTS = ("int8-qat",)


@dataclass
class ExportConfig:
    far_target: Annotated[float, Range(gt=0, lt=1)] = 1e-2   # the verification threshold is set for this FAR
    representative_images: Annotated[int, Range(ge=1)] = 200  # training images for int8 calibration (PTQ)
    parity_images: Annotated[int, Range(ge=1)] = 64           # held-out images compared against Keras
    calibration_images: Annotated[int, Range(ge=2)] = 1000    # held-out images whose pairs set the threshold
                                                              # (and validation images the shape weight's)
    flip_embedding: bool = True   # the device fuses each embedding with the mirrored crop's (normalise.fuse_mirrored)
    flip_params: bool = True      # ... and each reconstruction's parameters, mapped back (edge_runtime.mirror_params)
    # The shape code's share in the identity vector (normalise.identity_vector); None: the share in
    # calibration.SHAPE_WEIGHTS chosen on the validation people (calibration.choose_shape_weight).
    shape_weight: Annotated[float, Range(ge=0, lt=1)] | None = None
    face_model: str = ""


def held_out(dataset: Dataset) -> SplitData:
    """Identities never trained on: the test split, else the validation split."""
    test = dataset.split("test")
    return test if len(test) else dataset.split("val")


def calibrate(embeddings: np.ndarray, identities: np.ndarray, far_target: float) -> dict:
    """Threshold on cosine similarity at ``far_target`` over all pairs of held-out images; a FAR below
    what the pairs can measure is raised to the smallest measurable one, with a warning."""
    i, j, same = every_pair(identities)
    people = np.unique(identities, return_inverse=True)[1]
    point = operating_point(pair_scores(embeddings, i, j), same, far_target, clamp_far=True,
                            units=(people[i], people[j]))
    if "far_target_used" in point:
        tqdm.write(f"warning: {point['n_pairs']['different']} different-person pairs cannot measure FAR "
                   f"{far_target:g}: threshold set at FAR {point['far_target_used']:.2g}; raise calibration_images for a lower one",
                   file=sys.stderr)
    if shortfall(point):
        tqdm.write(f"warning: {shortfall(point)}", file=sys.stderr)
    return {**point, "identities": int(len(np.unique(identities)))}


def spread_sample(split: SplitData, n: int) -> np.ndarray:
    """At most ``n`` photo indices, spread evenly over the split."""
    return np.linspace(0, len(split) - 1, min(n, len(split))).astype(np.int64)


def shape_weight_entries(cfg: ExportConfig, run: Run, rules: OutputRules, dataset: Dataset) -> dict:
    """The bundle's ``embedding`` entries for the shape code: the configured share, or the one chosen
    on the validation people (their photos through the device's outputs), with where it came from."""
    if cfg.shape_weight is not None:
        return {"shape_weight": cfg.shape_weight, "shape_weight_from": {"source": "config"}}
    val = dataset.split("val")
    idx = spread_sample(val, cfg.calibration_images)
    ids = val.identity[idx]
    if len(np.unique(ids)) < 2 or len(np.unique(ids)) == len(ids):
        return {"shape_weight": 0.0, "shape_weight_from": {
            "source": f"none: the {val.name} split of {dataset.root} has no pairs of people to choose on"}}
    params, embs = crop_outputs(run, val.images(idx), replace(rules, shape_weight=0.0))
    weight, record = choose_shape_weight(params, embs, ids, rules.layout)
    return {"shape_weight": weight, "shape_weight_from": {
        "source": "EER on validation people", "data": f"{val.name} split of {dataset.root}",
        "images": int(len(idx)), "identities": int(len(np.unique(ids))), **record}}


def synthetic_identity(cfg: ExportConfig, run: Run, rules: OutputRules, dataset: Dataset) -> tuple[dict, dict]:
    """(``embedding`` entries, ``verification`` block) of a bundle from a synthetic dataset: the shape
    code's share (``shape_weight_entries``), then the threshold at ``cfg.far_target`` over the
    held-out people's identity vectors as the device computes them. Export and `siamface calibrate`
    on a dataset both use it."""
    identity = shape_weight_entries(cfg, run, rules, dataset)
    heldout = held_out(dataset)
    idx = spread_sample(heldout, cfg.calibration_images)
    scored = crop_outputs(run, heldout.images(idx), replace(rules, shape_weight=identity["shape_weight"]))[1]
    return identity, {"source": "synthetic", "data": f"{heldout.name} split of {dataset.root}", "images": int(len(idx)),
                      **calibrate(scored, heldout.identity[idx], cfg.far_target)}


def export_checkpoint(checkpoint: str | Path, variants: list[str], out_root: str | Path,
                      cfg: ExportConfig = ExportConfig(), progress: bool = True) -> list[Path]:
    """Write one bundle per variant into ``out_root/<variant>``; returns their folders."""
    encoder, meta = load_checkpoint(checkpoint)
    allowed = QAT_VARIANTS if meta["kind"] == "qat" else FLOAT_VARIANTS
    for v in variants:
        if v not in VARIANTS:
            raise SiamfaceError(f"unknown variant {v!r}: choose from {', '.join(VARIANTS)}")
        if v not in allowed:
            raise SiamfaceError(f"variant {v} cannot be exported from the {meta['kind']} checkpoint {checkpoint}: "
                                f"it exports {', '.join(allowed)}" + (" (run `siamface qat` for int8-qat)" if v == "int8-qat" else ""))
    model = load_training_face_model(cfg.face_model or meta["config"].get("face_model") or None)
    check_same_face_model(meta["face_model"], model, f"checkpoint {checkpoint}",
                          "pass the matching --face-model, or retrain with this code")
    layout = model.layout(meta["param_layout"]["n_id"])
    if cfg.flip_params:
        param_mirror(model, layout.n_id)  # a face model without mirror partners fails here, before any conversion
    dataset = Dataset.open(meta["config"]["data"][0])
    whitening = Whitening.from_dict(meta["whitening"])
    train = dataset.split("train")
    rep_images = train.images(spread_sample(train, cfg.representative_images))
    heldout = held_out(dataset)
    parity_images = heldout.images(spread_sample(heldout, cfg.parity_images))
    rules = OutputRules(layout, whitening, model, cfg.flip_embedding, cfg.flip_params)
    written = []
    for variant in tqdm(variants, desc="export", disable=not progress):
        tflite = convert(encoder, variant, (lambda: iter(rep_images)) if variant in FULL_INTEGER else None)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.tflite"
            path.write_bytes(tflite)
            params, embs = parity.run_tflite(path, parity_images)
            identity, verification = synthetic_identity(cfg, partial(parity.run_tflite, path), rules, dataset)
        figures = parity.compare((params, embs), encoder, parity_images, model, layout, whitening)
        if variant == "fp32":
            parity.check_fp32(figures, checkpoint)
        bundle_meta = {
            "variant": variant, "variant_description": VARIANTS[variant],
            "input": {"name": "pixels", "size": dataset.image_size, "pixel_format": "RGB",
                      "dtype": "int8" if variant in FULL_INTEGER else "float32",
                      "range": [-128, 127] if variant in FULL_INTEGER else [0, 255],
                      "pixels": "p - 128 (uint8 XOR 0x80)" if variant in FULL_INTEGER else "p",
                      "normalisation": f"{PIXEL_NORMALISATION}, inside the model"},
            "outputs": {"params": "params (whitened)", "embedding": "embedding (not normalised)"},
            "param_layout": layout.to_dict(), "whitening": meta["whitening"],
            "crop": {"convention": "3ddfa", "center_shift": CENTER_SHIFT, "side_factor": SIDE_FACTOR},
            "embedding": {"dim": int(embs.shape[1]), "normalise": "l2", "similarity": "cosine",
                          "flip": cfg.flip_embedding, **identity},
            "reconstruction": {"flip": cfg.flip_params},
            "verification": verification,
            "parity": figures,
            "training": {"checkpoint": str(checkpoint), "kind": meta["kind"], "step": meta["step"],
                         "validation_nme": meta["validation"]["nme"]["mean"], "data": meta["training_data"],
                         "config": meta["config"], "parent": meta.get("parent")},  # QAT: the float run it started from
            "versions": package_versions("tensorflow", "tf-keras", "tensorflow-model-optimization", "ai-edge-litert"),
        }
        folder = write_bundle(Path(out_root) / variant, tflite, bundle_meta, model, layout, cfg.face_model or None)
        load_bundle(folder)  # re-read and re-hash what was written
        written.append(folder)
    return written
