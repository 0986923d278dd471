"""Plugin loading and the typed facade over pluggy.

Built-in plugins load first, then the ``dermbench`` entry-point group (third parties and the
first-party plugins in ``plugins/``). A plugin that fails to import or register, or that
defines a ``dermbench_*`` function that is no dermbench hook (a misspelt hook would otherwise
load and register nothing), is recorded with its name and the error, and registers nothing;
everything else keeps working.

Environment:
- ``DERMBENCH_DISABLE_PLUGIN_AUTOLOAD=1``: load no entry-point plugins (built-ins still load);
- ``DERMBENCH_LOAD_PLUGINS=a,b``: load only these entry-point plugins.
"""

from __future__ import annotations

import difflib
import importlib
import os
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from dermbench import __version__, hookspecs
from dermbench.errors import DermbenchError, PluginError
from dermbench.plugins.contract import CONTRACTS
from dermbench.plugins.registry import Registries

GROUP = "dermbench"
HOOK_PREFIX = "dermbench_"

BUILTIN_MODULES = (
    "dermbench.builtin.tasks",
    "dermbench.builtin.datasets",
    "dermbench.builtin.models",
    "dermbench.builtin.losses",
    "dermbench.builtin.optim",
    "dermbench.builtin.stages",
    "dermbench.builtin.batch",
    "dermbench.builtin.posthoc",
    "dermbench.builtin.samplers",
    "dermbench.builtin.explainers",
    "dermbench.builtin.launchers",
    "dermbench.builtin.segmenters",
    "dermbench.builtin.methods",
    "dermbench.builtin.defaults",
)


@dataclass
class PluginInfo:
    name: str
    version: str | None
    module: str
    source: str  # "builtin" | "entry-point" | "inline"
    error: str | None = None


@dataclass
class Plugins:
    """A plugin manager plus the registries its plugins filled and what failed on the way."""

    pm: pluggy.PluginManager
    registries: Registries
    info: list[PluginInfo] = field(default_factory=list)
    extra: tuple = ()  # how it was built, so a sweep's worker can build the same set
    autoload: bool = True

    @property
    def failures(self) -> list[PluginInfo]:
        return [p for p in self.info if p.error]

    def versions(self) -> dict[str, str | None]:
        return {p.name: p.version for p in self.info if not p.error and p.source != "builtin"}

    def version_of(self, plugin: str) -> str | None:
        if plugin.startswith("dermbench."):
            return __version__
        return next((p.version for p in self.info if p.name == plugin), None)

    def default(self, kind: str) -> str:
        """The component of ``kind`` used when a run names none (a plugin may replace it)."""
        return self.registries.default_of(kind)

    # --- lifecycle hooks, so callers never touch pm.hook directly ---
    def run_start(self, record: dict, run_dir: str, resumed: bool) -> None:
        self.pm.hook.dermbench_run_start(record=record, run_dir=run_dir, resumed=resumed)

    def epoch_end(self, record: dict, row: dict, step: int) -> None:
        self.pm.hook.dermbench_epoch_end(record=record, row=row, step=step)

    def run_finished(self, record: dict, run_dir: str) -> None:
        self.pm.hook.dermbench_run_finished(record=record, run_dir=run_dir)

    def sweep_start(self, sweep: dict) -> None:
        self.pm.hook.dermbench_sweep_start(sweep=sweep)

    def sweep_finished(self, sweep: dict, records: list[dict], failures: list[dict]) -> None:
        self.pm.hook.dermbench_sweep_finished(sweep=sweep, records=records, failures=failures)


def new_plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    return pm


HOOK_NAMES = frozenset(n for n in dir(hookspecs) if n.startswith(HOOK_PREFIX))


