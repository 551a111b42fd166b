"""Typed params: each stage reads one ``params.yaml`` section into a frozen dataclass."""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from zeroseg.errors import ConfigError

T = TypeVar("T")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{where}: expected {len(args)} items, got {value!r}")
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(tp, value, where)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys and wrong types are errors."""
    hints = typing.get_type_hints(cls)
    # a field may read a params key that is not a Python name (metadata "key", e.g. 'lambda')
    key_of = {f.name: f.metadata.get("key", f.name) for f in dataclasses.fields(cls)}
    field_of = {v: k for k, v in key_of.items()}
    unknown = sorted(set(data) - set(field_of))
    if unknown:
        raise ConfigError(f"{where or cls.__name__}: unknown key(s) {unknown}; known: {sorted(field_of)}")
    kwargs = {field_of[k]: _coerce(v, hints[field_of[k]], f"{where}.{k}" if where else k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where or cls.__name__}: {exc}") from exc


def load_yaml(text: str, where: str) -> Any:
    """YAML text read as DVC reads params (ruamel.yaml, YAML 1.2 core schema): unquoted
    ``off``/``on``/``yes``/``no`` stay strings, ``1e-4`` is a number. DVC rewrites params.yaml
    with ruamel after ``dvc exp run -S`` and drops the quotes of ``amp: "off"``; a YAML 1.1
    reader (PyYAML) would then read ``off`` as false."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        return YAML(typ="safe").load(text)
    except YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML: {exc}") from exc


def params_value(params_path: str | os.PathLike, key: str, what: str = "section") -> Any:
    """The top-level ``key`` of a params YAML file (a section, or a value such as ``seeds``)."""
    path = Path(params_path)
    try:
        text = path.read_text()
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: params file not found") from exc
    params = load_yaml(text, str(path)) or {}
    if not isinstance(params, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(params).__name__}")
    if key not in params:
        raise ConfigError(f"{path}: no {what} '{key}'")
    return params[key]


def load_section(params_path: str | os.PathLike, section: str, cls: type[T]) -> T:
    """Read section ``section`` of a params YAML file into ``cls``."""
    return from_dict(cls, params_value(params_path, section) or {}, f"{Path(params_path)}:{section}")
