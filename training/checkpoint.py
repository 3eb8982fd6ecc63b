"""The float (or QAT) encoder checkpoint: a folder with the Keras model and what made it.

``checkpoint.json`` records kind, parameter layout, whitening, face model, data summary, the
config and tool versions; ``encoder.h5`` is the tf-keras model. Export and QAT read only this.
``HEAD.npz`` holds the weights of each training-only head the losses had (``margin_head``: the
ArcFace/CosFace class vectors; ``trait_head``: the traits' regression), so QAT fine-tunes against
trained heads instead of random ones; they are never exported. Checkpoints written before the
trait head kept the class vectors alone in ``margin_head.npy``; they still load.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from siamface.edge_runtime.atomic import atomic_folder, atomic_write_json
from siamface.edge_runtime.errors import SiamfaceError
from siamface.edge_runtime.versioned_json import read_versioned_json

META = "checkpoint.json"
ENCODER = "encoder.h5"
LEGACY_MARGIN_HEAD = "margin_head.npy"  # the class vectors, before heads had their own .npz
FORMAT_VERSION = 1
KINDS = ("float", "qat")


def save_checkpoint(folder: str | os.PathLike, encoder, meta: dict,
                    heads: dict[str, list[np.ndarray]] | None = None) -> Path:
    """Write the encoder, its training-only heads' weights (name -> arrays) and its metadata into
    ``folder``, replacing it only when complete."""
    with atomic_folder(folder) as tmp:
        encoder.save(tmp / ENCODER, include_optimizer=False)
        for name, weights in (heads or {}).items():
            np.savez(tmp / f"{name}.npz", *weights)
        atomic_write_json(tmp / META, {"format_version": FORMAT_VERSION, **meta})
    return Path(folder)


def load_head(folder: str | os.PathLike, name: str) -> list[np.ndarray] | None:
    """The weights of training-only head ``name`` saved with a checkpoint, or None: it had none."""
    folder = Path(folder)
    if (folder / f"{name}.npz").is_file():
        with np.load(folder / f"{name}.npz") as saved:
            return [saved[f"arr_{i}"] for i in range(len(saved.files))]
    legacy = folder / LEGACY_MARGIN_HEAD
    return [np.load(legacy)] if name == "margin_head" and legacy.is_file() else None


def read_checkpoint_meta(folder: str | os.PathLike) -> dict:
    folder = Path(folder)
    path = folder / META
    if not path.is_file() or not (folder / ENCODER).is_file():
        raise SiamfaceError(f"{folder} is not a siamface checkpoint (needs {META} and {ENCODER}): "
                            f"pass the folder written by `siamface train` or `siamface qat`")
    return read_versioned_json(path, FORMAT_VERSION, "checkpoint", "retrain with this version", KINDS)


def read_float_checkpoint_meta(folder: str | os.PathLike, name: str, use: str) -> dict:
    """``read_checkpoint_meta`` for a run that continues a float checkpoint (``use``: QAT, ``init``),
    refusing a QAT one; ``name`` is how the error names the folder."""
    meta = read_checkpoint_meta(folder)
    if meta["kind"] != "float":
        raise SiamfaceError(f"{name} is a {meta['kind']} checkpoint: {use} starts from a float checkpoint "
                            f"(the best/ folder of `siamface train`)")
    return meta


def parent_record(folder: str | os.PathLike, meta: dict) -> dict:
    """What a run that starts from checkpoint ``folder`` records about it (QAT, ``init``): the
    folder, its step and validation NME, its run's config and, when that run started from another
    checkpoint, its own parent, so a bundle carries every cycle of training that made it."""
    record = {"checkpoint": str(folder), "step": meta["step"], "validation_nme": meta["validation"]["nme"]["mean"],
              "config": meta["config"]}
    return {**record, "parent": meta["parent"]} if meta.get("parent") else record


def load_checkpoint(folder: str | os.PathLike):
    """(encoder, meta); QAT checkpoints are loaded inside tfmot's quantize scope."""
    import tf_keras as keras

    folder = Path(folder)
    meta = read_checkpoint_meta(folder)
    try:
        if meta["kind"] == "qat":
            import tensorflow_model_optimization as tfmot

            with tfmot.quantization.keras.quantize_scope():
                encoder = keras.models.load_model(folder / ENCODER, compile=False)
        else:
            encoder = keras.models.load_model(folder / ENCODER, compile=False)
    except (OSError, ValueError) as exc:
        raise SiamfaceError(f"cannot load {folder / ENCODER} ({str(exc).splitlines()[0]}): "
                            f"the checkpoint is damaged, retrain or restore it") from None
    return encoder, meta
