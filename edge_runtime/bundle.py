"""Read and verify a siamface bundle: model.tflite + face_model.npz + bundle.json.

The bundle is what a phone or a Raspberry Pi receives. ``bundle.json`` says how to feed the
model, how to decode its output, which face model it was trained with, and the verification
threshold calibrated for this very variant; sha256 sums catch tampered or truncated files.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from edge_runtime.errors import SiamfaceError
from edge_runtime.morphable_model import MorphableModel, file_sha256, load_face_model
from edge_runtime.params import ParamLayout, Whitening

FORMAT_VERSION = 1
META = "bundle.json"
MODEL = "model.tflite"
DECODER = "face_model.npz"


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
        return float(self.meta["verification"]["threshold"])

    @cached_property
    def face_model(self) -> MorphableModel:
        """The decoder shipped in the bundle (identity prefix of the training face model)."""
        return load_face_model(self.root / self.meta["face_model"]["decoder"]["file"])


def load_bundle(path: str | os.PathLike, verify: bool = True) -> Bundle:
    """Open a bundle folder (or its bundle.json); with ``verify``, check every file's sha256."""
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
    return Bundle(root, meta)
