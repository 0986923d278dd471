"""Registries of named components, one per kind, filled by plugins.

A name registered twice is an error naming both plugins: a benchmark must never silently swap
one method for another.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Iterator
from typing import Any

from dermbench.components import KINDS
from dermbench.errors import ConfigError, PluginError


class Registry:
    """Named objects of one kind. Objects have ``.name`` and ``.plugin`` attributes."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, Any] = {}

    def add(self, item: Any, plugin: str) -> None:
        name = item.name
        if name in self._items:
            first = self._items[name].plugin
            raise PluginError(
                f"{self.kind} {name!r} is registered twice: by plugin {first!r} and by plugin {plugin!r}"
            )
        if dataclasses.is_dataclass(item) and hasattr(item, "plugin") and not item.plugin:
            item = dataclasses.replace(item, plugin=plugin)
        self._items[name] = item

    def get(self, name: str) -> Any:
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "none installed"
            singular = self.kind[:-1] if self.kind.endswith("s") else self.kind
            raise ConfigError(f"unknown {singular} {name!r} (known: {known})") from None

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[Any]:
        return iter(self._items[k] for k in sorted(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def names(self, pattern: str = "*") -> list[str]:
        return sorted(n for n in self._items if fnmatch.fnmatch(n, pattern))


class Registries:
    """All registries, one attribute per kind (``registries.losses.get("ce")``)."""

    def __init__(self) -> None:
        for kind in KINDS:
            setattr(self, kind, Registry(kind))

    def of(self, kind: str) -> Registry:
        if kind not in KINDS:
            raise ConfigError(f"unknown component kind {kind!r} (known: {', '.join(KINDS)})")
        return getattr(self, kind)
