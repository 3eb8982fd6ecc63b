"""Write a bundle folder atomically: model.tflite, the slim face-model decoder, licence, bundle.json
(sealed with its metadata digest by edge_runtime.bundle.write_meta)."""
from __future__ import annotations

import io
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np

from siamface.edge_runtime.atomic import atomic_folder
from siamface.edge_runtime.bundle import DECODER, FORMAT_VERSION, MODEL, write_meta
from siamface.edge_runtime.errors import SiamfaceError
from siamface.edge_runtime.morphable_model import MorphableModel, file_sha256
from siamface.edge_runtime.params import ParamLayout
from siamface.edge_runtime.provenance import utc_now
from siamface.export.tflite_metadata import FACE_MODEL_LICENCE, write_model
from siamface.training.face_model import resolve_face_model_path

DEVICE_REGION = "face"  # the device decodes the face geometry only; the other regions are render-only interiors
# Bases rounded to multiples of 2^-10 cm (at most 0.005 mm per unit coefficient) before float16: runs of
# equal low bits halve the compressed decoder (100 identity modes: 6.5 -> 3.4 MB).
BASIS_STEP_CM = 2.0 ** -10
# Vertex index sets the bundle keeps (restricted to the kept vertices); uv and the like are render-only.
INDEX_SETS = ("fitting_vertices", "rigid_vertices", "jawline_right", "jawline_left", "narrow_face_vertices")


def device_vertex_count(model: MorphableModel) -> int:
    """How many leading vertices form the face region: the asset puts them first, so every index set
    (landmarks68, fitting_vertices, ...) keeps its meaning in the slim decoder."""
    inside = model.region_mask(DEVICE_REGION)
    n = int(inside.sum())
    if not inside[:n].all():
        raise SiamfaceError(f"face model {model.name}: the {DEVICE_REGION!r} region is not the leading vertices; "
                            f"rebuild the asset with `siamface data face-model`")
    return n


def _slim_basis(basis: np.ndarray) -> np.ndarray:
    return (np.round(basis / BASIS_STEP_CM) * BASIS_STEP_CM).astype(np.float16)


def decoder_arrays(model: MorphableModel, layout: ParamLayout) -> dict[str, np.ndarray]:
    """What the device uses, and nothing else: the face-region vertices and the triangles between
    them, the layout's identity modes, mean and bases in float16 (load_face_model upcasts to float32;
    bases on the BASIS_STEP_CM grid), index sets restricted to the kept vertices (shape scores use the
    same vertices as training)."""
    n = device_vertex_count(model)
    triangles = model.triangles[(model.triangles < n).all(axis=1)]
    extras = {k: (v[v < n] if v.ndim else v) for k, v in model.extras.items() if k in INDEX_SETS}
    return dict(mean=model.mean[:n].astype(np.float16), id_basis=_slim_basis(model.id_basis[: layout.n_id, :n]),
                exp_basis=_slim_basis(model.exp_basis[:, :n]), exp_names=np.array(model.exp_names),
                triangles=triangles.astype(np.int32), vertex_region=np.zeros(n, np.uint8),
                region_names=np.array([DEVICE_REGION]), landmarks68=model.landmarks68.astype(np.int32), **extras)


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An .npz whose members are LZMA-compressed: the float16 bases take 42 % less than with
    savez_compressed's deflate (the shipped decoder 3.32 -> 1.93 MB), and np.load reads it unchanged
    (zipfile decompresses LZMA members), at about 60 ms more per load."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_LZMA) as z:
        for key, value in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)
            z.writestr(f"{key}.npy", member.getvalue())
    return buf.getvalue()


def decoder_bytes(model: MorphableModel, layout: ParamLayout) -> bytes:
    return npz_bytes(decoder_arrays(model, layout))


def write_bundle(out: str | os.PathLike, tflite: bytes, meta: dict, model: MorphableModel,
                 layout: ParamLayout, face_model_path: str | None = None) -> Path:
    """Create (or replace) the bundle folder ``out``; it appears only when complete. The model is written
    last, with TFLite metadata made from everything else (export.tflite_metadata), then hashed."""
    with atomic_folder(out) as tmp:
        (tmp / DECODER).write_bytes(decoder_bytes(model, layout))
        licence = resolve_face_model_path(face_model_path).parent / "LICENSE"
        if licence.is_file():
            shutil.copyfile(licence, tmp / FACE_MODEL_LICENCE)
        full = {"format_version": FORMAT_VERSION, "kind": "siamface.bundle", "created": utc_now(), **meta}
        full["face_model"] = {**model.describe(), "decoder": {
            "file": DECODER, "sha256": file_sha256(tmp / DECODER), "n_vertices": device_vertex_count(model),
            "dtype": "float16"}}
        full["model"] = write_model(tmp / MODEL, tflite, full, model.exp_names)
        write_meta(tmp, full)
    return Path(out)
