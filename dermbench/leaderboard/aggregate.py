"""From runs to ranked tables: seeds folded into one entry, entries ranked within comparable groups.

A cell is the mean and sample standard deviation (ddof=1) over seeds of the value each record
holds, plus a bootstrap interval of that mean recomputed from the saved test predictions, every
seed scored on the same resampled cases and whole lesions resampled when the predictions name
them (the ``group`` column), through :mod:`dermbench.evaluation.bootstrap`: the same arithmetic
as the run record. The interval is only given when the predictions reproduce the recorded value
exactly: an interval around a different number would mislead, so the cell says why it has none.

Significance: every entry of a group is scored on the same resamples (same test cases, same
seed), so the difference between the best entry and each other one has a paired interval, printed
beside the entry; an entry whose interval reaches 0 is marked as not significantly different from
the best. What may be ranked, and which of a method's settings stands for it, are the board's
rules (:mod:`dermbench.leaderboard.rules`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dermbench.evaluation.bootstrap import paired_difference, seed_mean_draws
from dermbench.evaluation.resample import Interval, percentile_interval
from dermbench.evaluation.weighted import evaluate, ones, supported
from dermbench.leaderboard.config import LeaderboardConfig
from dermbench.leaderboard.records import GroupKey, Run, as_number, get_path, slug
from dermbench.leaderboard.rules import choose_settings, common_budget, rules_text, unranked_reasons
from dermbench.run.identity import FORMER_VALUES

TOLERANCE = 1e-6
MIN_DEFINED = 0.9  # fewer defined draws than this share: the interval would be too conditional, so none


@dataclass
class Cell:
    metric: str
    values: list[float | None]
    mean: float | None
    std: float | None
    interval: Interval | None = None
    note: str | None = None
    draws: np.ndarray | None = field(default=None, repr=False)
    vs_best: Interval | None = None  # best entry minus this one, over the same resamples
    diff_to_best: float | None = None  # best entry's mean minus this one's
    tied_with_best: bool | None = None

    @property
    def n(self) -> int:
        return sum(v is not None for v in self.values)


@dataclass
class Entry:
    method: str
    variant: str
    runs: list[Run]
    cells: dict[str, Cell]
    rank: int = 0  # 0: not ranked (``unranked`` says why)
    slug: str = ""
    flags: list[str] = field(default_factory=list)
    unranked: list[str] = field(default_factory=list)  # why the board's rules leave it out of the ranking
    alternatives: list[Entry] = field(default_factory=list)  # the method's settings not chosen on validation
    selection: dict[str, Any] | None = None  # how this setting was chosen, when there was a choice

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
class ChanceRow:
    """What a rule that needs no image scores on the group's test split (docs/metrics.md)."""

    label: str
    values: dict[str, float | None]
    note: str = ""


@dataclass
class Board:
    key: GroupKey
    columns: list[str]
    entries: list[Entry] = field(default_factory=list)
    chance: list[ChanceRow] = field(default_factory=list)

    @property
    def slug(self) -> str:
        return self.key.slug

    @property
    def runs(self) -> list[Run]:
        return [r for e in self.entries for r in e.runs]

    @property
    def versions(self) -> list[str]:
        return sorted({str(r.version) for r in self.runs})

    @property
    def budget(self) -> dict[str, Any]:
        """The training budget most entries share (entries with another one are not ranked)."""
        return common_budget(self.entries)

    @property
    def chain_sources(self) -> dict[str, list[str]]:
        """Datasets some entries also trained on (a chain's sources, not part of the comparison's
        key), each with the entries that did."""
        out: dict[str, list[str]] = {}
        for e in self.entries:
            for d in e.runs[0].record["data"]["datasets"]:
                if d.get("role") == "chain-source" and e.label not in out.setdefault(str(d.get("name")), []):
                    out[str(d.get("name"))].append(e.label)
        return dict(sorted(out.items()))

    @property
    def test_classes(self) -> dict[str, Any] | None:
        """The task's classes that occur in the test split, when some do not (None when all do):
        macro averages then run over the classes in the test labels or an entry's predictions."""
        counts = get_path(self.runs[0].record, "data.splits.test.class_counts") if self.runs else None
        if not isinstance(counts, dict):
            return None
        present = [c for c in self.key.classes if counts.get(c)]
        if len(present) == len(self.key.classes):
            return None
        return {"present": present, "task": len(self.key.classes)}

    @property
    def ranked(self) -> list[Entry]:
        return [e for e in self.entries if e.rank]

    @property
    def not_ranked(self) -> list[Entry]:
        return [e for e in self.entries if not e.rank]

    @property
    def rules(self) -> list[str]:
        return rules_text(self.key.primary_metric)

    @property
    def all_entries(self) -> list[Entry]:
        """Every entry with a page: those shown and the settings not chosen."""
        return [x for e in self.entries for x in (e, *e.alternatives)]


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
    want = [m for m in columns if supported(m, classes)]
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
        recomputed = evaluate(ones(len(y)), y, p, classes, want, t, pos)
        for m in list(want):
            rec, got = as_number(get_path(r.test_metrics, m)), float(recomputed[m][0])
            if np.isnan(got) or rec is None or abs(got - rec) > TOLERANCE:
                cells[
                    m
                ].note = (
                    f"the saved predictions do not reproduce the recorded value (run {r.record['run_id']})"
                )
                want.remove(m)
    if want:
        draws = seed_mean_draws(
            y, list(zip(probs, thresholds, strict=True)), classes, want, pos, n_boot, seed, groups
        )
        for m, d in draws.items():
            _set_interval(cells[m], d, n_boot)
    return cells


