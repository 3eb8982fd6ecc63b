"""TFLite metadata in every exported model, so Android Studio, MediaPipe and TFLite Support tooling
see what the model takes and gives without reading bundle.json: the input image format and value
range, each output's name and meaning, the licence, and as associated files the parameter labels
(53 blendshape names among them), bundle.json and the face-model licence.

The metadata is TFLite Support's flatbuffer (metadata_schema.fbs, file identifier "M001"), written
here with flatbuffers.Builder from the field slots in SCHEMA (no generated code ships for it); the
model holds it as a buffer named TFLITE_METADATA, and the associated files follow the model as an
uncompressed zip archive, which TFLite interpreters ignore. The model itself is read and rewritten
with LiteRT's generated schema, weights byte for byte (buffers kept 16-byte aligned as the
converter writes them).

The embedded bundle.json is bundle.json less ``model`` and ``metadata_sha256``: both hash the model
file that contains the copy. The bundle.json beside the model stays the one the runtime trusts
(`siamface calibrate` changes its threshold, not the copy; `siamface export --metadata-only`
refreshes the copy).
"""
from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path
from typing import Any, Sequence

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as tfl
from flatbuffers import number_types as nt
from flatbuffers.table import Table

from siamface.edge_runtime.atomic import atomic_folder
from siamface.edge_runtime.bundle import DIGEST, META, MODEL, load_bundle, write_meta
from siamface.edge_runtime.errors import SiamfaceError
from siamface.edge_runtime.morphable_model import file_sha256
from siamface.edge_runtime.normalise import PIXEL_NORMALISATION
from siamface.edge_runtime.params import ParamLayout

METADATA_NAME = "TFLITE_METADATA"
METADATA_ID, MODEL_ID = b"M001", b"TFL3"
# The largest schema version among the fields written: all of them are in the first one (no tensor
# groups, custom metadata or file versions).
MIN_PARSER_VERSION = "1.0.0"
LICENCE = "MIT (siamface, Copyright (c) 2026 The siamface authors)"
FACE_MODEL_LICENCE = "FACE_MODEL_LICENSE"  # export.bundle copies the face model's licence under this name
PARAMS_LABELS = "params_labels.txt"
BUFFER_ALIGN = 16  # what the TFLite converter aligns buffers to (mmap and delegates read them in place)

# metadata_schema.fbs, the tables written here: field -> (slot, kind, table or union). A union field
# takes two slots, its type then its value; "byte" and "uint" are scalars (enums are bytes).
SCHEMA: dict[str, dict[str, tuple]] = {
    "ModelMetadata": {"name": (0, "string"), "description": (1, "string"), "version": (2, "string"),
                      "subgraph_metadata": (3, "tables", "SubGraphMetadata"), "author": (4, "string"),
                      "license": (5, "string"), "associated_files": (6, "tables", "AssociatedFile"),
                      "min_parser_version": (7, "string")},
    "SubGraphMetadata": {"name": (0, "string"), "description": (1, "string"),
                         "input_tensor_metadata": (2, "tables", "TensorMetadata"),
                         "output_tensor_metadata": (3, "tables", "TensorMetadata")},
    "TensorMetadata": {"name": (0, "string"), "description": (1, "string"), "dimension_names": (2, "strings"),
                       "content": (3, "table", "Content"), "process_units": (4, "tables", "ProcessUnit"),
                       "stats": (5, "table", "Stats"), "associated_files": (6, "tables", "AssociatedFile")},
    "AssociatedFile": {"name": (0, "string"), "description": (1, "string"), "type": (2, "byte")},
    "Content": {"content_properties": (1, "union", "ContentProperties")},
    "FeatureProperties": {},
    "ImageProperties": {"color_space": (0, "byte"), "default_size": (1, "table", "ImageSize")},
    "ImageSize": {"width": (0, "uint"), "height": (1, "uint")},
    "ProcessUnit": {"options": (1, "union", "ProcessUnitOptions")},
    "NormalizationOptions": {"mean": (0, "floats"), "std": (1, "floats")},
    "Stats": {"max": (0, "floats"), "min": (1, "floats")},
}
UNIONS = {"ContentProperties": ("FeatureProperties", "ImageProperties"), "ProcessUnitOptions": ("NormalizationOptions",)}
UNKNOWN_FILE, TENSOR_AXIS_LABELS = 0, 2  # AssociatedFileType
RGB = 1  # ColorSpaceType


