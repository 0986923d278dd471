"""From runs to ranked tables: seeds folded into one entry, entries ranked within comparable groups.

A cell is the mean and sample standard deviation (ddof=1) over seeds of the value each record
holds, plus a bootstrap interval of that mean recomputed from the saved test predictions
(``bootstrap.paired_interval``), resampling whole lesions when the predictions name them
(the ``group`` column). The interval is only given when the predictions reproduce the
recorded value exactly: if a post-hoc step or a different metric definition made them disagree,
an interval around a different number would mislead, so the cell says why it has none.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dermbench.leaderboard import bootstrap
from dermbench.leaderboard.config import LeaderboardConfig
from dermbench.leaderboard.records import GroupKey, Run, as_number, get_path, slug

TOLERANCE = 1e-6


@dataclass
class Cell:
    metric: str
    values: list[float | None]
    mean: float | None
    std: float | None
    interval: bootstrap.Interval | None = None
    note: str | None = None

    @property
    def n(self) -> int:
        return sum(v is not None for v in self.values)


@dataclass
class Entry:
    method: str
    variant: str
    runs: list[Run]
    cells: dict[str, Cell]
    rank: int = 0
    slug: str = ""

    @property
    def label(self) -> str:
        return f"{self.method} ({self.variant})" if self.variant else self.method

    @property
    def seeds(self) -> list[Any]:
        return [r.seed for r in self.runs]

    @property
    def versions(self) -> list[str]:
        return sorted({str(r.version) for r in self.runs})


@dataclass
class Board:
    key: GroupKey
    columns: list[str]
    entries: list[Entry] = field(default_factory=list)

    @property
    def slug(self) -> str:
        return self.key.slug

    @property
    def runs(self) -> list[Run]:
        return [r for e in self.entries for r in e.runs]

    @property
    def versions(self) -> list[str]:
        return sorted({str(r.version) for r in self.runs})


def _aligned(runs: Sequence[Run]) -> tuple[np.ndarray, list[np.ndarray], np.ndarray | None] | str:
    """Labels, per-seed probabilities and lesion groups on the same test rows, or why not."""
    loaded = [r.probs("test") for r in runs]
    if any(x is None for x in loaded):
        return "no saved test predictions"
    y0 = loaded[0][0]
    frame0 = runs[0].predictions("test")
    for r, (y, _) in zip(runs[1:], loaded[1:], strict=True):
        frame = r.predictions("test")
        same = len(y) == len(y0) and np.array_equal(y, y0)
        for col in ("image_id", "group"):
            if same and col in frame0 and col in frame:
                same = frame[col].astype(str).tolist() == frame0[col].astype(str).tolist()
        if not same:
            return "the seeds' test predictions are not on the same rows"
    groups = frame0["group"].astype(str).to_numpy() if "group" in frame0 else None
    return y0, [p for _, p in loaded], groups


def summarize(runs: Sequence[Run], columns: Sequence[str], n_boot: int, seed: int) -> dict[str, Cell]:
    """One cell per metric column for a set of seeds of one method on one comparable group."""
    cells: dict[str, Cell] = {}
    for m in columns:
        vals = [as_number(get_path(r.test_metrics, m)) for r in runs]
        ok = [v for v in vals if v is not None]
        mean = float(np.mean(ok)) if ok else None
        std = float(np.std(ok, ddof=1)) if len(ok) > 1 else None
        cells[m] = Cell(metric=m, values=vals, mean=mean, std=std)
    classes = runs[0].classes
    want = [m for m in columns if bootstrap.supported(m, classes)]
    for m in set(columns) - set(want):
        cells[m].note = "not recomputable from predictions"
    for m in want:
        if cells[m].n < len(runs):
            cells[m].note = "undefined in some runs"
    want = [m for m in want if cells[m].note is None]
    if not want:
        return cells
    aligned = _aligned(runs)
    if isinstance(aligned, str):
        for m in want:
            cells[m].note = aligned
        return cells
    y, probs, groups = aligned
    pos = runs[0].positive_class()
    thresholds = [r.threshold() for r in runs]
    for r, p, t in zip(runs, probs, thresholds, strict=True):
        recomputed = bootstrap.point_values(y, p, classes, want, t, pos)
        for m in list(want):
            rec = as_number(get_path(r.test_metrics, m))
            got = recomputed[m]
            if got is None or rec is None or abs(got - rec) > TOLERANCE:
                cells[
                    m
                ].note = (
                    f"the saved predictions do not reproduce the recorded value (run {r.record['run_id']})"
                )
                want.remove(m)
    if want:
        intervals = bootstrap.paired_interval(
            y,
            list(zip(probs, thresholds, strict=True)),
            classes,
            want,
            pos,
            n_boot=n_boot,
            seed=seed,
            groups=groups,
        )
        for m, iv in intervals.items():
            cells[m].interval = iv
            if iv is None:
                cells[m].note = "undefined in too many bootstrap draws"
    return cells


def _flat_variant(run: Run) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in run.variant.items():
        if k == "options" and isinstance(v, dict):
            out.update({str(ok): json.dumps(ov, default=str) for ok, ov in v.items()})
        else:
            out[k] = json.dumps(v, default=str)
    return out


def _variant_labels(runs_by_variant: dict[str, list[Run]]) -> dict[str, str]:
    """For a method run with several settings in one group: the settings that tell them apart."""
    if len(runs_by_variant) == 1:
        return dict.fromkeys(runs_by_variant, "")
    flats = {vid: _flat_variant(rs[0]) for vid, rs in runs_by_variant.items()}
    keys = sorted({k for f in flats.values() for k in f})
    differing = [k for k in keys if len({f.get(k) for f in flats.values()}) > 1]
    return {vid: ", ".join(f"{k}={f.get(k, 'unset')}" for k in differing) for vid, f in flats.items()}


def rank(entries: list[Entry], primary: str) -> list[Entry]:
    """Best primary-metric mean first (all leaderboard metrics are higher-is-better); missing last."""

    def key(e: Entry) -> tuple:
        m = e.cells[primary].mean
        return (m is None, -(m or 0.0), e.label)

    ordered = sorted(entries, key=key)
    for i, e in enumerate(ordered, start=1):
        e.rank = i
    return ordered


def build_board(key: GroupKey, runs: Sequence[Run], cfg: LeaderboardConfig) -> Board:
    decision = runs[0].positive_class() is not None and any(
        r.test_metrics.get("operating_point") for r in runs
    )
    columns = cfg.columns(key.task, key.primary_metric, decision)
    by_method: dict[str, dict[str, list[Run]]] = {}
    for r in sorted(runs, key=lambda r: (str(r.method["name"]), str(r.seed))):
        by_method.setdefault(str(r.method["name"]), {}).setdefault(r.variant_id, []).append(r)
    entries = []
    for method, variants in by_method.items():
        labels = _variant_labels(variants)
        for vid, rs in variants.items():
            cells = summarize(rs, columns, cfg.n_boot, cfg.bootstrap_seed)
            e = Entry(method=method, variant=labels[vid], runs=rs, cells=cells)
            e.slug = f"{slug(method, 30)}-{hashlib.sha1(vid.encode()).hexdigest()[:6]}"
            entries.append(e)
    return Board(key=key, columns=columns, entries=rank(entries, key.primary_metric))


def build_boards(runs: Sequence[Run], cfg: LeaderboardConfig) -> dict[str, list[Board]]:
    """Per task, one board per comparable group: real data first, then the groups with most runs."""
    groups: dict[GroupKey, list[Run]] = {}
    for r in runs:
        groups.setdefault(r.group_key, []).append(r)
    out: dict[str, list[Board]] = {}
    for key in sorted(groups, key=lambda k: (k.synthetic, -len(groups[k]), *k.sort_key())):
        out.setdefault(key.task, []).append(build_board(key, groups[key], cfg))
    return {t: out[t] for t in cfg.task_order(list(out))}