def _set_interval(cell: Cell, draws: np.ndarray, n_boot: int) -> None:
    if np.isfinite(draws).sum() < max(10, MIN_DEFINED * n_boot):
        cell.note = "undefined in too many bootstrap draws"
        return
    cell.draws = draws
    cell.interval = percentile_interval(draws, 0.05, cell.mean)


def _shown(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, default=str)


def _flat_variant(run: Run) -> dict[str, str]:
    """The run's settings, the loss options as actually used where the record has them (typed,
    defaults included), so labels show values, never a missing setting."""
    out: dict[str, str] = {}
    for k, v in run.variant.items():
        if k == "options" and isinstance(v, dict):
            out.update({str(ok): _shown(ov) for ok, ov in v.items()})
        else:
            out[k] = _shown(v)
    for stage in get_path(run.record, "resolved.stages") or []:
        for k, v in (get_path(stage, "loss.options") or {}).items():
            out[f"loss.{k}"] = _shown(v)
    return out


def _variant_labels(runs_by_variant: dict[str, list[Run]]) -> dict[str, str]:
    """For a method run with several settings in one group: the settings that tell them apart."""
    if len(runs_by_variant) == 1:
        return dict.fromkeys(runs_by_variant, "")
    flats = {vid: _flat_variant(rs[0]) for vid, rs in runs_by_variant.items()}
    keys = sorted({k for f in flats.values() for k in f})
    differing = [k for k in keys if len({f.get(k) for f in flats.values()}) > 1]
    # a setting absent or empty reads as the value runs had before it existed (head_init=model),
    # else as its default ("": the method's own, as for --sampler)
    return {
        vid: ", ".join(f"{k}={f.get(k) or FORMER_VALUES.get(k) or 'default'}" for k in differing)
        for vid, f in flats.items()
    }


def rank(entries: list[Entry], primary: str) -> list[Entry]:
    """The board's rules applied (:mod:`dermbench.leaderboard.rules`): one setting per method,
    chosen on validation; the entries that may be ranked, best primary-metric mean first (all
    leaderboard metrics are higher-is-better; missing last), numbered; then the others, unranked,
    each with its reasons. Every entry gets its paired difference from the best ranked entry."""

    def key(e: Entry) -> tuple:
        m = e.cells[primary].mean
        return (m is None, -(m or 0.0), e.label)

    chosen = choose_settings(entries, primary)
    common = common_budget(chosen)
    for e in chosen:
        e.unranked = unranked_reasons(e, common)
        e.flags += trivial_flags(e)
    ranked = sorted((e for e in chosen if not e.unranked), key=key)
    for i, e in enumerate(ranked, start=1):
        e.rank = i
    ordered = ranked + sorted((e for e in chosen if e.unranked), key=key)
    if ranked:
        compare_with_best(ordered, primary)
    return ordered


