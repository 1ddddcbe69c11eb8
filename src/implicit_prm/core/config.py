"""One dataclass per command: it generates the CLI flags, reads --config YAML/JSON, and is the Python API's argument.

Fields carry their help text in `metadata={"help": ...}`. Precedence: dataclass defaults < config file < flags.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

from .errors import ConfigError
from .io import write_json

C = TypeVar("C")


def field(default: Any = dataclasses.MISSING, help: str = "", aliases: tuple[str, ...] = (), **kw) -> Any:  # noqa: A002
    """A dataclass field with help text (lists and dicts get a default_factory).

    `aliases`: former names of a renamed field, still accepted as flags (`--old-name`) and config-file keys.
    """
    meta = {"help": help, "aliases": tuple(aliases)}
    if isinstance(default, (list, dict)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata=meta, **kw)
    return dataclasses.field(default=default, metadata=meta, **kw)


# compatibility: former field names (`aliases`) for flags, config files and saved configs; each `aliases=` notes when
# it can go (0.3 for all of them now); remove this and the aliases in field/add_arguments with the last one
def resolve_aliases(cls, data: dict, source: str = "config") -> dict:
    """`data` with former field names (aliases) replaced by the current ones; both at once is an error."""
    out = dict(data)
    for f in dataclasses.fields(cls):
        for alias in f.metadata.get("aliases", ()):
            if alias in out:
                if f.name in out:
                    raise ConfigError(f"{source}: fields '{alias}' and '{f.name}' are the same setting "
                                      f"('{alias}' is its former name); give one")
                out[f.name] = out.pop(alias)
    return out


def _unwrap_optional(tp):
    """Optional[X] -> (X, True); X -> (X, False)."""
    if get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _coerce(name: str, tp, value: Any, source: str):
    """Check/convert a config-file value to the field's type, with a message naming the field."""
    base, optional = _unwrap_optional(tp)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{source}: field '{name}' may not be null")
    origin = get_origin(base)
    if origin is Literal:
        choices = get_args(base)
        if value not in choices:
            raise ConfigError(f"{source}: field '{name}' must be one of {list(choices)}, got {value!r}")
        return value
    if origin in (list, tuple):
        (item,) = get_args(base)[:1] or (str,)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: field '{name}' must be a list, got {type(value).__name__}")
        return [_coerce(name, item, v, source) for v in value]
    if base is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: field '{name}' must be true or false, got {value!r}")
        return value
    if base is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source}: field '{name}' must be an integer, got {value!r}")
        return value
    if base is float:
        if isinstance(value, str):  # YAML 1.1 reads '1e-5' (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{source}: field '{name}' must be a number, got {value!r}")
        try:
            return float(value)
        except OverflowError:
            raise ConfigError(f"{source}: field '{name}' is beyond the range of a float") from None
    if base is str:
        if not isinstance(value, str):
            raise ConfigError(f"{source}: field '{name}' must be a string, got {value!r}")
        return value
    return value


def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def add_arguments(parser: argparse.ArgumentParser, cls) -> None:
    """Add one flag per dataclass field (defaults suppressed so we can tell which flags were given)."""
    hints = _hints(cls)
    parser.add_argument("--config", default=None, help="YAML or JSON file with any of these fields; flags override it")
    for f in dataclasses.fields(cls):
        tp, _ = _unwrap_optional(hints[f.name])
        flags = ["--" + n.replace("_", "-") for n in (f.name, *f.metadata.get("aliases", ()))]
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        help_text = f.metadata.get("help", "")
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        help_text += " (required)" if required else f" (default: {default})"
        if len(flags) > 1:
            help_text += f" (formerly {', '.join(flags[1:])})"
        kw: dict[str, Any] = dict(dest=f.name, default=argparse.SUPPRESS, help=help_text)
        origin = get_origin(tp)
        if tp is bool:
            parser.add_argument(*flags, action=argparse.BooleanOptionalAction, **kw)
        elif origin is Literal:
            parser.add_argument(*flags, choices=list(get_args(tp)), type=type(get_args(tp)[0]), **kw)
        elif origin in (list, tuple):
            (item,) = get_args(tp)[:1] or (str,)
            parser.add_argument(*flags, nargs="*", type=item, **kw)
        elif tp in (int, float, str):
            parser.add_argument(*flags, type=tp, **kw)
        else:
            parser.add_argument(*flags, type=str, **kw)


def load_config_file(path: str | Path) -> dict:
    """Read a YAML or JSON mapping."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: config file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: config file is not UTF-8 text (undecodable byte at offset {e.start})") from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as e:  # yaml and json raise different types; both are the user's file being malformed
        raise ConfigError(f"{path}: cannot parse config file: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: config file must hold a mapping of field names to values")
    return data


def from_mapping(cls: type[C], data: dict, source: str = "config") -> C:
    """Build a config from a mapping, rejecting unknown fields and wrong types with a clear message."""
    hints = _hints(cls)
    odd = [k for k in data if not isinstance(k, str)]
    if odd:
        raise ConfigError(f"{source}: field names must be strings, found {odd[:3]}")
    data = resolve_aliases(cls, data, source)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{source}: unknown field(s) {unknown}; known fields: {sorted(names)}")
    values = {k: _coerce(k, hints[k], v, source) for k, v in data.items()}
    missing = [f.name for f in dataclasses.fields(cls)
               if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and f.name not in values]
    if missing:
        raise ConfigError(f"{source}: missing required field(s) {missing} (flags: "
                          + ", ".join("--" + m.replace('_', '-') for m in missing) + ")")
    try:
        return cls(**values)
    except (ValueError, TypeError, ConfigError) as e:
        raise ConfigError(f"{source}: {e}") from None


def from_args(cls: type[C], ns: argparse.Namespace) -> C:
    """Merge defaults < --config file < explicit flags into a config instance."""
    given = dict(vars(ns))
    cfg_path = given.pop("config", None)
    for internal in ("command", "subcommand", "func", "verb"):  # argparse bookkeeping, not config fields
        given.pop(internal, None)
    source = str(cfg_path) if cfg_path else "command line"
    merged = resolve_aliases(cls, load_config_file(cfg_path), source) if cfg_path else {}  # file's old names first,
    merged.update(given)  # so that a flag overrides the file's setting whatever name either uses
    return from_mapping(cls, merged, source=str(cfg_path) if cfg_path else "command line")


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def save_config(cfg, path: str | Path) -> None:
    """Record the full resolved config next to a run's outputs (atomically)."""

    write_json(path, {"command": type(cfg).__name__, **to_dict(cfg)})
