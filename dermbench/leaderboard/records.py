"""Run records as the leaderboard sees them: loaded, checked, grouped into comparable sets.

The run record (``docs/run-record.md``) is the only input. A leaderboard must never rank two
results that were not produced under the same conditions, so every run carries a ``GroupKey``
(task, protocol, data, test split) and a ``variant`` (the resolved settings that change results,
minus the seed): runs that share both are seeds of one entry.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dermbench.errors import DataError
from dermbench.run.identity import NON_IDENTITY, as_before, normalised
from dermbench.run.record import RECORD_NAME, SCHEMA, find_records, read_record

# Settings that do not change what a run computes (dermbench.run.identity), or that a GroupKey
# already covers.
NOT_VARIANT = (
    *NON_IDENTITY,
    "seed",
    "task",
    "method",
    "profile",
    "data",
    "test_data",
    "groups",
    "skip_bad_images",
    "allow_empty_classes",
)

REQUIRED = (
    "run_id",
    "status",
    "seed",
    "protocol",
    "task.name",
    "task.classes",
    "task.primary_metric",
    "method.name",
    "data.synthetic",
    "data.image_size",
    "data.datasets",
    "data.splits",
)


def slug(text: str, limit: int = 40) -> str:
    """A file-name-safe, unique name for any string a record holds (names are user-controlled)."""
    head = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.")[:limit] or "x"
    return f"{head}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"


def get_path(obj: Any, dotted: str) -> Any:
    """``get_path(m, "operating_point.f1")``; None where any part is missing."""
    for part in dotted.split("."):
        if not isinstance(obj, dict) or part not in obj:
            return None
        obj = obj[part]
    return obj


def as_number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    f = float(v)
    return None if math.isnan(f) or math.isinf(f) else f


def inside(base: Path, rel: str, what: str, record_path: Path) -> Path:
    """``base/rel``, refusing paths that leave the run dir: a record must not pull in other files."""
    p = (base / rel).resolve()
    try:
        p.relative_to(base.resolve())
    except ValueError:
        raise DataError(f"{record_path}: {what} {rel!r} points outside the run folder") from None
    return p


@dataclass(frozen=True)
class GroupKey:
    """Results are ranked together only when every field here is equal."""

    task: str
    classes: tuple[str, ...]
    primary_metric: str
    protocol: str
    datasets: tuple[str, ...]
    synthetic: bool
    image_size: int | None
    test_fingerprint: str | None
    task_sha256: str | None = None  # a task named by path whose file is no registered task's

    @property
    def slug(self) -> str:
        fields = {k: v for k, v in self.__dict__.items() if not (k == "task_sha256" and v is None)}
        blob = json.dumps(fields, sort_keys=True, default=list)
        return hashlib.sha1(blob.encode()).hexdigest()[:10]

    def sort_key(self) -> tuple:
        return (
            self.synthetic,
            self.protocol,
            self.datasets,
            self.image_size or 0,
            self.test_fingerprint or "",
        )


@dataclass
class Run:
    """One complete run dir: its record and, on demand, its saved predictions."""

    dir: Path
    record: dict
    _cache: dict[str, pd.DataFrame | None] = field(default_factory=dict, repr=False, compare=False)

    @property
    def path(self) -> Path:
        return self.dir / RECORD_NAME

    @property
    def task(self) -> dict:
        return self.record["task"]

    @property
    def method(self) -> dict:
        return self.record["method"]

    @property
    def seed(self) -> Any:
        return self.record.get("seed")

    @property
    def classes(self) -> list[str]:
        return [str(c) for c in self.task["classes"]]

    @property
    def test_metrics(self) -> dict:
        return (self.record.get("metrics") or {}).get("test") or {}

    @property
    def version(self) -> str | None:
        return get_path(self.record, "environment.packages.dermbench")

    @property
    def dataset_names(self) -> tuple[str, ...]:
        """The data it is scored on: a chain's source datasets are training data, ranked together
        with runs that did not use them."""
        datasets = self.record["data"]["datasets"]
        return tuple(sorted({str(d.get("name")) for d in datasets if d.get("role") != "chain-source"}))

    @property
    def group_key(self) -> GroupKey:
        data = self.record["data"]
        return GroupKey(
            task=str(self.task["name"]),
            classes=tuple(self.classes),
            primary_metric=str(self.task["primary_metric"]),
            protocol=str(self.record["protocol"]),
            datasets=self.dataset_names,
            synthetic=bool(data["synthetic"]),
            image_size=data.get("image_size"),
            test_fingerprint=get_path(data, "splits.test.fingerprint"),
            task_sha256=(self.record.get("config") or {}).get("task_sha256"),
        )

    @property
    def variant(self) -> dict[str, Any]:
        """The settings that tell this run's entry from others: a setting added later is left out at
        the value earlier runs had (a record made before it existed lacks it), and out-of-distribution
        sets are named, not located (their paths differ between machines, as the data's do)."""
        cfg = self.record.get("config") or {}
        out = {k: v for k, v in normalised(cfg).items() if k not in NOT_VARIANT and not as_before(k, v)}
        if isinstance(out.get("ood_data"), dict):
            out["ood_data"] = sorted(out["ood_data"])
        out["precision"] = self.precision()  # as trained: `auto` resolves per machine and model
        return out

    def precision(self) -> str:
        """The dtype the run trained in: its record's, else what runs did before ``--precision``
        existed (bf16 autocast on CUDA, fp32 on the CPU)."""
        chosen = get_path(self.record, "environment.precision.dtype")
        if chosen:
            return str(chosen)
        device = str(get_path(self.record, "environment.device") or "cpu")
        return "bf16" if device.startswith("cuda") else "fp32"

    @property
    def variant_id(self) -> str:
        return json.dumps(self.variant, sort_keys=True, default=str)

    def budget(self) -> dict[str, Any]:
        """What a comparable group must hold fixed: the model (None where the method names its own,
        as a model zoo's entries do), init, epochs, the run's learning-rate override (None: the
        method's own rate, part of its recipe like its loss), checkpoint selection and the
        precision trained in."""
        cfg = self.record.get("config") or {}
        return {
            "model": None if self.method_sets("model") else cfg.get("model"),
            "init": cfg.get("init"),
            "head_init": normalised(cfg).get("head_init", "model"),
            "epochs": cfg.get("epochs"),
            "lr": cfg.get("lr"),
            "select": cfg.get("select"),
            "precision": self.precision(),
        }

    def method_sets(self, setting: str) -> bool:
        """Whether the run's value of ``setting`` is the method's own (its recipe's profile sets it,
        as a model zoo's entry names its architecture), not a choice of the run."""
        profiles = get_path(self.record, "method.recipe.profiles") or {}
        own = (profiles.get(str(self.record.get("profile"))) or {}) if isinstance(profiles, dict) else {}
        cfg = self.record.get("config") or {}
        return setting in own and own[setting] == cfg.get(setting)

    def lr_used(self) -> Any:
        """The learning rate the run trained at: each stage's, from the record's resolved stages
        where it has them (one value when they agree), else the run's ``lr``, else the method
        recipe's optimizer default."""
        cfg = self.record.get("config") or {}
        stages = get_path(self.record, "resolved.stages") or []
        lr = [s.get("lr") for s in stages if s.get("lr") is not None] or [cfg.get("lr")]
        if lr == [None]:
            recipe = get_path(self.record, "method.recipe.stages") or []
            lr = [get_path(s, "optimizer.options.lr") for s in recipe] or [None]
        return lr[0] if len(set(map(str, lr))) == 1 else lr

    def threshold(self) -> float | None:
        return as_number(get_path(self.test_metrics, "operating_point.threshold"))

    def positive_class(self) -> str | None:
        op = self.test_metrics.get("operating_point") or {}
        return op.get("positive_class") or self.task.get("positive_class")

    def predictions(self, split: str = "test") -> pd.DataFrame | None:
        """The saved prediction table, checked against the task's classes; None if not saved."""
        if split not in self._cache:
            self._cache[split] = self._load(split)
        return self._cache[split]

    def probs(self, split: str = "test") -> tuple[np.ndarray, np.ndarray] | None:
        df = self.predictions(split)
        if df is None:
            return None
        return df["label"].to_numpy(np.int64), df[[f"p_{c}" for c in self.classes]].to_numpy(np.float64)

    def _load(self, split: str) -> pd.DataFrame | None:
        rel = (self.record.get("predictions") or {}).get(split)
        if not rel:
            return None
        p = inside(self.dir, str(rel), f"predictions.{split}", self.path)
        if not p.is_file():
            raise DataError(f"{self.path}: predictions.{split} names {rel}, which does not exist")
        try:
            df = pd.read_csv(p)
        except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
            raise DataError(f"{p}: not a readable CSV: {exc}") from None
        need = ["label", *[f"p_{c}" for c in self.classes]]
        missing = [c for c in need if c not in df.columns]
        if missing:
            raise DataError(f"{p}: missing column(s) {', '.join(missing)} (task classes {self.classes})")
        labels = pd.to_numeric(df["label"], errors="coerce")
        bad = ~labels.between(0, len(self.classes) - 1) | (labels != labels.round())
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(
                f"{p}: row {row + 2}, column label: {df['label'].iloc[row]!r} is not a class index"
            )
        for c in need[1:]:
            col = pd.to_numeric(df[c], errors="coerce").to_numpy(np.float64)
            if not np.isfinite(col).all():
                row = int(np.flatnonzero(~np.isfinite(col))[0])
                raise DataError(f"{p}: row {row + 2}, column {c}: {df[c].iloc[row]!r} is not a probability")
            df[c] = col
        df["label"] = labels.astype(np.int64)
        return df


@dataclass
class Skipped:
    path: Path
    status: str


@dataclass
class Loaded:
    runs: list[Run] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def check_record(record: Any, path: Path) -> dict:
    """The fields a leaderboard relies on are present: a clear error beats a half-built page."""
    if not isinstance(record, dict) or record.get("schema") != SCHEMA:
        got = record.get("schema") if isinstance(record, dict) else type(record).__name__
        raise DataError(f"{path}: not a dermbench run record (schema {got!r}, expected {SCHEMA!r})")
    for dotted in REQUIRED:
        head, _, _ = dotted.rpartition(".")
        parent = get_path(record, head) if head else record
        if not isinstance(parent, dict) or dotted.rpartition(".")[2] not in parent:
            raise DataError(f"{path}: field {dotted} is missing")
    if not isinstance(record["task"]["classes"], list) or not record["task"]["classes"]:
        raise DataError(f"{path}: field task.classes must be a non-empty list")
    if not isinstance(record["data"]["datasets"], list):
        raise DataError(f"{path}: field data.datasets must be a list")
    return record


def read_run(run_dir: Path) -> Run:
    path = run_dir / RECORD_NAME
    return Run(dir=run_dir, record=check_record(read_record(path), path))


def load_runs(results: Path) -> Loaded:
    """Every record under ``results``; runs that are not complete, and records that cannot be read
    (truncated, not a record), are counted and named, not shown and never fatal."""
    if not results.is_dir():
        raise DataError(f"results folder {results} does not exist")
    out = Loaded()
    for path in find_records(results):
        try:
            run = read_run(path.parent)
        except DataError as exc:
            out.skipped.append(Skipped(path=path, status=f"unreadable: {exc}"))
            continue
        if run.record["status"] != "complete":
            out.skipped.append(Skipped(path=path, status=str(run.record["status"])))
        else:
            out.runs.append(run)
    return out
