"""Registries of named components, one per kind, filled by plugins.

A name registered twice is an error naming both plugins: a benchmark must never silently swap
one method for another.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Iterator
from typing import Any

from dermbench.errors import ConfigError, PluginError
from dermbench.plugins.contract import CONTRACTS, check_factory_call


def _registered_class(name: str) -> type:
    from dermbench import components, tasks

    return getattr(components, name, None) or getattr(tasks, name)


class Registry:
    """Named objects of one kind. Objects have ``.name`` and ``.plugin`` attributes."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, Any] = {}

    def add(self, item: Any, plugin: str) -> None:
        expected = CONTRACTS[self.kind].registers
        if not isinstance(item, _registered_class(expected)):
            raise PluginError(
                f"plugin {plugin!r} registered a {type(item).__name__} as one of the {self.kind}; "
                f"register a {expected}"
            )
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
            singular = self.kind[:-2] if self.kind.endswith("sses") else self.kind.removesuffix("s")
            raise ConfigError(f"unknown {singular} {name!r} (known: {known})") from None

    def build(self, name: str, values: Any, *args: Any) -> Any:
        """Build the named component: its options from ``values``, then ``factory(options, *args)``.

        This is the one place the core calls factories; the arguments are checked against the
        kind's signature in :mod:`dermbench.plugins.contract` first.
        """
        component = self.get(name)
        return self.call(name, component.make_options(values), *args)

    def call(self, name: str, options: Any, *args: Any) -> Any:
        """``factory(options, *args)`` with options already built (to read a default first)."""
        component = self.get(name)
        check_factory_call(self.kind, (options, *args))
        return component.factory(options, *args)

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
        for kind in CONTRACTS:
            setattr(self, kind, Registry(kind))
        self.defaults: dict[str, str] = {}

    def default_of(self, kind: str) -> str:
        """The ``kind`` component used where a run or recipe names none (``dermbench_default_component``)."""
        name = self.defaults.get(kind)
        if not name:
            raise ConfigError(f"no plugin names a default for {kind}: name one explicitly")
        return name

    def of(self, kind: str) -> Registry:
        if kind not in CONTRACTS:
            raise ConfigError(f"unknown component kind {kind!r} (known: {', '.join(CONTRACTS)})")
        return getattr(self, kind)
