"""What bundle.json must hold, checked before any of it is used: an edited, truncated or foreign
bundle.json is one line naming the key (never a KeyError or AttributeError deep in the runtime).

The schema lists what the runtime reads; other keys (created, parity, training, versions, ...) may
be anything. ``verification`` is checked apart: `siamface calibrate` opens bundles whose block is
broken, to write a measured one over it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Union

from .errors import SiamfaceError
from .params import ParamLayout

FIX = "re-export the bundle (or copy it again)"


@dataclass(frozen=True)
class Rule:
    """A leaf of the schema: a test and what it wants, in words, for the error."""

    test: Callable[[Any], bool]
    wants: str


Schema = dict[str, Union["Schema", Rule]]  # a key ending in "?" is optional


def _integer(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _number(x: Any) -> bool:
    return (_integer(x) or isinstance(x, float)) and math.isfinite(x)


def _relative_name(x: Any) -> bool:
    """A file name inside the bundle folder: relative, no '..', no NUL (where it leads is checked on disk)."""
    if not isinstance(x, str) or not x or "\0" in x or "\\" in x:
        return False
    path = PurePosixPath(x)
    return not path.is_absolute() and ".." not in path.parts


TEXT = Rule(lambda x: isinstance(x, str) and bool(x), "a non-empty string")
POSITIVE = Rule(lambda x: _integer(x) and x >= 1, "a whole number >= 1")
COUNT = Rule(lambda x: _integer(x) and 0 <= x <= 100_000, "a whole number from 0 to 100000")
FILE = Rule(_relative_name, "a file name inside the bundle folder (relative, without '..')")
SHA256 = Rule(lambda x: isinstance(x, str) and len(x) == 64 and all(c in "0123456789abcdef" for c in x),
              "a sha256 (64 lowercase hex digits)")
NUMBERS = Rule(lambda x: isinstance(x, list) and bool(x) and all(_number(v) for v in x), "a list of finite numbers")
NUMBER = Rule(_number, "a finite number")
BOOLEAN = Rule(lambda x: isinstance(x, bool), "true or false")
RATE = Rule(lambda x: _number(x) and 0.0 <= x <= 1.0, "a number in [0, 1]")

BUNDLE: Schema = {
    "variant": TEXT,
    "input": {"size": Rule(lambda x: _integer(x) and 8 <= x <= 4096, "a whole number from 8 to 4096"),
              "dtype?": Rule(lambda x: x in ("float32", "int8", "uint8"), "float32, int8 or uint8")},
    "param_layout": {"n_id": COUNT, "n_exp": COUNT, "n_pose?": Rule(lambda x: x == 12, "12 (a 3x4 camera)")},
    "whitening": {"mean": NUMBERS, "std": NUMBERS},
    "embedding?": {"dim?": POSITIVE, "flip?": BOOLEAN,
                   "shape_weight?": Rule(lambda x: _number(x) and 0.0 <= x < 1.0, "a number in [0, 1)")},
    "reconstruction?": {"flip?": BOOLEAN},
    "texture_identity?": {"model": {"file": FILE, "sha256": SHA256}, "table": {"file": FILE, "sha256": SHA256,
                          "channels?": Rule(lambda x: x in (4, 8), "4, or 8 with the mirror partners")},
                          "dim": POSITIVE, "weight": Rule(lambda x: _number(x) and 0.0 <= x <= 1.0, "a number in [0, 1]")},
    "model": {"file": FILE, "sha256": SHA256},
    "face_model": {"decoder": {"file": FILE, "sha256": SHA256}},
}
# The threshold's range is identity.cosine_threshold's rule, checked with the digest.
VERIFICATION: Schema = {"verification": {"threshold": NUMBER, "far": RATE}}


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number")


def validate(meta: Any, schema: Schema, where: Path, prefix: str = "") -> None:
    """Every key of ``schema`` present in ``meta`` with the type and range it wants, or one
    SiamfaceError naming the file and the key (as ``verification.far``)."""
    if not isinstance(meta, dict):
        what = prefix.rstrip(".") or "the file"
        raise SiamfaceError(f"{where}: {what} must be an object, found {_kind(meta)}; {FIX}")
    for name, rule in schema.items():
        key = name.rstrip("?")
        if key not in meta:
            if name.endswith("?"):
                continue
            raise SiamfaceError(f"{where} lacks {prefix}{key}; {FIX}")
        if isinstance(rule, dict):
            validate(meta[key], rule, where, f"{prefix}{key}.")
        elif not rule.test(meta[key]):
            raise SiamfaceError(f"{where}: {prefix}{key} must be {rule.wants}, found {_short(meta[key])}; {FIX}")


def check_consistency(meta: dict, where: Path) -> None:
    """Cross-key rules, after the digest says the values are as written: whitening has one positive
    std and one mean per parameter of the layout; the identity vector's shares add up to at most 1."""
    size = ParamLayout.from_dict(meta["param_layout"]).size
    for key in ("mean", "std"):
        if len(meta["whitening"][key]) != size:
            raise SiamfaceError(f"{where}: whitening.{key} has {len(meta['whitening'][key])} values, param_layout "
                                f"needs {size}; {FIX}")
    if min(meta["whitening"]["std"]) <= 0:
        raise SiamfaceError(f"{where}: whitening.std must be positive; {FIX}")
    shares = meta.get("embedding", {}).get("shape_weight", 0.0) + meta.get("texture_identity", {}).get("weight", 0.0)
    if shares > 1.0 + 1e-9:
        raise SiamfaceError(f"{where}: embedding.shape_weight and texture_identity.weight add up to {shares:g}, "
                            f"more than 1; {FIX}")
