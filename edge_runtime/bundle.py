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

from edge_runtime.atomic import atomic_write_json
from edge_runtime.errors import SiamfaceError
from edge_runtime.identity import cosine_threshold
from edge_runtime.morphable_model import MorphableModel, file_sha256, load_face_model
from edge_runtime.params import ParamLayout, Whitening

FORMAT_VERSION = 1
META = "bundle.json"
MODEL = "model.tflite"
DECODER = "face_model.npz"
DIGEST = "metadata_sha256"
# What decides a match or a reconstruction; descriptive keys (created, parity, training, versions) stay free.
SEALED_KEYS = ("format_version", "kind", "variant", "input", "outputs", "param_layout", "whitening", "crop",
               "embedding", "verification", "model", "face_model")


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
            return f"bundle: synthetic, FAR {v.get('far_target_used', v.get('far_target')):.3g}"
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


def load_bundle(path: str | os.PathLike, verify: bool = True, check_metadata: bool = True) -> Bundle:
    """Open a bundle folder (or its bundle.json); with ``verify``, check every file's sha256, and with
    ``check_metadata`` the metadata digest and the threshold (`siamface calibrate` opens bundles whose
    bundle.json was edited without it, to write a measured threshold over the edit)."""
    path = Path(path)
    root = path.parent if path.name == META else path
    meta_path = root / META
    if not meta_path.is_file():
        raise SiamfaceError(f"{root} is not a siamface bundle ({META} missing): pass a folder written by `siamface export`")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SiamfaceError(f"{meta_path} is unreadable ({exc}): re-export the bundle") from None
    if meta.get("format_version") != FORMAT_VERSION or meta.get("kind") != "siamface.bundle":
        raise SiamfaceError(f"{meta_path} is not a bundle this siamface reads (format {meta.get('format_version')}): "
                            f"re-export it with this version")
    if verify:
        for what, entry in (("model", meta["model"]), ("face-model decoder", meta["face_model"]["decoder"])):
            file = root / entry["file"]
            if not file.is_file():
                raise SiamfaceError(f"{file} is missing from the bundle: copy the whole bundle folder or re-export it")
            if file_sha256(file) != entry["sha256"]:
                raise SiamfaceError(f"{file} does not match the sha256 in {meta_path}: the {what} was modified or "
                                    f"truncated; copy the bundle again or re-export it")
    if check_metadata:
        _check_metadata(meta, meta_path)
    return Bundle(root, meta)
