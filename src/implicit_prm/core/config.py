"""One dataclass per command: it generates the CLI flags, reads --config YAML/JSON, and is the Python API's argument.

Fields carry their help text in `metadata={"help": ...}`. Precedence: dataclass defaults < config file < flags.
Every name has two flag spellings, `--batch-size` and `--batch_size`; a field may have other names (`Alias`).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

from .errors import ConfigError
from .io import write_json

C = TypeVar("C")


@dataclasses.dataclass(frozen=True)
class Alias:
    """Another name of a field, accepted as a flag (`--learning-rate`, `--learning_rate`) and a config-file key.

    kind: "former" = the field's name before a rename (compatibility), "hf" = its TRL / HF Trainer name.
    type: the value's type under this name where it differs from the field's (`bf16` is a bool, `precision` a
    choice); values: the value under this name -> the field's value, any other refused; prefix: put before a string
    value that lacks it (`dataset_name: org/set` -> `data: hf:org/set`).
    """
    name: str
    kind: Literal["former", "hf"] = "hf"
    type: Any = None
    values: Mapping[Any, Any] | None = None
    prefix: str = ""

    def convert(self, field_name: str, field_type: Any, value: Any, source: str) -> Any:
        """The field's value for `value` given under this name; errors name this name and the field."""
        value = _coerce(self.name, self.type or field_type, value, source)
        if self.values is not None:
            if value not in self.values:
                raise ConfigError(f"{source}: field '{self.name}' ({self.what(field_name)}) must be one of "
                                  f"{list(self.values)}, got {value!r}")
            return self.values[value]
        if self.prefix and isinstance(value, str) and not value.startswith(self.prefix):
            return self.prefix + value
        return value

    def what(self, field_name: str) -> str:
        return f"the {'former' if self.kind == 'former' else 'TRL/HF'} name of '{field_name}'"

    def describe(self) -> str:
        """How --help shows a TRL/HF name: `--bf16: true -> bf16, false -> fp32`, `--dataset_name NAME -> hf:NAME`."""
        if self.values is not None:
            show = {True: "true", False: "false"}.get
            pairs = [show(k, k) if k == v else f"{show(k, k)} -> {show(v, v)}" for k, v in self.values.items()]
            return f"--{self.name}: {', '.join(map(str, pairs))}"
        return f"--{self.name} NAME -> {self.prefix}NAME" if self.prefix else f"--{self.name}"


def field(default: Any = dataclasses.MISSING, help: str = "", aliases: tuple[str, ...] = (),  # noqa: A002
          hf: tuple[str | Alias, ...] = (), **kw) -> Any:
    """A dataclass field with help text (lists and dicts get a default_factory).

    `aliases`: former names of a renamed field, still accepted as flags (`--old-name`) and config-file keys.
    `hf`: its TRL / HF Trainer names (`"learning_rate"`, or an `Alias` that converts the value), accepted the same way.
    """
    names = (*(Alias(a, "former") for a in aliases), *(a if isinstance(a, Alias) else Alias(a) for a in hf))
    meta = {"help": help, "aliases": names}
    if isinstance(default, (list, dict)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata=meta, **kw)
    return dataclasses.field(default=default, metadata=meta, **kw)


def _aliases(f: dataclasses.Field) -> tuple[Alias, ...]:
    return f.metadata.get("aliases", ())


# compatibility: the former field names (`aliases=`, kind "former") in flags, config files and saved configs; each
# `aliases=` notes when it can go (0.3 for all of them now); TRL/HF names (`hf=`) use the same path and stay
def resolve_aliases(cls, data: dict, source: str = "config") -> dict:
    """`data` with each field's other names (former, TRL/HF) replaced by its own, the values converted; two names of
    one setting at once is an error naming both."""
    hints = _hints(cls)
    out = dict(data)
    for f in dataclasses.fields(cls):
        given = [a for a in _aliases(f) if a.name in out]
        if not given:
            continue
        if len(given) > 1 or f.name in out:
            names = [a.name for a in given] + [f.name] * (f.name in out)
            listed = ", ".join(f"'{n}'" for n in names[:-1]) + f" and '{names[-1]}'"
            why = ", ".join(f"'{a.name}' is {a.what(f.name)}" for a in given)
            raise ConfigError(f"{source}: fields {listed} are the same setting ({why}); give one")
        (alias,) = given
        out[f.name] = alias.convert(f.name, hints[f.name], out.pop(alias.name), source)
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


