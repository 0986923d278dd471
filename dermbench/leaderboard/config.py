"""The leaderboard configuration (``leaderboards/leaderboard.toml``): tasks, columns, titles.

Everything has a default, so a site builds from run records alone; the file only orders tasks,
names them and picks the metric columns. The primary metric of a task always comes first,
whatever the file says, because it is what the ranking is by.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dermbench.errors import ConfigError

DEFAULT_COLUMNS = ("macro_f1", "balanced_accuracy", "accuracy", "weighted_f1", "macro_auc")
DECISION_COLUMNS = (
    "operating_point.f1",
    "operating_point.recall",
    "operating_point.precision",
    "operating_point.specificity",
    "macro_auc",
)
LABELS = {
    "accuracy": "Accuracy",
    "balanced_accuracy": "Balanced accuracy",
    "macro_f1": "Macro F1",
    "weighted_f1": "Weighted F1",
    "macro_auc": "Macro AUC",
    "operating_point.f1": "F1 at operating point",
    "operating_point.recall": "Recall at operating point",
    "operating_point.sensitivity": "Sensitivity at operating point",
    "operating_point.precision": "Precision at operating point",
    "operating_point.specificity": "Specificity at operating point",
}
TOP_KEYS = {
    "title",
    "description",
    "n_boot",
    "bootstrap_seed",
    "digits",
    "only_listed_tasks",
    "labels",
    "tasks",
}
TASK_KEYS = {"title", "description", "columns"}


@dataclass(frozen=True)
class TaskView:
    title: str | None = None
    description: str | None = None
    columns: tuple[str, ...] | None = None


@dataclass(frozen=True)
class LeaderboardConfig:
    title: str = "dermbench leaderboards"
    description: str = ""
    n_boot: int = 1000
    bootstrap_seed: int = 0
    digits: int = 3
    only_listed_tasks: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    tasks: dict[str, TaskView] = field(default_factory=dict)

    def label(self, metric: str) -> str:
        """A column's header; a class's own score says it is taken at the top class (argmax), so
        it cannot be mistaken for the same score at the operating point beside it."""
        if found := self.labels.get(metric) or LABELS.get(metric):
            return found
        parts = metric.split(".")
        if len(parts) == 3 and parts[0] == "per_class":
            return f"{parts[1]} {parts[2]} (argmax)"
        return metric

    def columns(self, task: str, primary: str, decision: bool) -> list[str]:
        view = self.tasks.get(task)
        cols = (
            list(view.columns)
            if view and view.columns
            else list(DECISION_COLUMNS if decision else DEFAULT_COLUMNS)
        )
        return [primary, *[c for c in cols if c != primary]]

    def task_order(self, found: list[str]) -> list[str]:
        listed = [t for t in self.tasks if t in found]
        if self.only_listed_tasks:
            return listed
        return listed + sorted(t for t in found if t not in self.tasks)


def _expect(value: Any, kind: type | tuple[type, ...], where: str) -> Any:
    if isinstance(value, bool) and kind is int or not isinstance(value, kind):
        name = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ConfigError(f"{where}: expected {name}, got {value!r}")
    return value


def read_config(path: Path | None) -> LeaderboardConfig:
    """The configuration in ``path``; defaults when ``path`` is None."""
    if path is None:
        return LeaderboardConfig()
    if not path.is_file():
        raise ConfigError(f"leaderboard config {path} does not exist")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"leaderboard config {path}: not valid TOML: {exc}") from None
    unknown = sorted(set(data) - TOP_KEYS)
    if unknown:
        raise ConfigError(f"leaderboard config {path}: unknown key(s) {', '.join(unknown)}")
    kw: dict[str, Any] = {}
    for key, kind in (("title", str), ("description", str), ("only_listed_tasks", bool)):
        if key in data:
            kw[key] = _expect(data[key], kind, f"{path}: {key}")
    for key, low in (("n_boot", 10), ("bootstrap_seed", 0), ("digits", 1)):
        if key in data:
            kw[key] = _expect(data[key], int, f"{path}: {key}")
            if kw[key] < low:
                raise ConfigError(f"{path}: {key} must be at least {low}, got {kw[key]}")
    labels = _expect(data.get("labels", {}), dict, f"{path}: [labels]")
    kw["labels"] = {k: _expect(v, str, f"{path}: labels.{k}") for k, v in labels.items()}
    tasks: dict[str, TaskView] = {}
    for name, view in _expect(data.get("tasks", {}), dict, f"{path}: [tasks]").items():
        where = f"{path}: [tasks.{name}]"
        _expect(view, dict, where)
        bad = sorted(set(view) - TASK_KEYS)
        if bad:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(bad)}")
        cols = view.get("columns")
        if cols is not None:
            _expect(cols, list, f"{where} columns")
            cols = tuple(_expect(c, str, f"{where} columns") for c in cols)
        tasks[name] = TaskView(
            title=_expect(view["title"], str, f"{where} title") if "title" in view else None,
            description=_expect(view["description"], str, f"{where} description")
            if "description" in view
            else None,
            columns=cols,
        )
    kw["tasks"] = tasks
    return LeaderboardConfig(**kw)