def _vector(b: flatbuffers.Builder, offsets: list[int]) -> int:
    b.StartVector(4, len(offsets), 4)
    for off in reversed(offsets):
        b.PrependUOffsetTRelative(off)
    return b.EndVector()


def _write(b: flatbuffers.Builder, table: str, values: dict[str, Any]) -> int:
    """Serialise one table (children first, as flatbuffers requires); returns its offset."""
    fields, offsets = SCHEMA[table], {}
    for key, value in values.items():
        kind = fields[key][1]
        if kind == "string":
            offsets[key] = b.CreateString(value)
        elif kind == "strings":
            offsets[key] = _vector(b, [b.CreateString(s) for s in value])
        elif kind == "floats":
            offsets[key] = b.CreateNumpyVector(np.asarray(value, "<f4"))
        elif kind == "table":
            offsets[key] = _write(b, fields[key][2], value)
        elif kind == "tables":
            offsets[key] = _vector(b, [_write(b, fields[key][2], v) for v in value])
        elif kind == "union":
            offsets[key] = _write(b, value["type"], {k: v for k, v in value.items() if k != "type"})
    b.StartObject(max((f[0] for f in fields.values()), default=-1) + 1)
    for key, value in values.items():
        slot, kind = fields[key][:2]
        if kind == "byte":
            b.PrependInt8Slot(slot, value, 0)
        elif kind == "uint":
            b.PrependUint32Slot(slot, value, 0)
        else:
            b.PrependUOffsetTRelativeSlot(slot, offsets[key], 0)
        if kind == "union":
            b.PrependUint8Slot(slot - 1, UNIONS[fields[key][2]].index(value["type"]) + 1, 0)
    return b.EndObject()


def metadata_bytes(metadata: dict[str, Any]) -> bytes:
    """A ModelMetadata dict (SCHEMA's field names) as an "M001" flatbuffer."""
    b = flatbuffers.Builder(1024)
    b.Finish(_write(b, "ModelMetadata", metadata), file_identifier=METADATA_ID)
    return bytes(b.Output())


