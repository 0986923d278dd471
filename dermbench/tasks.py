"""Tasks: a label space, mappings from each dataset's labels into it, and how it is scored.

Tasks are data, kept in ``tasks/*.toml`` (shipped inside the wheel as ``dermbench/tasks``) and
registered by the built-in task plugin; plugins may register more. A label with no mapping is
dropped and counted in the run record, never silently.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import math
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
    sha256: str | None = None  # of the task file's bytes
    given_as_file: bool = False  # named by path (--task FILE.toml), not by a registered name

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
            "sha256": self.sha256,
        }


# the keys of a task file, and the type of each value
TASK_KEYS: dict[str, type | tuple[type, ...]] = {
    "name": str,
    "title": str,
    "description": str,
    "classes": list,
    "primary_metric": str,
    "positive_class": str,
    "recall_constraint": (int, float),
    "decision_rule": str,
    "synthetic_source": str,
    "synthetic_priors": dict,
    "class_names": dict,
    "mappings": dict,
    "protocol": dict,
}


def check_task_keys(data: Mapping[str, Any], path: Path) -> None:
    """Every key known and of its type, the classes distinct names, the constraint a recall."""
    for key, value in data.items():
        if key not in TASK_KEYS:
            close = difflib.get_close_matches(key, TASK_KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(TASK_KEYS)})"
            raise ConfigError(f"task file {path}: unknown key {key!r}{hint}")
        want = TASK_KEYS[key]
        if not isinstance(value, want) or isinstance(value, bool):
            names = " or ".join(t.__name__ for t in (want if isinstance(want, tuple) else (want,)))
            raise ConfigError(f"task file {path}: {key} must be a {names}, got {value!r}")
    for key in ("name", "classes"):
        if key not in data:
            raise ConfigError(f"task file {path}: missing key {key!r}")
    classes = data["classes"]
    if not data["name"].strip() or any(c in data["name"] for c in "/\\ "):
        raise ConfigError(
            f"task file {path}: name {data['name']!r} must be a non-empty word (it names folders)"
        )
    if len(classes) < 2 or not all(isinstance(c, str) and c.strip() for c in classes):
        raise ConfigError(f"task file {path}: classes must be at least two non-empty names, got {classes!r}")
    if len(set(classes)) != len(classes):
        twice = sorted({c for c in classes if classes.count(c) > 1})
        raise ConfigError(f"task file {path}: class(es) {twice} are listed twice")
    rc = data.get("recall_constraint")
    if rc is not None and not (math.isfinite(rc) and 0 < rc <= 1):
        raise ConfigError(f"task file {path}: recall_constraint must lie in (0, 1], got {rc!r}")


def task_from_toml(path: Path) -> Task:
    try:
        raw = path.read_bytes()
        data = tomllib.loads(raw.decode("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"task file {path}: {exc}") from None
    check_task_keys(data, path)
    classes, name = tuple(data["classes"]), data["name"]
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
        sha256=hashlib.sha256(raw).hexdigest(),
    )


def builtin_task_dirs() -> list[Path]:
    """``dermbench/tasks`` inside an installed wheel, or the repository's ``tasks/`` folder."""
    here = Path(__file__).resolve().parent
    return [d for d in (here / "tasks", here.parent / "tasks") if d.is_dir()][:1]


def builtin_tasks() -> list[Task]:
    return [task_from_toml(p) for d in builtin_task_dirs() for p in sorted(d.glob("*.toml"))]


def resolve_task(name_or_path: str, registry: Any, sha256: str | None = None) -> Task:
    """A registered task by name, or a task file given by path (any valid file, by any name).

    A file whose bytes are a registered task's file is that task (the same runs, the same ids);
    any other is ``given_as_file``, and its content hash goes into the run's identity. ``sha256``:
    the hash a run was configured with, so a file edited since then is refused, not used.
    """
    if not name_or_path.endswith(".toml"):
        return registry.get(name_or_path)
    path = Path(name_or_path)
    if not path.is_file():
        raise ConfigError(f"task file {path} does not exist" + ("" if not path.exists() else " (not a file)"))
    task = task_from_toml(path)
    if sha256 is not None and task.sha256 != sha256:
        raise ConfigError(
            f"task file {path} changed since the run was configured (sha256 {task.sha256[:12]}, "
            f"configured {sha256[:12]}): restore it, or start a new run"
        )
    registered = registry.get(task.name) if task.name in registry else None
    if registered is not None and registered.sha256 == task.sha256:
        return registered
    return dataclasses.replace(task, given_as_file=True, source_file=str(path.resolve()))


def task_of(cfg: Any, registry: Any) -> Task:
    """The task a resolved run config names: its task file where it has one, else the registered name."""
    if getattr(cfg, "task_file", None):
        return resolve_task(cfg.task_file, registry, cfg.task_sha256)
    return registry.get(cfg.task)
