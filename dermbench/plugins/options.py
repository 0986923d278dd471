"""Typed component options: a frozen dataclass per component, parsed from strings and checked.

``--opt loss.gamma=2`` arrives as the string ``"2"``; :func:`build_options` parses it by the
field's type and refuses a name the dataclass does not have, listing the ones it does.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any

from dermbench.errors import ConfigError


def option(default: Any, help: str) -> Any:
    """A dataclass field with its default and the help text ``dermbench list KIND -v`` shows."""
    return dataclasses.field(default=default, metadata={"help": help})


def ascii_int(raw: str) -> int:
    """``int(raw)`` for ASCII digits only: Python's ``int`` also reads other scripts' digits
    (``"١٢"`` is 12), which no one types as a setting on purpose."""
    if not raw.strip().isascii():
        raise ValueError(raw)
    return int(raw)


def ascii_float(raw: str) -> float:
    """``float(raw)`` for ASCII text only (see :func:`ascii_int`)."""
    if not raw.strip().isascii():
        raise ValueError(raw)
    return float(raw)


ascii_int.__name__, ascii_float.__name__ = "int", "float"  # what argparse's message calls them
PARSERS: dict[Any, Any] = {int: ascii_int, float: ascii_float, str: str}


def _parse_value(kind: Any, raw: Any, where: str, name: str) -> Any:
    if isinstance(raw, list) and (typing.get_origin(kind) is tuple or kind is tuple):
        return tuple(raw)  # a TOML array for a tuple field: frozen like the CLI's value
    if not isinstance(raw, str):
        return raw
    origin = typing.get_origin(kind)
    args = typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if raw.lower() in ("none", "null", ""):
            return None
        non_none = [a for a in args if a is not type(None)]
        return _parse_value(non_none[0], raw, where, name)
    try:
        if kind is bool:
            low = raw.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if kind in (int, float, str):
            return PARSERS[kind](raw)
        if origin in (tuple, list) or kind in (tuple, list):
            inner = args[0] if args else str
            return tuple(_parse_value(inner, p.strip(), where, name) for p in raw.split(",") if p.strip())
    except ValueError:
        raise ConfigError(
            f"option {where}.{name}: cannot read {raw!r} as {getattr(kind, '__name__', kind)}"
        ) from None
    return raw


def build_options(cls: type, values: Mapping[str, Any], where: str) -> Any:
    """Instantiate an options dataclass, refusing unknown names and parsing string values."""
    if not dataclasses.is_dataclass(cls):
        raise ConfigError(f"{where}: options must be a dataclass, got {cls!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        listed = ", ".join(sorted(known)) or "none"
        raise ConfigError(f"{where}: unknown option(s) {', '.join(unknown)} (known: {listed})")
    parsed = {k: _checked(hints.get(k, str), _parse_value(hints.get(k, str), v, where, k), where, k)
              for k, v in values.items()}  # fmt: skip
    return cls(**parsed)


def _checked(kind: Any, value: Any, where: str, name: str) -> Any:
    """A parsed value of the declared type: numbers finite, an int never a bool or a fraction."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        if value is None:
            return None
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    if typing.get_origin(kind) is tuple and isinstance(value, tuple):
        inner = typing.get_args(kind)[0] if typing.get_args(kind) else Any
        return tuple(_checked(inner, v, where, name) for v in value) if inner in (int, float, str) else value
    bad = None
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            bad = "a number"
        elif not math.isfinite(value):
            bad = "a finite number"
        else:
            value = float(value)
    elif kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        bad = "a whole number"
    elif kind is bool and not isinstance(value, bool):
        bad = "true or false"
    elif kind is str and not isinstance(value, str):
        bad = "text"
    if bad:
        raise ConfigError(f"option {where}.{name}: expected {bad}, got {value!r}")
    return value


def describe_options(cls: type) -> list[dict[str, Any]]:
    hints = typing.get_type_hints(cls)
    rows = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else None
        if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        kind = hints.get(f.name, str)
        rows.append(
            {
                "name": f.name,
                "type": getattr(kind, "__name__", str(kind)),
                "default": default,
                "help": f.metadata.get("help", ""),
            }
        )
    return rows


def options_to_dict(opts: Any) -> dict[str, Any]:
    return dataclasses.asdict(opts) if dataclasses.is_dataclass(opts) else {}