def _read(tab: Table, table: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, (slot, kind, *sub) in SCHEMA[table].items():
        o = tab.Offset(4 + 2 * slot)
        if not o:
            continue
        at = tab.Pos + o
        if kind == "string":
            out[key] = tab.String(at).decode()
        elif kind == "byte":
            out[key] = tab.Get(nt.Int8Flags, at)
        elif kind == "uint":
            out[key] = tab.Get(nt.Uint32Flags, at)
        elif kind == "floats":
            out[key] = [float(x) for x in tab.GetVectorAsNumpy(nt.Float32Flags, o)]
        elif kind == "table":
            out[key] = _read(Table(tab.Bytes, tab.Indirect(at)), sub[0])
        elif kind == "union":
            member = UNIONS[sub[0]][tab.Get(nt.Uint8Flags, tab.Pos + tab.Offset(4 + 2 * (slot - 1))) - 1]
            value = Table(tab.Bytes, 0)
            tab.Union(value, o)  # points ``value`` at the member table
            out[key] = {"type": member, **_read(value, member)}
        else:  # vectors of strings or tables: a uoffset per element
            positions = [tab.Vector(o) + 4 * i for i in range(tab.VectorLen(o))]
            out[key] = ([tab.String(p).decode() for p in positions] if kind == "strings"
                        else [_read(Table(tab.Bytes, tab.Indirect(p)), sub[0]) for p in positions])
    return out


def parse_metadata(data: bytes) -> dict[str, Any]:
    """An "M001" flatbuffer back to the ModelMetadata dict."""
    if not flatbuffers.util.BufferHasIdentifier(data, 0, METADATA_ID):
        raise SiamfaceError(f"the {METADATA_NAME} buffer is not TFLite metadata (no {METADATA_ID.decode()} identifier)")
    root = flatbuffers.encode.Get(flatbuffers.packer.uoffset, data, 0)
    return _read(Table(bytearray(data), root), "ModelMetadata")


class _AlignedBuffer(tfl.BufferT):
    """A model buffer whose bytes start on a BUFFER_ALIGN boundary (the generated Pack aligns to 1)."""

    def Pack(self, builder: flatbuffers.Builder) -> int:
        data = None
        if self.data is not None:
            raw = np.asarray(self.data, np.uint8).tobytes()
            builder.StartVector(1, len(raw), BUFFER_ALIGN)
            builder.head -= len(raw)
            builder.Bytes[builder.head: builder.head + len(raw)] = raw
            data = builder.EndVector()
        tfl.BufferStart(builder)
        if data is not None:
            tfl.BufferAddData(builder, data)
        tfl.BufferAddOffset(builder, self.offset)
        tfl.BufferAddSize(builder, self.size)
        return tfl.BufferEnd(builder)


def _check_model(data: bytes, where: object) -> None:
    if len(data) < 8 or not flatbuffers.util.BufferHasIdentifier(data, 0, MODEL_ID):
        raise SiamfaceError(f"{where} is not a TFLite model (no TFL3 identifier): re-export it with `siamface export`")


def _unpack_model(tflite: bytes, where: object) -> tfl.ModelT:
    _check_model(tflite, where)
    model = tfl.ModelT.InitFromPackedBuf(bytearray(tflite), 0)
    if any(b.offset > 1 for b in model.buffers or []):
        raise SiamfaceError(f"{where} keeps its weights outside the flatbuffer (a model over 2 GB): "
                            "metadata cannot be added to it")
    return model


def _signature(model: tfl.ModelT, where: object) -> tuple[bool, list[str]]:
    """(the input is int8, the output names in the subgraph's output order) from the model itself."""
    graph = model.subgraphs[0]
    names = {t.tensorIndex: t.name.decode() for t in model.signatureDefs[0].outputs} if model.signatureDefs else {}
    outputs = [names.get(int(i), "") for i in graph.outputs]
    if sorted(outputs) != ["embedding", "params"]:
        raise SiamfaceError(f"{where} has outputs {outputs}, not params and embedding: export it with `siamface export`")
    return graph.tensors[int(graph.inputs[0])].type == tfl.TensorType.INT8, outputs


class _PaddedEntry(tfl.MetadataT):
    """The TFLITE_METADATA entry, preceded by ``pad`` zero bytes (legal between flatbuffer objects)."""

    pad = 0

    def Pack(self, builder: flatbuffers.Builder) -> int:
        builder.Prep(4, self.pad)
        builder.Pad(self.pad)
        return super().Pack(builder)


def _serialise(model: tfl.ModelT, entry: _PaddedEntry) -> bytes:
    """``model`` as a TFL3 flatbuffer whose root table's vtable directly follows the file identifier, as
    the converter writes it: the alignment padding Finish would put there goes before the metadata
    entry instead, so no byte of the head is dead (a damaged head is refused, not ignored)."""
    size_hint = sum(len(b.data) for b in model.buffers if b.data is not None) + (1 << 16)
    while True:
        b = flatbuffers.Builder(size_hint)
        root = model.Pack(b)
        gap = -(b.Offset() + 8) % b.minalign  # what Finish would pad after the 8-byte header
        if gap == 0 or entry.pad >= BUFFER_ALIGN:  # the second: padding in the head is legal, only unusual
            b.Finish(root, file_identifier=MODEL_ID)
            return bytes(b.Output())
        entry.pad += gap


def attach(model: tfl.ModelT, metadata: bytes, files: dict[str, bytes]) -> bytes:
    """The bytes of ``model`` (unpacked) with ``metadata`` as its TFLITE_METADATA buffer (replacing one
    there) and ``files`` as the zip archive after it (any old one is not in ``model``); weights and
    graph unchanged."""
    model.buffers = [_AlignedBuffer(b.data, b.offset, b.size) for b in model.buffers]
    others = [m for m in model.metadata or [] if m.name.decode() != METADATA_NAME]
    old = [m.buffer for m in model.metadata or [] if m.name.decode() == METADATA_NAME]
    entry = _PaddedEntry(name=METADATA_NAME, buffer=old[0] if old else len(model.buffers))
    model.metadata = [*others, entry]
    if not old:
        model.buffers.append(_AlignedBuffer())
    model.buffers[entry.buffer].data = np.frombuffer(metadata, np.uint8)
    out = io.BytesIO(_serialise(model, entry))
    with zipfile.ZipFile(out, "a") as archive:  # appended: offsets count from the model's first byte
        for name, data in files.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)  # same bytes every time
    return out.getvalue()