def check_hook_names(plugin: Any) -> None:
    """Refuse a ``dermbench_*`` attribute that is not a hook: it would be silently ignored."""
    for attr in sorted(a for a in dir(plugin) if a.startswith(HOOK_PREFIX)):
        if attr not in HOOK_NAMES and callable(getattr(plugin, attr)):
            close = difflib.get_close_matches(attr, HOOK_NAMES, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise PluginError(f"{attr} is not a dermbench hook{hint}")


def _collect(plugin: Any, name: str, registries: Registries) -> None:
    """Call one plugin's registration hooks and add what it hands over, all or nothing.

    Items are staged first so a plugin that raises half-way leaves no partial registrations.
    """
    staged: list[tuple[str, Any]] = []

    def stage(kind: str, item: Any) -> None:  # one item, or a list or tuple of them
        staged.extend((kind, i) for i in (item if isinstance(item, list | tuple) else [item]))

    for kind in CONTRACTS:
        impl = getattr(plugin, f"dermbench_register_{kind}", None)
        if impl is not None:
            impl(register=lambda item, _kind=kind: stage(_kind, item))
    scratch = Registries()
    for kind, item in staged:  # duplicates inside the plugin, or against earlier plugins
        if item.name in registries.of(kind):
            registries.of(kind).add(item, name)  # raises, naming both plugins
        scratch.of(kind).add(item, name)
    for kind, item in staged:
        registries.of(kind).add(item, name)


def _entry_points() -> list[metadata.EntryPoint]:
    return sorted(metadata.entry_points(group=GROUP), key=lambda ep: ep.name)


class _Loader:
    """Adds plugins one at a time to a fresh manager, recording each success or failure."""

    def __init__(self) -> None:
        self.pm = new_plugin_manager()
        self.registries = Registries()
        self.info: list[PluginInfo] = []

    def add(self, name: str, plugin: Any, version: str | None, source: str, module: str) -> None:
        try:
            check_hook_names(plugin)
            self.pm.register(plugin, name=name)
            self.pm.check_pending()
            _collect(plugin, name, self.registries)
        except Exception as exc:  # a broken third-party plugin must not take the rest down
            _unregister(self.pm, name)
            error = str(exc) if isinstance(exc, DermbenchError) else f"{type(exc).__name__}: {exc}"
            self.info.append(PluginInfo(name, version, module, source, error))
            return
        self.info.append(PluginInfo(name, version, module, source))

    def add_entry_points(self, only: list[str]) -> None:
        for ep in _entry_points():
            if only and ep.name not in only:
                continue
            version = ep.dist.version if ep.dist else None
            try:
                plugin = ep.load()
            except Exception as exc:
                error = f"failed to import: {type(exc).__name__}: {exc}"
                self.info.append(PluginInfo(ep.name, version, ep.value, "entry-point", error))
                continue
            self.add(ep.name, plugin, version, "entry-point", ep.value)
        for name in sorted(set(only) - {ep.name for ep in _entry_points()}):
            error = "not installed (named in DERMBENCH_LOAD_PLUGINS)"
            self.info.append(PluginInfo(name, None, "", "entry-point", error))


def load_plugins(extra: list[tuple[str, Any]] | None = None, autoload: bool | None = None) -> Plugins:
    """Build a fresh plugin manager: built-ins, entry points (unless disabled), then ``extra``.

    ``extra`` is a list of ``(name, module_or_object)`` pairs, used by tests to register inline
    plugins on a fresh manager.
    """
    loader = _Loader()
    for mod_name in BUILTIN_MODULES:
        loader.add(mod_name, importlib.import_module(mod_name), __version__, "builtin", mod_name)
    if autoload is None:
        autoload = not os.environ.get("DERMBENCH_DISABLE_PLUGIN_AUTOLOAD")
    only = [s.strip() for s in os.environ.get("DERMBENCH_LOAD_PLUGINS", "").split(",") if s.strip()]
    if autoload or only:
        loader.add_entry_points(only)
    for name, plugin in extra or []:
        version = getattr(plugin, "__version__", None)
        loader.add(name, plugin, version, "inline", getattr(plugin, "__name__", name))
    for kind in CONTRACTS:
        name = loader.pm.hook.dermbench_default_component(kind=kind)
        if name:
            loader.registries.defaults[kind] = name
    return Plugins(pm=loader.pm, registries=loader.registries, info=loader.info, extra=tuple(extra or ()),
                   autoload=bool(autoload))  # fmt: skip


def _unregister(pm: pluggy.PluginManager, name: str) -> None:
    plugin = pm.get_plugin(name)
    if plugin is not None:
        pm.unregister(plugin)


_cached: Plugins | None = None


def get_plugins(refresh: bool = False) -> Plugins:
    """The process-wide plugins, loaded once."""
    global _cached
    if _cached is None or refresh:
        _cached = load_plugins()
    return _cached
