"""Experiment configs: TOML files (stdlib ``tomllib``) loaded into frozen dataclasses.

A config file holds the shared settings as top-level tables and one table per profile under
``[profiles.<name>]`` (``smoke``: seconds, used by tests; ``quick``: CPU, ``make reproduce``;
``paper``: paper scale) whose keys override the shared ones. Command-line ``--set a.b=value``
overrides come last; ``value`` is read as a TOML value (``3``, ``1e-3``, ``[8, 16]``, ``true``),
or as a plain string when it is not one.

Every key must name a field of the schema and every value must have the field's type: a mistake
raises ``ConfigError`` naming the key and the file, never a silently ignored setting.
"""

import argparse
import dataclasses
import importlib
import pathlib
import tomllib
import types
import typing
from collections.abc import Sequence
from typing import Any, TypeVar

T = TypeVar("T")
PROFILES = ("smoke", "quick", "paper")


class ConfigError(ValueError):
    """A config file or override that does not fit the experiment's schema."""


def load(
    path: str | pathlib.Path, schema: type[T], profile: str, overrides: Sequence[str] = ()
) -> T:
    """Read ``path``, apply ``[profiles.<profile>]`` then ``overrides``; build ``schema``."""
    path = pathlib.Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError as err:
        raise ConfigError(f"config file {path} does not exist") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path} is not valid TOML: {err}") from err
    profiles = raw.pop("profiles", {})
    if profile not in profiles:
        raise ConfigError(
            f"{path} has no profile {profile!r}; it defines {sorted(profiles) or 'none'}"
        )
    merged = _merge(raw, profiles[profile])
    for item in overrides:
        merged = _merge(merged, parse_override(item))
    return build(schema, merged, str(path))


def parse_override(item: str) -> dict:
    """``"a.b=value"`` -> ``{"a": {"b": value}}``."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {item!r} must look like section.key=value")
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text
    out: dict = {}
    node = out
    *parents, leaf = key.strip().split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    return out


def build(schema: type[T], data: dict, source: str, prefix: str = "") -> T:
    """Construct the dataclass ``schema`` from nested dicts, checking every key and type."""
    fields = {f.name: f for f in dataclasses.fields(schema)}
    hints = typing.get_type_hints(schema)
    unknown = set(data) - set(fields)
    if unknown:
        names = ", ".join(prefix + k for k in sorted(unknown))
        raise ConfigError(
            f"unknown config key(s) {names} in {source}; valid keys here: "
            f"{', '.join(prefix + k for k in fields)}"
        )
    values = {}
    for name, field in fields.items():
        key = prefix + name
        if name not in data:
            if (
                field.default is dataclasses.MISSING
                and field.default_factory is dataclasses.MISSING
            ):
                raise ConfigError(f"config key {key} is required but missing in {source}")
            continue
        values[name] = _coerce(hints[name], data[name], key, source)
    return schema(**values)


def cli(
    schema: type[T],
    default_path: str | pathlib.Path,
    argv: Sequence[str] | None = None,
    description: str = "",
) -> tuple[T, str, argparse.Namespace]:
    """Parse ``--profile``, ``--config``, repeated ``--set``, ``--import`` and ``--out`` into a
    config of ``schema``; ``--help`` lists every config key with its type and default.

    ``--import MODULE`` (repeatable) imports a module of the user's first, e.g. one that
    registers a toy problem with ``gnuq.problems.register``, so a setting can name it.
    ``args.custom`` is true when anything but the profile chose the settings (``--set``,
    ``--import``, ``--config``): such a run is not the paper's, and writes outside ``figures/``.
    """
    parser = argparse.ArgumentParser(
        description=description,
        epilog="config keys (TOML tables as dotted names; --set KEY=VALUE overrides one):\n"
        + "\n".join(f"  {line}" for line in schema_lines(schema)),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--profile", default="quick", help=f"one of {PROFILES} (default: quick)")
    parser.add_argument("--config", default=str(default_path), help="TOML config file")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override, repeatable"
    )
    parser.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import a module first (one that registers problems), repeatable",
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        help="where tables, figures and results.json go (default: figures/<profile>/<experiment> "
        "for the profile as committed; results/custom/<profile>/<experiment> when --set, "
        "--import or --config changed it)",
    )
    args = parser.parse_args(argv)
    if args.profile not in PROFILES:
        raise ConfigError(f"--profile {args.profile!r}: choose one of {PROFILES}")
    for module in args.imports:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name != module:  # the module exists but lacks one of its own imports
                raise
            raise ConfigError(
                f"--import {module}: {err} (give a module name importable from the current "
                "directory, e.g. my_problems for ./my_problems.py)"
            ) from err
    args.custom = bool(args.set or args.imports or args.config != str(default_path))
    return load(args.config, schema, args.profile, args.set), args.profile, args


def schema_lines(schema: type, prefix: str = "") -> list[str]:
    """``key: type = default`` for every field of ``schema``, nested tables as dotted keys."""
    lines = []
    hints = typing.get_type_hints(schema)
    for field in dataclasses.fields(schema):
        hint = hints[field.name]
        if dataclasses.is_dataclass(hint):
            lines += schema_lines(hint, f"{prefix}{field.name}.")
            continue
        if field.default is not dataclasses.MISSING:
            default = f" = {field.default!r}"
        elif field.default_factory is not dataclasses.MISSING:
            default = f" = {field.default_factory()!r}"
        else:
            default = " (required)"
        plain = not typing.get_args(hint) and hasattr(hint, "__name__")
        name = hint.__name__ if plain else str(hint).replace("typing.", "")
        lines.append(f"{prefix}{field.name}: {name}{default}")
    return lines


def _merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _coerce(hint: Any, value: Any, key: str, source: str) -> Any:
    def fail(expected: str) -> typing.NoReturn:
        raise ConfigError(
            f"config key {key} in {source} must be {expected}, got {value!r} "
            f"({type(value).__name__})"
        )

    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            fail(f"a table of {hint.__name__} settings")
        return build(hint, value, source, key + ".")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, key, source)
            except ConfigError:
                pass
        fail(" or ".join(getattr(a, "__name__", str(a)) for a in args))
    if origin is tuple:
        if not isinstance(value, list | tuple):
            fail("a list")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, f"{key}[{i}]", source) for i, v in enumerate(value))
        if len(args) != len(value):
            fail(f"a list of {len(args)} values")
        return tuple(
            _coerce(a, v, f"{key}[{i}]", source)
            for i, (a, v) in enumerate(zip(args, value, strict=True))
        )
    if origin is typing.Literal:
        if value not in args:
            fail(f"one of {list(args)}")
        return value
    if hint is dict or origin is dict:
        if not isinstance(value, dict):
            fail("a table")
        if not args:
            return value
        return {k: _coerce(args[1], v, f"{key}.{k}", source) for k, v in value.items()}
    if hint is bool:
        if not isinstance(value, bool):
            fail("true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            fail("an integer")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            fail("a number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            fail("a string")
        return value
    raise TypeError(f"config schema type {hint!r} of {key} is not supported")
