"""Read, verify and seal a siamface bundle: model.tflite + face_model.npz + bundle.json.

The bundle is what a phone or a Raspberry Pi receives. ``bundle.json`` says how to feed the
model, how to decode its output, which face model it was trained with, and the verification
threshold for this very variant. sha256 sums catch tampered or truncated files; a digest of the
metadata that decides matches (threshold, layout, whitening, input, files) catches a bundle.json
edited by hand, so a threshold changes only through `siamface calibrate` or a new export. The
digest guards against mistakes, not attackers: anyone can recompute it.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from .atomic import atomic_write_json
from .bundle_schema import BUNDLE, FIX, VERIFICATION, check_consistency, validate
from .errors import SiamfaceError
from .identity import cosine_threshold
from .interpreter import TensorInfo, model_signature
from .morphable_model import MorphableModel, file_sha256, load_face_model
from .params import ParamLayout, Whitening
from .versioned_json import read_versioned_json

FORMAT_VERSION = 1
META = "bundle.json"
MODEL = "model.tflite"
DECODER = "face_model.npz"
DIGEST = "metadata_sha256"
# What decides a match or a reconstruction; descriptive keys (created, parity, training, versions) stay free.
SEALED_KEYS = ("format_version", "kind", "variant", "input", "outputs", "param_layout", "whitening", "crop",
               "embedding", "reconstruction", "verification", "model", "face_model", "texture_identity")


@dataclass
class Bundle:
    root: Path
    meta: dict

    @property
    def model_path(self) -> Path:
        return self.root / self.meta["model"]["file"]

    @property
    def variant(self) -> str:
        return self.meta["variant"]

    @property
    def model_hash(self) -> str:
        return self.meta["model"]["sha256"]

    @property
    def layout(self) -> ParamLayout:
        return ParamLayout.from_dict(self.meta["param_layout"])

    @property
    def flip_embedding(self) -> bool:
        """Whether a face's embedding fuses its crop with the mirrored crop (normalise.fuse_mirrored);
        bundles written before it existed embed the crop alone."""
        return bool(self.meta.get("embedding", {}).get("flip", False))

    @property
    def shape_weight(self) -> float:
        """The share of the 3D shape code in a face's identity vector (normalise.identity_vector);
        0 for bundles written before it existed: the embedding alone."""
        return float(self.meta.get("embedding", {}).get("shape_weight", 0.0))

    @property
    def texture(self) -> dict | None:
        """The ``texture_identity`` block (model, unwrap table, dim, weight), or None: the bundle has
        no texture identity model (edge_runtime.texture_identity)."""
        return self.meta.get("texture_identity")

    @property
    def texture_weight(self) -> float:
        """The texture embedding's share in a face's identity vector (normalise.identity_vector); 0 without one."""
        return float(self.texture["weight"]) if self.texture else 0.0

    @property
    def identity_space(self) -> str:
        """What a gallery's vectors must come from to be compared with this bundle's: the model, and
        the shape code's and texture model's shares when it has them (identity.Gallery's ``model_hash``)."""
        space = self.model_hash if self.shape_weight == 0.0 else f"{self.model_hash} with shape weight {self.shape_weight:g}"
        if self.texture_weight > 0.0:
            space += f" and texture model {self.texture['model']['sha256']} weight {self.texture_weight:g}"
        return space

    def texture_embedder(self, num_threads: int = 1):
        """The bundle's TextureEmbedder, or None when it has no texture identity model (or a share of 0)."""
        if self.texture_weight == 0.0:
            return None
        from .texture_identity import TextureEmbedder
        from .unwrap import UnwrapTable

        table = UnwrapTable.load(self.root / self.texture["table"]["file"])
        table.check_model(self.face_model, str(self.root / META))
        return TextureEmbedder(self.root / self.texture["model"]["file"], table, self.face_model, self.layout,
                               num_threads)

    @property
    def flip_params(self) -> bool:
        """Whether a reconstruction fuses its crop's parameters with the mirrored crop's, mapped back
        (mirror_params); bundles written before it existed use the crop alone."""
        return bool(self.meta.get("reconstruction", {}).get("flip", False))

    @property
    def whitening(self) -> Whitening:
        return Whitening.from_dict(self.meta["whitening"])

    @property
    def input_size(self) -> int:
        return int(self.meta["input"]["size"])

    @property
    def threshold(self) -> float:
        """The cosine threshold the bundle records, checked against the one rule (within [-1, 1])."""
        return cosine_threshold(self.meta["verification"]["threshold"], str(self.root / META))

    @property
    def threshold_source(self) -> str:
        """Where the threshold comes from, in words: "bundle: synthetic, FAR 0.01" or
        "bundle: calibrated on DATA"."""
        v = self.meta["verification"]
        if v.get("source") == "calibrated":
            return f"bundle: calibrated on {v.get('data')}"
        if v.get("source") == "synthetic":
            far = next(v[k] for k in ("far_target_used", "far_target", "far") if isinstance(v.get(k), (int, float)))
            return f"bundle: synthetic, FAR {far:.3g}"
        return f"bundle: {v.get('source', 'source not recorded')}"

    @cached_property
    def face_model(self) -> MorphableModel:
        """The decoder shipped in the bundle (identity prefix of the training face model)."""
        return load_face_model(self.root / self.meta["face_model"]["decoder"]["file"])


def metadata_digest(meta: dict) -> str:
    """sha256 of the sealed keys as canonical JSON (sorted keys, no spaces): unchanged by a JSON
    round trip or by key order, changed by any edit of a value that decides matches."""
    sealed = {key: meta[key] for key in SEALED_KEYS if key in meta}
    text = json.dumps(sealed, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def write_meta(root: str | os.PathLike, meta: dict) -> dict:
    """Check the threshold, seal ``meta`` with its digest and write ROOT/bundle.json atomically (the
    one way bundle.json is written: by export and by `siamface calibrate`); returns what was written."""
    path = Path(root) / META
    cosine_threshold(meta.get("verification", {}).get("threshold"), str(path))
    sealed = json.loads(json.dumps({k: v for k, v in meta.items() if k != DIGEST}))  # what a reader will see
    sealed[DIGEST] = metadata_digest(sealed)
    atomic_write_json(path, sealed)
    return sealed


def _check_metadata(meta: dict, meta_path: Path) -> None:
    """The digest matches and the threshold obeys the cosine rule, or a one-line error saying what to run."""
    redo = f"set a threshold with `siamface calibrate {meta_path.parent} --data PHOTOS` or re-export the bundle"
    if DIGEST not in meta:
        raise SiamfaceError(f"{meta_path} has no {DIGEST} (written by an older siamface, or by hand): {redo}")
    if meta[DIGEST] != metadata_digest(meta):
        raise SiamfaceError(f"{meta_path} was edited by hand: its threshold, layout or input no longer match "
                            f"{DIGEST}; {redo}")
    cosine_threshold(meta.get("verification", {}).get("threshold"), str(meta_path))


def _inside(root: Path, name: str, key: str, meta_path: Path) -> Path:
    """ROOT/name when it is a file that really lies in the bundle folder (a symlink out of it is refused
    before anything reads it); the schema has already refused absolute names and '..'."""
    file = root / name
    if not file.resolve().is_relative_to(root.resolve()):
        raise SiamfaceError(f"{meta_path}: {key} {name!r} leads outside the bundle folder; {FIX}")
    if not file.is_file():
        raise SiamfaceError(f"{file} is missing from the bundle: copy the whole bundle folder or re-export it")
    return file


def _tensor(info: TensorInfo) -> str:
    return f"{info.name!r} {info.shape} {info.dtype.name}"


def check_model_signature(bundle: "Bundle") -> None:
    """The model takes one (1, S, S, 3) image of the recorded size and dtype and gives ``params``
    (1, layout size) and ``embedding`` (1, dim): a foreign or damaged .tflite whose sha256 was
    recomputed is refused here, in one line, instead of failing inside the interpreter."""
    inputs, outputs = model_signature(bundle.model_path)
    size, dtype = bundle.input_size, bundle.meta["input"].get("dtype")
    dim = bundle.meta.get("embedding", {}).get("dim")
    wanted = (f"one input (1, {size}, {size}, 3){' ' + dtype if dtype else ''}, outputs 'params' "
              f"(1, {bundle.layout.size}) and 'embedding' (1, {dim or 'N'})")
    named = {t.name: t for t in outputs}
    params, embedding = named.get("params"), named.get("embedding")
    fits = (len(inputs) == 1 and inputs[0].shape == (1, size, size, 3) and dtype in (None, inputs[0].dtype.name)
            and params is not None and params.shape == (1, bundle.layout.size)
            and embedding is not None and len(embedding.shape) == 2 and embedding.shape[0] == 1
            and embedding.shape[1] >= 1 and dim in (None, embedding.shape[1]))
    if not fits:
        found = ", ".join(map(_tensor, inputs)) + " -> " + ", ".join(map(_tensor, outputs))
        raise SiamfaceError(f"{bundle.model_path} is not the model {bundle.root / META} describes ({wanted}; "
                            f"found {found}); {FIX}")


def check_texture_signature(bundle: "Bundle") -> None:
    """The texture identity model takes one (1, H, W, C) map (C: the table's channels, 4 unless
    recorded) and gives ``embedding`` (1, dim)."""
    path = bundle.root / bundle.texture["model"]["file"]
    inputs, outputs = model_signature(path)
    dim, channels = bundle.texture["dim"], bundle.texture["table"].get("channels", 4)
    if not (len(inputs) == 1 and len(inputs[0].shape) == 4 and inputs[0].shape[0] == 1
            and inputs[0].shape[3] == channels and len(outputs) == 1 and outputs[0].shape == (1, dim)):
        found = ", ".join(map(_tensor, inputs)) + " -> " + ", ".join(map(_tensor, outputs))
        raise SiamfaceError(f"{path} is not the texture model {bundle.root / META} describes (one input (1, H, W, {channels}), "
                            f"output (1, {dim}); found {found}); {FIX}")


def load_bundle(path: str | os.PathLike, verify: bool = True, check_metadata: bool = True) -> Bundle:
    """Open a bundle folder (or its bundle.json), checked in this order: bundle.json's schema (types,
    required keys), file names inside the folder, with ``check_metadata`` the verification block and
    the metadata digest, the whitening's fit to the layout, and with ``verify`` every file's sha256
    and the model's input/output signature. `siamface calibrate` passes ``check_metadata=False`` to
    open bundles whose bundle.json was edited without it, to write a measured threshold over the edit."""
    path = Path(path)
    root = path.parent if path.name == META else path
    meta_path = root / META
    if not meta_path.is_file():
        raise SiamfaceError(f"{root} is not a siamface bundle ({META} missing): pass a folder written by `siamface export`")
    meta = read_versioned_json(meta_path, FORMAT_VERSION, "bundle", "re-export it with this version",
                               ("siamface.bundle",))
    validate(meta, BUNDLE, meta_path)
    files = {"model.file": meta["model"], "face_model.decoder.file": meta["face_model"]["decoder"]}
    if "texture_identity" in meta:
        files |= {"texture_identity.model.file": meta["texture_identity"]["model"],
                  "texture_identity.table.file": meta["texture_identity"]["table"]}
    paths = {key: _inside(root, entry["file"], key, meta_path) for key, entry in files.items()}
    if check_metadata:
        validate(meta, VERIFICATION, meta_path)
        _check_metadata(meta, meta_path)
    check_consistency(meta, meta_path)
    bundle = Bundle(root, meta)
    if verify:
        for (key, entry), what in zip(files.items(), ("model", "face-model decoder", "texture identity model",
                                                      "texture unwrap table")):
            if file_sha256(paths[key]) != entry["sha256"]:
                raise SiamfaceError(f"{paths[key]} does not match the sha256 in {meta_path}: the {what} was modified "
                                    f"or truncated; copy the bundle again or re-export it")
        check_model_signature(bundle)
        if bundle.texture:
            check_texture_signature(bundle)
    return bundle
