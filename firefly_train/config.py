"""YAML configs with command-line overrides, mapped onto dataclasses.

A command declares its config as a (possibly nested) dataclass whose fields carry their documentation
in `metadata={"help": ...}`. `load_config` reads a YAML file, applies `--key value` / `--a.b value`
overrides (values parsed as YAML scalars, so `--lr 1e-4`, `--lora.target_modules [q_proj,v_proj]` and
`--bf16 false` all work), rejects unknown keys naming the file and key, and returns the dataclass.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from firefly_core.errors import FireflyError, InputError
from firefly_core.io import write_text


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """['--lr', '1e-4', '--lora.r=8'] -> {'lr': 1e-4, 'lora.r': 8}."""
    out: dict[str, Any] = {}
    i = 0
    while i < len(items):
        key = items[i]
        if not key.startswith("--"):
            raise FireflyError(f"unexpected argument '{key}': overrides are written --key value")
        key = key[2:]
        if "=" in key:
            key, raw = key.split("=", 1)
            i += 1
        else:
            if i + 1 >= len(items) or items[i + 1].startswith("--"):
                raw, i = "true", i + 1
            else:
                raw, i = items[i + 1], i + 2
        out[key.replace("-", "_")] = yaml.safe_load(raw) if raw != "" else ""
    return out


def _set_dotted(d: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    for p in parts[:-1]:
        d = d.setdefault(p, {})
        if not isinstance(d, dict):
            raise FireflyError(f"override --{dotted}: '{p}' is not a section")
    d[parts[-1]] = value


def _coerce(tp: Any, value: Any, where: str):
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        return _coerce(non_none[0], value, where) if len(non_none) == 1 else value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise FireflyError(f"{where}: expected a mapping")
        return _build(tp, value, where)
    if origin is list:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise FireflyError(f"{where}: expected a list, got {value!r}")
        return [_coerce(args[0], v, where) for v in value] if args else value
    if origin is typing.Literal:
        if value not in args:
            raise FireflyError(f"{where}: must be one of {', '.join(map(str, args))}, got {value!r}")
        return value
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    if tp in (int, float, str, bool) and not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise FireflyError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def _build(cls, data: dict, where: str):
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise FireflyError(f"{where}: unknown key '{unknown[0]}' (known: {', '.join(sorted(names))})")
    kwargs = {k: _coerce(hints[k], v, f"{where}: key '{k}'") for k, v in data.items()}
    for f in dataclasses.fields(cls):
        low = f.metadata.get("min")
        if f.name in kwargs and low is not None and kwargs[f.name] < low:
            raise FireflyError(f"{where}: key '{f.name}' must be at least {low}, got {kwargs[f.name]}")
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise FireflyError(f"{where}: {e}") from None


def load_config(cls, path: str | Path | None = None, overrides: list[str] | dict | None = None):
    """Build `cls` from an optional YAML file plus overrides (CLI list or dotted dict)."""
    data: dict = {}
    where = "config"
    if path:
        path = Path(path)
        where = str(path)
        if not path.is_file():
            raise InputError(path, "config file not found")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            raise InputError(path, f"invalid YAML: {getattr(e, 'problem', e)}",
                             line=mark.line + 1 if mark else None) from None
        if not isinstance(data, dict):
            raise InputError(path, "expected a mapping at the top level")
    ov = parse_overrides(overrides) if isinstance(overrides, list) else dict(overrides or {})
    for k, v in ov.items():
        _set_dotted(data, k, v)
    return _build(cls, data, where)


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def save_config(cfg, path: str | Path) -> None:
    write_text(path, yaml.safe_dump(to_dict(cfg), allow_unicode=True, sort_keys=False))


def describe(cls, prefix: str = "") -> list[tuple[str, str, Any]]:
    """(key, help, default) for every key, nested sections flattened with dots: the one reference."""
    rows = []
    for f in dataclasses.fields(cls):
        tp = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(tp):
            rows += describe(tp, prefix + f.name + ".")
            continue
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        rows.append((prefix + f.name, f.metadata.get("help", ""), default))
    return rows
