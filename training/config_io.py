"""Dataclass configs from YAML/JSON files plus ``key.sub=value`` command-line overrides, validated
when loaded against the dataclass fields.

A typo must not silently train the wrong thing: unknown keys, values of the wrong type, values
outside a field's ``Range`` and values not among a ``Literal`` field's choices are errors, each one
line naming the key and what it allows.
"""
from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from siamface.edge_runtime.errors import SiamfaceError

T = TypeVar("T")


@dataclass(frozen=True)
class Range:
    """Bounds of a numeric field, as in ``steps: Annotated[int, Range(ge=1)]``; None is no bound."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def __contains__(self, value: float) -> bool:
        return ((self.ge is None or value >= self.ge) and (self.gt is None or value > self.gt)
                and (self.le is None or value <= self.le) and (self.lt is None or value < self.lt))

    def __str__(self) -> str:
        bounds = [f"{op} {bound:g}" for op, bound in ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt))
                  if bound is not None]
        return " and ".join(bounds)


class _Invalid(Exception):
    """A value that does not fit its field: the message says what the field allows."""


def _describe(hint: Any) -> str:
    if hint in (int, float, str, bool):
        return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}[hint]
    return str(hint).replace("typing.", "")


def _check(hint: Any, value: Any, key: str, where: str) -> Any:
    """``value`` checked (and, for tuples and numbers written as strings, converted) against ``hint``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Annotated:
        value = _check(args[0], value, key, where)
        for rule in args[1:]:
            if isinstance(rule, Range) and value not in rule:
                raise _Invalid(f"must be {rule}")
        return value
    if origin is typing.Literal:
        if value not in args:
            raise _Invalid(f"is not one of {', '.join(repr(a) for a in args)}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        for option in inner:
            try:
                return _check(option, value, key, where)
            except _Invalid:
                continue
        raise _Invalid(f"must be {' or '.join(_describe(a) for a in args)}")
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where, f"{key}.")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise _Invalid(f"must be a list ({_describe(hint)})")
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise _Invalid(f"must have {len(args)} items ({_describe(hint)})")
            items = [_check(a, v, key, where) for a, v in zip(args, value)]
        else:
            items = [_check(args[0], v, key, where) for v in value] if args else list(value)
        return origin(items)
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise _Invalid("must be a mapping")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise _Invalid("must be true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid("must be an integer")
        return value
    if hint is float:
        if isinstance(value, str):  # YAML reads 1e-3 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                raise _Invalid("must be a number") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise _Invalid("must be a finite number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise _Invalid("must be a string")
        return value
    return value


def _build(cls: type[T], data: Any, where: str, prefix: str) -> T:
    if not isinstance(data, dict):
        raise SiamfaceError(f"{where}: {prefix.rstrip('.') or 'the config'} must be a mapping of {cls.__name__}'s "
                            f"keys, got {type(data).__name__} {data!r}")
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - fields)
    if unknown:
        section = f" in {prefix.rstrip('.')}" if prefix else ""
        raise SiamfaceError(f"{where}: unknown key(s) {unknown}{section} for {cls.__name__}; valid keys: {sorted(fields)}")
    kwargs = {}
    for name, value in data.items():
        try:
            kwargs[name] = _check(hints[name], value, prefix + name, where)
        except _Invalid as exc:
            raise SiamfaceError(f"{where}: {prefix}{name}={value!r} {exc}") from None
    return cls(**kwargs)


def build_config(cls: type[T], data: dict, where: str) -> T:
    """A dataclass (nested ones too) from a mapping, every value checked against its field;
    ``where`` names the source in errors."""
    return _build(cls, data, where, "")


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


def changed_settings(path: Path, cls: type[T], cfg: T, free: typing.Sequence[str] = ()) -> list[str]:
    """The top-level settings of ``cfg`` that differ from the config a run recorded at ``path``
    (none without a record), ``free`` ones aside: resuming with others would mix two runs. The record
    is read as a ``cls``, so a setting added since it was written counts at its default."""
    if not path.is_file():
        return []
    now, then = config_to_dict(cfg), config_to_dict(build_config(cls, json.loads(path.read_text()), str(path)))
    return sorted(k for k in now if k not in free and now[k] != then[k])