def _type_kwargs(tp) -> dict[str, Any]:
    """argparse's `type`/`choices`/`nargs` for a (non-bool) field type."""
    origin = get_origin(tp)
    if origin is Literal:
        return dict(choices=list(get_args(tp)), type=type(get_args(tp)[0]))
    if origin in (list, tuple):
        (item,) = get_args(tp)[:1] or (str,)
        return dict(nargs="*", type=item)
    return dict(type=tp if tp in (int, float, str) else str)


def _add_flag(parser: argparse.ArgumentParser, name: str, tp, help_text: str) -> None:
    """The flags of one name, its dest: `--kebab-case` with `help_text` (may be SUPPRESS), `--snake_case` hidden; bools also
    take `--no-kebab-case` and `--no_snake_case`."""
    kebab, snake = "--" + name.replace("_", "-"), "--" + name
    kw: dict[str, Any] = dict(dest=name, default=argparse.SUPPRESS)
    if tp is bool:
        parser.add_argument(kebab, action=argparse.BooleanOptionalAction, help=help_text, **kw)
        if snake != kebab:
            parser.add_argument(snake, action="store_true", help=argparse.SUPPRESS, **kw)
        parser.add_argument("--no_" + name, action="store_false", help=argparse.SUPPRESS, **kw)
        return
    parser.add_argument(kebab, help=help_text, **_type_kwargs(tp), **kw)
    if snake != kebab:
        parser.add_argument(snake, help=argparse.SUPPRESS, **_type_kwargs(tp), **kw)


def _help(f: dataclasses.Field) -> str:
    """A field's --help line: its help, default, former names and TRL/HF names."""
    required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    default = f.default if f.default is not dataclasses.MISSING else (
        None if required else f.default_factory())
    text = f.metadata.get("help", "") + (" (required)" if required else f" (default: {default})")
    former = ["--" + a.name.replace("_", "-") for a in _aliases(f) if a.kind == "former"]
    if former:
        text += f" (formerly {', '.join(former)})"
    hf = [a.describe() for a in _aliases(f) if a.kind == "hf"]
    if hf:
        text += f" (TRL/HF name {'; '.join(hf)})"
    return text


def add_arguments(parser: argparse.ArgumentParser, cls) -> None:
    """Add the flags of every dataclass field and of its other names, each under its own dest (so that two names of
    one setting can be refused); defaults are suppressed so we can tell which flags were given."""
    hints = _hints(cls)
    parser.add_argument("--config", default=None, help="YAML or JSON file with any of these fields (keys as the "
                        "flags, with '_': batch_size); flags override it. Every flag may also be spelled with '_' "
                        "(--batch_size)")
    for f in dataclasses.fields(cls):
        tp, _ = _unwrap_optional(hints[f.name])
        _add_flag(parser, f.name, tp, _help(f))
        for alias in _aliases(f):
            _add_flag(parser, alias.name, _unwrap_optional(alias.type or hints[f.name])[0], argparse.SUPPRESS)


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
    merged = resolve_aliases(cls, load_config_file(cfg_path), source) if cfg_path else {}  # each side's other names
    merged.update(resolve_aliases(cls, given, "command line"))  # first, so a flag overrides the file whatever names
    return from_mapping(cls, merged, source=source)


def field_defaults(cls) -> dict:
    """{field: default} of every field of a config dataclass that has one."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def save_config(cfg, path: str | Path) -> None:
    """Record the full resolved config next to a run's outputs (atomically)."""

    write_json(path, {"command": type(cfg).__name__, **to_dict(cfg)})
