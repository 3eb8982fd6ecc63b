"""Dataclass configs from YAML/JSON files plus ``key.sub=value`` command-line overrides.

Unknown keys are errors (a typo must not silently train the wrong thing).
"""
from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from edge_runtime.errors import SiamfaceError

T = TypeVar("T")


def build_config(cls: type[T], data: dict, where: str) -> T:
    """A dataclass (nested ones too) from a mapping; ``where`` names the source in errors."""
    if not isinstance(data, dict):
        raise SiamfaceError(f"{where}: expected a mapping for {cls.__name__}, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise SiamfaceError(f"{where}: unknown key(s) {unknown} for {cls.__name__}; valid keys: {sorted(fields)}")
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            value = build_config(hint, value, f"{where}.{name}")
        elif typing.get_origin(hint) is tuple and isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


def _set_path(data: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    for key in keys[:-1]:
        data = data.setdefault(key, {})
    data[keys[-1]] = value


def load_config(cls: type[T], path: str | Path | None = None, overrides: typing.Sequence[str] = ()) -> T:
    """Defaults of ``cls``, updated by the file at ``path``, then by ``key=value`` overrides."""
    data: dict = {}
    where = "config"
    if path:
        where = str(path)
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise SiamfaceError(f"cannot read config {path}: {exc.strerror}; check the path") from None
        try:
            data = (json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)) or {}
        except (json.JSONDecodeError, yaml.YAMLError) as exc:
            raise SiamfaceError(f"config {path} is not valid YAML/JSON ({str(exc).splitlines()[0]}); fix its syntax") from None
    for item in overrides:
        if "=" not in item:
            raise SiamfaceError(f"override {item!r} must look like key=value (e.g. pose.yaw_max_deg=60)")
        key, raw = item.split("=", 1)
        _set_path(data, key.strip(), yaml.safe_load(raw))
    return build_config(cls, data, where)


def config_to_dict(cfg: Any) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(cfg)))
