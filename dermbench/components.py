"""Component specs, method recipes and the contexts factories receive.

A component is a named factory with typed options. Options are a dataclass whose fields carry
their types and defaults; ``dermbench list KIND`` prints them and ``--opt loss.gamma=2`` sets them.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dermbench.errors import ConfigError

KINDS = (
    "datasets",
    "tasks",
    "models",
    "losses",
    "optimizers",
    "schedulers",
    "samplers",
    "stages",
    "posthoc",
    "predictors",
    "explainers",
    "metrics",
    "methods",
    "sweeps",
)


@dataclass(frozen=True)
class NoOptions:
    """Options of a component that takes none."""


@dataclass(frozen=True)
class Component:
    """A named factory plus its typed options.

    ``plugin`` is filled in by the registry with the name of the plugin that registered it.
    """

    name: str
    factory: Callable[..., Any]
    summary: str
    options: type = NoOptions
    paper: str | None = None
    plugin: str = ""

    def make_options(self, values: Mapping[str, Any] | None = None) -> Any:
        """Build the options dataclass from defaults and ``values`` (strings are parsed)."""
        return build_options(self.options, values or {}, where=self.name)

    def build(self, values: Mapping[str, Any] | None = None, *args: Any, **kwargs: Any) -> Any:
        return self.factory(self.make_options(values), *args, **kwargs)

    def describe_options(self) -> list[dict[str, Any]]:
        return describe_options(self.options)


@dataclass(frozen=True)
class Ref:
    """A reference to a component by name, with option values overriding its defaults."""

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "options": dict(self.options)}


@dataclass(frozen=True)
class StageRecipe:
    """One training stage of a method: which stage runner, and the components it uses.

    ``epochs``, ``lr`` and ``batch_size`` of ``None`` mean "take the run's value", so the
    uniform protocol can fix them for every method.
    """

    name: str = "train"
    runner: str = "supervised"
    loss: Ref = Ref("ce")
    optimizer: Ref = Ref("adam")
    scheduler: Ref | None = None
    sampler: Ref | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    epochs: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "runner": self.runner,
            "loss": self.loss.to_dict(),
            "optimizer": self.optimizer.to_dict(),
            "scheduler": self.scheduler.to_dict() if self.scheduler else None,
            "sampler": self.sampler.to_dict() if self.sampler else None,
            "options": dict(self.options),
            "epochs": self.epochs,
        }


@dataclass(frozen=True)
class Method:
    """A method is a recipe: named components and their defaults, plus protocol profiles.

    ``profiles["paper"]`` holds the run settings of the method's published protocol (epochs,
    batch size, image size, model, init, ...); other profiles come from the harness.
    """

    name: str
    summary: str
    stages: tuple[StageRecipe, ...] = (StageRecipe(),)
    profiles: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    posthoc: tuple[Ref, ...] = ()
    paper: str | None = None
    notes: str = ""
    plugin: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "summary": self.summary,
            "paper": self.paper,
            "notes": self.notes,
            "stages": [s.to_dict() for s in self.stages],
            "posthoc": [p.to_dict() for p in self.posthoc],
            "profiles": {k: dict(v) for k, v in self.profiles.items()},
        }


@dataclass(frozen=True)
class SweepPreset:
    """A named sweep: which tasks, methods and grid, and which metric columns its table shows.

    ``dermbench sweep --preset NAME`` runs it; flags given on the command line win.
    """

    name: str
    summary: str
    tasks: tuple[str, ...]
    methods: tuple[str, ...]
    grid: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    columns: tuple[str, ...] = ()
    paper: str | None = None
    plugin: str = ""


# --- contexts handed to factories -----------------------------------------------------------


@dataclass
class LossContext:
    num_classes: int
    class_counts: list[int]
    classes: list[str]
    device: str = "cpu"


@dataclass
class ModelContext:
    num_classes: int
    image_size: int
    init: str  # "imagenet" | "random" | a weights file path
    in_chans: int = 3


@dataclass
class OptimContext:
    lr: float | None
    weight_decay: float | None
    epochs: int
    steps_per_epoch: int


# --- typed options ------------------------------------------------------------------------


def _parse_value(kind: Any, raw: Any, where: str, name: str) -> Any:
    if not isinstance(raw, str):
        return raw
    origin = typing.get_origin(kind)
    args = typing.get_args(kind)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
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
            return kind(raw)
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
    parsed = {k: _parse_value(hints.get(k, str), v, where, k) for k, v in values.items()}
    return cls(**parsed)


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
