"""Tasks: a label space, mappings from each dataset's labels into it, and how it is scored.

Tasks are data, kept in ``tasks/*.toml`` (shipped inside the wheel as ``dermbench/tasks``) and
registered by the built-in task plugin; plugins may register more. A label with no mapping is
dropped and counted in the run record, never silently.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dermbench.errors import ConfigError

SOURCE_TASK = "task"  # labels already in the task's own class names


@dataclass(frozen=True)
class Task:
    name: str
    classes: tuple[str, ...]
    primary_metric: str = "macro_f1"
    title: str = ""
    description: str = ""
    mappings: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    class_names: Mapping[str, str] = field(default_factory=dict)
    positive_class: str | None = None
    recall_constraint: float | None = None
    decision_rule: str | None = None  # the posthoc step that picks the operating point
    synthetic_source: str = SOURCE_TASK
    synthetic_priors: Mapping[str, float] = field(default_factory=dict)
    protocols: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    source_file: str | None = None
    plugin: str = ""

    @property
    def summary(self) -> str:
        return self.title or self.description

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def is_decision_task(self) -> bool:
        return self.positive_class is not None and self.recall_constraint is not None

    def index(self, cls: str) -> int:
        return self.classes.index(cls)

    def mapping(self, source: str) -> dict[str, str]:
        """The label -> class map for ``source``; the task's own names always map to themselves."""
        identity = {c: c for c in self.classes}
        if source in (SOURCE_TASK, self.name):
            return identity
        if source not in self.mappings:
            known = ", ".join(sorted(self.mappings)) or "none"
            raise ConfigError(
                f"task {self.name!r} has no label mapping for source {source!r} (it maps: {known}); "
                f"add [mappings.{source}] to the task file or relabel the data with the task's classes"
            )
        return {**identity, **dict(self.mappings[source])}

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "classes": list(self.classes),
            "primary_metric": self.primary_metric,
            "positive_class": self.positive_class,
            "recall_constraint": self.recall_constraint,
            "source_file": self.source_file,
        }


def task_from_toml(path: Path) -> Task:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"task file {path}: {exc}") from None
    try:
        classes = tuple(data["classes"])
        name = data["name"]
    except KeyError as exc:
        raise ConfigError(f"task file {path}: missing key {exc.args[0]!r}") from None
    mappings = data.get("mappings", {})
    for source, table in mappings.items():
        bad = sorted({v for v in table.values() if v not in classes})
        if bad:
            raise ConfigError(f"task file {path}: mapping {source!r} targets unknown class(es) {bad}")
    positive = data.get("positive_class")
    if positive is not None and positive not in classes:
        raise ConfigError(f"task file {path}: positive_class {positive!r} is not one of {list(classes)}")
    return Task(
        name=name,
        classes=classes,
        primary_metric=data.get("primary_metric", "macro_f1"),
        title=data.get("title", ""),
        description=data.get("description", ""),
        mappings=mappings,
        class_names=data.get("class_names", {}),
        positive_class=positive,
        recall_constraint=data.get("recall_constraint"),
        decision_rule=data.get("decision_rule"),
        synthetic_source=data.get("synthetic_source", SOURCE_TASK),
        synthetic_priors=data.get("synthetic_priors", {}),
        protocols=data.get("protocol", {}),
        source_file=str(path),
    )


def builtin_task_dirs() -> list[Path]:
    """``dermbench/tasks`` inside an installed wheel, or the repository's ``tasks/`` folder."""
    here = Path(__file__).resolve().parent
    return [d for d in (here / "tasks", here.parent / "tasks") if d.is_dir()][:1]


def builtin_tasks() -> list[Task]:
    return [task_from_toml(p) for d in builtin_task_dirs() for p in sorted(d.glob("*.toml"))]


def resolve_task(name_or_path: str, registry: Any) -> Task:
    """A registered task by name, or a task file given by path."""
    if name_or_path.endswith(".toml"):
        path = Path(name_or_path)
        if not path.is_file():
            raise ConfigError(f"task file {path} does not exist")
        return task_from_toml(path)
    return registry.get(name_or_path)