def read(model: str | Path | bytes) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The ModelMetadata dict and the associated files (name -> bytes) of a .tflite file or its bytes."""
    data = model if isinstance(model, bytes) else Path(model).read_bytes()
    _check_model(data, "the model" if isinstance(model, bytes) else model)
    root = tfl.Model.GetRootAs(data, 0)
    for i in range(root.MetadataLength()):
        if root.Metadata(i).Name().decode() == METADATA_NAME:
            metadata = parse_metadata(root.Buffers(root.Metadata(i).Buffer()).DataAsNumpy().tobytes())
            break
    else:
        raise SiamfaceError(f"{'the model' if isinstance(model, bytes) else model} has no TFLite metadata: "
                            f"add it with `siamface export --metadata-only BUNDLE`")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return metadata, {name: archive.read(name) for name in archive.namelist()}
    except zipfile.BadZipFile:
        return metadata, {}


def param_labels(layout: ParamLayout, exp_names: Sequence[str]) -> list[str]:
    """One label per value of ``params``: the camera [sR | t] row-major, identity_NNN, the blendshape names."""
    if len(exp_names) != layout.n_exp:
        raise SiamfaceError(f"{len(exp_names)} expression names for a layout of {layout.n_exp}: re-export the bundle")
    pose = [f"pose_sR{r}{c}" if c < 3 else f"pose_t{r}" for r in range(3) for c in range(4)]
    width = len(str(layout.n_id - 1))
    return pose[: layout.n_pose] + [f"identity_{i:0{width}d}" for i in range(layout.n_id)] + list(exp_names)


def _licence(meta: dict, licence_text: str | None) -> str:
    if not licence_text:
        return LICENCE
    lines = [line.strip() for line in licence_text.splitlines() if line.strip()]
    notice = ", ".join([lines[0], *(line for line in lines if line.startswith("Copyright"))])
    return (f"{LICENCE}; trained with and decoded by the face model {meta['face_model']['name']} ({notice}; "
            f"full text in the associated file {FACE_MODEL_LICENCE})")


def _tensors(meta: dict, int8: bool, outputs: list[str]) -> tuple[dict, list[dict]]:
    size, layout = int(meta["input"]["size"]), ParamLayout.from_dict(meta["param_layout"])
    feed = ("int8 values p - 128 (a uint8 image XOR 0x80; scale 1, zero point -128, so the real value is the "
            "pixel)" if int8 else "float32 pixel values as read, 0 to 255")
    image = {"name": "pixels", "description": f"RGB face crop, {size}x{size}, {feed}. Do not normalise it: the model "
             f"applies {PIXEL_NORMALISATION} inside, so the normalisation below is the identity.",
             "content": {"content_properties": {"type": "ImageProperties", "color_space": RGB,
                                                "default_size": {"width": size, "height": size}}},
             "process_units": [{"options": {"type": "NormalizationOptions", "mean": [0.0], "std": [1.0]}}],
             "stats": {"min": [-128.0 if int8 else 0.0], "max": [127.0 if int8 else 255.0]}}
    dequantise = " int8: dequantise with the tensor's scale and zero point first." if int8 else ""
    p, i, e = layout.pose, layout.identity, layout.expression
    fused = (" A reconstruction is the mean of these parameters for its crop and, mapped back through the face "
             "model's mirror symmetry, for the crop mirrored left to right (bundle.json 'reconstruction.flip'; "
             "siamface edge_runtime/mirror_params.py)." if meta.get("reconstruction", {}).get("flip") else "")
    params = {"name": "params", "description": (
        f"{layout.size} whitened 3D morphable model parameters (p = z * std + mean, bundle.json 'whitening'): "
        f"[{p.start}:{p.stop}] pose, a 3x4 camera [sR | t] row-major; [{i.start}:{i.stop}] identity shape "
        f"coefficients; [{e.start}:{e.stop}] expression blendshape weights. One label per value in "
        f"{PARAMS_LABELS}.{fused}{dequantise}"),
        "content": {"content_properties": {"type": "FeatureProperties"}},
        "associated_files": [{"name": PARAMS_LABELS, "type": TENSOR_AXIS_LABELS, "description": (
            "one label per params value: pose_sR<row><col> and pose_t<row>, identity_NNN, then the "
            "face model's blendshape names (ARKit raw names)")}]}
    dim = meta.get("embedding", {}).get("dim", "N")
    mirror = (" A face's embedding is the unit mean of this output for its crop and for the crop mirrored "
              "left to right, each normalised first (bundle.json 'embedding.flip'); the threshold was set on "
              "that." if meta.get("embedding", {}).get("flip") else "")
    embedding = {"name": "embedding", "description": (
        f"{dim}-d identity embedding, not normalised: scale it to unit L2 length and compare by cosine; "
        f"two faces are the same person at cosine >= bundle.json 'verification.threshold'.{mirror}{dequantise}"),
        "content": {"content_properties": {"type": "FeatureProperties"}}}
    return image, [{"params": params, "embedding": embedding}[name] for name in outputs]


def model_metadata(meta: dict, int8: bool, outputs: list[str], licence_text: str | None) -> dict[str, Any]:
    """The ModelMetadata dict for a bundle's model, from bundle.json's ``meta``."""
    crop = meta.get("crop")
    how_crop = (f" Crop: a square {crop['side_factor']} times the face box, its centre moved down "
                f"{crop['center_shift']} of the side ({crop['convention']} convention)." if crop else "")
    image, tensors = _tensors(meta, int8, outputs)
    version = meta.get("versions", {}).get("siamface")
    return {
        "name": f"siamface encoder ({meta['variant']})",
        "description": ("One RGB face crop in; 3D morphable model parameters (pose, identity shape, expression) and "
                        f"an identity embedding out.{how_crop} Decode params with face_model.npz beside the model "
                        f"as {META} says; {META} is an associated file (less its model entry)."),
        "version": "; ".join(filter(None, [f"siamface {version}" if version else "", meta["variant"],
                                           f"exported {meta['created']}" if "created" in meta else ""])),
        "author": "siamface",
        "license": _licence(meta, licence_text),
        "subgraph_metadata": [{"name": "siamface_encoder", "input_tensor_metadata": [image],
                               "output_tensor_metadata": tensors}],
        "associated_files": [
            {"name": META, "type": UNKNOWN_FILE, "description": (
                f"the bundle's {META} at export, less 'model' and '{DIGEST}' (they hash this file); the copy "
                "beside the model is the one the runtime trusts")},
            *([{"name": FACE_MODEL_LICENCE, "type": UNKNOWN_FILE, "description": "the face model's licence"}]
              if licence_text else [])],
        "min_parser_version": MIN_PARSER_VERSION,
    }


def write_model(path: Path, tflite: bytes, meta: dict, exp_names: Sequence[str]) -> dict:
    """Write ``tflite`` to ``path`` with metadata from bundle.json's ``meta`` (and the face-model licence
    beside ``path``, when there); returns bundle.json's model entry for the file written."""
    model = _unpack_model(tflite, path)
    int8, outputs = _signature(model, path)
    licence = path.parent / FACE_MODEL_LICENCE
    licence_text = licence.read_text() if licence.is_file() else None
    embedded = {k: v for k, v in meta.items() if k not in ("model", DIGEST)}
    files = {META: (json.dumps(embedded, indent=2) + "\n").encode(),
             PARAMS_LABELS: ("\n".join(param_labels(ParamLayout.from_dict(meta["param_layout"]), exp_names))
                             + "\n").encode()}
    if licence_text:
        files[FACE_MODEL_LICENCE] = licence_text.encode()
    data = attach(model, metadata_bytes(model_metadata(meta, int8, outputs, licence_text)), files)
    path.write_bytes(data)
    return {"file": path.name, "sha256": file_sha256(path), "size_bytes": len(data)}


def embed_in_bundle(folder: str | Path) -> Path:
    """Rewrite an existing bundle's model with fresh metadata and reseal bundle.json (the model's hash
    and size, the metadata digest); the folder is replaced only when complete. The bundle is verified
    first, so only an intact one is resealed."""
    bundle = load_bundle(folder)
    with atomic_folder(bundle.root) as tmp:
        shutil.copytree(bundle.root, tmp, dirs_exist_ok=True)
        model = tmp / bundle.model_path.name
        meta = {**bundle.meta, "model": write_model(model, model.read_bytes(), bundle.meta,
                                                     bundle.face_model.exp_names)}
        write_meta(tmp, meta)
    load_bundle(folder)
    return bundle.root
