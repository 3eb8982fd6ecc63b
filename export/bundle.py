"""Write a bundle folder atomically: model.tflite, the face-model decoder, licence, bundle.json
(sealed with its metadata digest by edge_runtime.bundle.write_meta)."""
from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import numpy as np

from edge_runtime.atomic import atomic_folder
from edge_runtime.bundle import DECODER, FORMAT_VERSION, MODEL, write_meta
from edge_runtime.morphable_model import MorphableModel, file_sha256, resolve_face_model_path
from edge_runtime.params import ParamLayout
from edge_runtime.provenance import utc_now


def decoder_bytes(model: MorphableModel, layout: ParamLayout) -> bytes:
    """The face model cut to the layout's identity modes, float16 bases, as an .npz; the index sets
    (extras such as fitting_vertices) go along so bundles and checkpoints score shapes alike."""
    buf = io.BytesIO()
    np.savez_compressed(
        buf, mean=model.mean.astype(np.float32), id_basis=model.id_basis[: layout.n_id].astype(np.float16),
        exp_basis=model.exp_basis.astype(np.float16), exp_names=np.array(model.exp_names),
        triangles=model.triangles, vertex_region=model.vertex_region, region_names=np.array(model.region_names),
        landmarks68=model.landmarks68, **model.extras)
    return buf.getvalue()


def write_bundle(out: str | os.PathLike, tflite: bytes, meta: dict, model: MorphableModel,
                 layout: ParamLayout, face_model_path: str | None = None) -> Path:
    """Create (or replace) the bundle folder ``out``; it appears only when complete."""
    with atomic_folder(out) as tmp:
        (tmp / MODEL).write_bytes(tflite)
        (tmp / DECODER).write_bytes(decoder_bytes(model, layout))
        licence = resolve_face_model_path(face_model_path).parent / "LICENSE"
        if licence.is_file():
            shutil.copyfile(licence, tmp / "FACE_MODEL_LICENSE")
        full = {"format_version": FORMAT_VERSION, "kind": "siamface.bundle", "created": utc_now(), **meta}
        full["model"] = {"file": MODEL, "sha256": file_sha256(tmp / MODEL), "size_bytes": len(tflite)}
        full["face_model"] = {**model.describe(), "decoder": {"file": DECODER, "sha256": file_sha256(tmp / DECODER)}}
        write_meta(tmp, full)
    return Path(out)