def compare_with_best(ordered: list[Entry], primary: str) -> None:
    """Mark the entries whose difference from the best is not significant (interval reaches 0)."""
    best = ordered[0].cells[primary]
    for e in ordered[1:]:
        c = e.cells[primary]
        if best.draws is None or c.draws is None or len(best.draws) != len(c.draws) or c.mean is None:
            continue
        if not _same_test_rows(ordered[0], e):
            continue
        c.diff_to_best = best.mean - c.mean
        c.vs_best = paired_difference(best.draws, c.draws, c.diff_to_best)
        low, high = c.vs_best.low, c.vs_best.high  # an unranked entry may lie above the best ranked one
        c.tied_with_best = low is not None and high is not None and low <= 0 <= high
    if best.draws is not None:
        best.tied_with_best = True


def _same_test_rows(a: Entry, b: Entry) -> bool:
    fa, fb = a.runs[0].predictions("test"), b.runs[0].predictions("test")
    if fa is None or fb is None or len(fa) != len(fb):
        return False
    return all(
        fa[c].astype(str).tolist() == fb[c].astype(str).tolist()
        for c in ("image_id", "label")
        if c in fa and c in fb
    )


def trivial_flags(e: Entry) -> list[str]:
    """A seed whose test result needs no model (docs/metrics.md) is named on the board."""
    out = []
    for r in e.runs:
        for f in r.test_metrics.get("flags") or []:
            out.append(f"trivial (seed {r.seed}): {f.get('message', f.get('code'))}")
    return out


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
        for vid, found in variants.items():
            rs, copies = one_record_per_seed(found)
            cells = summarize(rs, columns, cfg.n_boot, cfg.bootstrap_seed)
            e = Entry(method=method, variant=labels[vid], runs=rs, cells=cells)
            e.slug = f"{slug(method, 30)}-{hashlib.sha1(vid.encode()).hexdigest()[:6]}"
            if copies:
                names = ", ".join("/".join(r.dir.parts[-4:]) for r in copies)  # collection/task/method/run
                e.flags.append(
                    f"{len(copies)} more record(s) of the same seed and settings not counted again: {names}"
                )
            entries.append(e)
    shown = [  # a column with no value in any entry is left out; the primary metric never is
        m for m in columns
        if m == key.primary_metric or any(e.cells.get(m) and e.cells[m].mean is not None for e in entries)
    ]  # fmt: skip
    return Board(
        key=key, columns=shown, entries=rank(entries, key.primary_metric), chance=chance_rows(runs, shown)
    )


def chance_rows(runs: Sequence[Run], columns: Sequence[str]) -> list[ChanceRow]:
    """The group's chance baselines as the records computed them (training class shares, the
    test split the group shares); a note when the records' training splits give other shares."""
    from dermbench.evaluation.chance import RULES

    found = [c for r in runs if isinstance(c := r.test_metrics.get("chance"), dict)]
    if not found:
        return []
    first = found[0]
    differ = any(c.get("class_shares") != first.get("class_shares") for c in found[1:])
    note = "the entries' training splits differ: shares of the first record" if differ else ""
    rows = []
    for rule in RULES:
        base = first.get(rule) or {}
        label = f"chance: {rule}" + (f" ({base['class']})" if base.get("class") else "")
        rows.append(ChanceRow(label, {m: as_number(get_path(base, m)) for m in columns}, note))
    return rows


def one_record_per_seed(runs: list[Run]) -> tuple[list[Run], list[Run]]:
    """Records of one entry that share a seed are copies of one run (e.g. rerun with another
    ``--groups`` or ``--out``): one seed is one result, counted once (the first by path); the
    copies left out are returned so the page can name them."""
    kept: dict[str, Run] = {}
    dropped: list[Run] = []
    for r in sorted(runs, key=lambda r: str(r.dir)):
        if str(r.seed) in kept:
            dropped.append(r)
        else:
            kept[str(r.seed)] = r
    return list(kept.values()), dropped


def build_boards(runs: Sequence[Run], cfg: LeaderboardConfig) -> dict[str, list[Board]]:
    """Per task, one board per comparable group: real data first, then the groups with most runs."""
    groups: dict[GroupKey, list[Run]] = {}
    for r in runs:
        groups.setdefault(r.group_key, []).append(r)
    out: dict[str, list[Board]] = {}
    for key in sorted(groups, key=lambda k: (k.synthetic, -len(groups[k]), *k.sort_key())):
        out.setdefault(key.task, []).append(build_board(key, groups[key], cfg))
    return {t: out[t] for t in cfg.task_order(list(out))}
