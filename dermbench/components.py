"""Component specs and method recipes: what plugins hand to ``register``.

A component is a named factory with typed options. Options are a dataclass whose fields carry
their types and defaults; ``dermbench list KIND`` prints them and ``--opt loss.gamma=2`` sets them.
The contexts factories receive, and every factory's signature, live in
:mod:`dermbench.plugins.contract`; they are importable from here too, as before.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dermbench.plugins.contract import CONTRACTS
from dermbench.plugins.options import build_options, describe_options, options_to_dict

KINDS = tuple(CONTRACTS)
_CONTEXTS = ("ModelContext", "LossContext", "OptimContext", "StageContext", "StageResult", "PosthocContext")

__all__ = [
    "KINDS",
    "Component",
    "Method",
    "NoOptions",
    "Ref",
    "StageRecipe",
    "SweepPreset",
    "build_options",
    "describe_options",
    "options_to_dict",
    *_CONTEXTS,
]


def __getattr__(name: str) -> Any:
    """The contexts moved to :mod:`dermbench.plugins.contract`; old imports keep working."""
    if name in _CONTEXTS:
        from dermbench.plugins import contract

        return getattr(contract, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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

    ``epochs`` of ``None`` means "take the run's value", so the uniform protocol can fix it for
    every method; an empty runner, loss or optimizer is the default a plugin names for that kind.
    ``data`` says what the stage trains on: ``target`` (the task's training split), ``chain`` (one
    stage per ``--chain`` dataset, in order, named ``<name>:<dataset>``) or ``merged`` (the training
    split and every chain dataset pooled); see ``docs/chains.md``.
    """

    name: str = "train"
    runner: str = ""  # empty: the default stage runner (dermbench_default_component)
    loss: Ref | None = None  # None: the default loss
    optimizer: Ref | None = None  # None: the default optimizer
    scheduler: Ref | None = None
    sampler: Ref | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    epochs: int | None = None
    data: str = "target"  # target | chain | merged

    def to_dict(self) -> dict[str, Any]:
        extra = {} if self.data == "target" else {"data": self.data}  # older records keep their shape
        return {
            "name": self.name,
            "runner": self.runner,
            "loss": self.loss.to_dict() if self.loss else None,
            "optimizer": self.optimizer.to_dict() if self.optimizer else None,
            "scheduler": self.scheduler.to_dict() if self.scheduler else None,
            "sampler": self.sampler.to_dict() if self.sampler else None,
            "options": dict(self.options),
            "epochs": self.epochs,
            **extra,
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
    predictor: Ref | None = None  # None: softmax of the logits (or --tta)
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
            **({"predictor": self.predictor.to_dict()} if self.predictor else {}),
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
