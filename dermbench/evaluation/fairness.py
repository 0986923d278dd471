"""Subgroup fairness audit and fairness-aware threshold recalibration.

Rumale et al., "Recall-Oriented Deep Learning Framework for Skin Cancer Detection with
Explainability and Fairness Analysis" (Table 8), report ROC-AUC, recall, precision, F1 and the
false-negative rate of the positive (malignant) class for light and dark skin (ITA > 28 vs <= 28)
and the light-minus-dark gap, then move the threshold to shrink the recall gap. This module does
that for any grouping (ITA groups, Fitzpatrick type, sex, ...), with fairlearn's ``MetricFrame``
for the per-group numbers and a bootstrap for the gaps.

Decisions are one-vs-rest (``p(positive) >= threshold``, as in
:func:`dermbench.metrics.operating_point`) at a threshold chosen on validation. A metric a group
cannot define is None with the reason, never 0 and never a crash. Gaps are max minus min over
the groups that define the metric (and first minus second for two groups), with percentile
intervals from resampling the whole split. ``docs/fairness.md`` states every rule, including
the recalibration rule of :func:`recalibrate_thresholds`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
from fairlearn.metrics import MetricFrame
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

from dermbench.errors import ConfigError, DataError

METRICS = ("auc", "recall", "precision", "f1", "fnr")
MISSING = frozenset({"", "nan", "none", "unknown"})
_CHUNK_CELLS = 4_000_000


# --- inputs ---------------------------------------------------------------------------------


def _inputs(
    y_true: Any, probs: Any, classes: Sequence[str], positive_class: str
) -> tuple[np.ndarray, np.ndarray]:
    """(is positive, p(positive)) per row, or a DataError/ConfigError saying what is wrong."""
    y, p = np.asarray(y_true), np.asarray(probs, dtype=np.float64)
    if positive_class not in classes:
        raise ConfigError(f"positive_class {positive_class!r} is not one of the classes {list(classes)}")
    if y.ndim != 1 or p.shape != (len(y), len(classes)):
        raise DataError(
            f"need labels (N,) and probabilities (N, {len(classes)}) for classes {list(classes)}, "
            f"got {y.shape} and {p.shape}"
        )
    if len(y) and (not np.issubdtype(y.dtype, np.number) or np.any(np.mod(y, 1) != 0)):
        raise DataError(
            f"labels must be class indices 0..{len(classes) - 1}, got values such as {y.ravel()[0].item()!r}"
        )
    bad = np.flatnonzero((y < 0) | (y >= len(classes)))
    if bad.size:
        raise DataError(
            f"label {y[bad[0]].item()!r} at row {int(bad[0])} is not a class index 0..{len(classes) - 1}"
        )
    if not np.isfinite(p).all():
        raise DataError(
            f"probabilities at row {int(np.flatnonzero(~np.isfinite(p).all(axis=1))[0])} are not finite"
        )
    pos = list(classes).index(positive_class)
    return y.astype(np.int64) == pos, p[:, pos]


def _label(v: Any) -> str | None:
    """A group label as a string (3.0 -> "3"), or None where it is missing."""
    if v is None:
        return None
    if isinstance(v, float | np.floating):
        if math.isnan(v):
            return None
        if float(v).is_integer():
            v = int(v)
    s = str(v).strip()
    return None if s.lower() in MISSING else s


def group_labels(values: Any, n: int, name: str) -> np.ndarray:
    """Group labels as an object array of str, None where missing; the length must match the split."""
    arr = list(values) if not isinstance(values, np.ndarray) else values.tolist()
    if len(arr) != n:
        raise DataError(f"grouping {name!r} has {len(arr)} values for {n} rows")
    return np.array([_label(v) for v in arr], dtype=object)


def _row_thresholds(threshold: Any, n: int) -> np.ndarray:
    t = np.asarray(threshold, dtype=np.float64)
    t = np.broadcast_to(t, (n,)) if t.ndim == 0 else t
    if t.shape != (n,):
        raise DataError(f"per-row thresholds have shape {t.shape} for {n} rows")
    if not np.all((t >= 0) & (t <= 1)):
        raise ConfigError(f"thresholds must lie in [0, 1], got values such as {t[(t < 0) | (t > 1)][0]!r}")
    return t


# --- per-group metrics: fairlearn for the point estimate ------------------------------------


def _auc(y: np.ndarray, s: np.ndarray) -> float:
    return float(roc_auc_score(y, s)) if 0 < np.sum(y) < len(y) else math.nan


def _cell(truth: bool, called: bool) -> Any:
    return lambda y, d: int(np.sum((np.asarray(y, bool) == truth) & (np.asarray(d, bool) == called)))


_CELLS = {"tp": (True, True), "fp": (False, True), "fn": (True, False), "tn": (False, False)}
_ON_DECISIONS = {
    "n": lambda y, d: len(y),
    "positives": lambda y, d: int(np.sum(y)),
    "recall": partial(recall_score, zero_division=np.nan),
    "precision": partial(precision_score, zero_division=np.nan),
    "f1": partial(f1_score, zero_division=np.nan),
    "fnr": lambda y, d: 1.0 - recall_score(y, d, zero_division=np.nan),
    **{name: _cell(*cell) for name, cell in _CELLS.items()},
}


def _reasons(n: int, positives: int, called: int, positive_class: str) -> dict[str, str]:
    none = f"no {positive_class} cases in group"
    why = dict.fromkeys(("auc", "recall", "fnr"), none) if positives == 0 else {}
    if positives == n:
        why["auc"] = f"only {positive_class} cases in group (AUC needs both)"
    if called == 0:
        why["precision"] = f"no case called {positive_class} at the threshold"
        if positives == 0:
            why["f1"] = f"{none} and none called {positive_class}"
    return why


def _entry(group: str, values: Mapping[str, Any], positive_class: str) -> dict[str, Any]:
    n, positives = int(values["n"]), int(values["positives"])
    called = int(values["tp"]) + int(values["fp"])
    why = _reasons(n, positives, called, positive_class)
    out: dict[str, Any] = {"group": group, "n": n, "positives": positives}
    for m in METRICS:
        v = float(values[m])
        out[m] = None if math.isnan(v) else v
    out.update({k: int(values[k]) for k in ("tp", "fp", "fn", "tn")})
    out["undefined"] = {m: why[m] for m in METRICS if out[m] is None}
    return out


def per_group_metrics(
    actual: np.ndarray, scores: np.ndarray, decided: np.ndarray, labels: np.ndarray, positive_class: str
) -> list[dict[str, Any]]:
    """One entry per group through fairlearn's ``MetricFrame``, over the rows that have a label."""
    keep = np.array([v is not None for v in labels], dtype=bool)
    if not keep.any():
        return []
    feature = pd.Series(labels[keep].astype(str), name="group")
    y, s, d = actual[keep].astype(int), scores[keep], decided[keep].astype(int)
    on_decisions = MetricFrame(metrics=_ON_DECISIONS, y_true=y, y_pred=d, sensitive_features=feature)
    on_scores = MetricFrame(metrics={"auc": _auc}, y_true=y, y_pred=s, sensitive_features=feature)
    table = pd.concat([on_decisions.by_group, on_scores.by_group], axis=1)
    return [_entry(str(g), table.loc[g], positive_class) for g in table.index]


# --- bootstrap ------------------------------------------------------------------------------


def resample_counts(n: int, n_boot: int, seed: int = 0, clusters: Any = None) -> Iterator[np.ndarray]:
    """Chunks (b, n) of how often each row was drawn, resample by resample.

    With ``clusters`` (e.g. lesion ids) whole clusters are drawn with replacement, so several
    images of one lesion never make an interval narrower than the number of lesions allows.
    """
    rng = np.random.default_rng(seed)
    if clusters is None:
        inverse, units = np.arange(n), n
    else:
        c = np.asarray(clusters)
        if len(c) != n:
            raise DataError(f"resample_groups has {len(c)} entries for {n} rows")
        _, inverse = np.unique(c.astype(str), return_inverse=True)
        units = int(inverse.max()) + 1 if n else 0
    chunk = max(1, _CHUNK_CELLS // max(n, 1))
    done = 0
    while done < n_boot:
        b = min(chunk, n_boot - done)
        draw = rng.integers(0, units, size=(b, units))
        flat = (draw + units * np.arange(b)[:, None]).ravel()
        counts = np.bincount(flat, minlength=b * units).reshape(b, units).astype(np.float64)
        yield counts[:, inverse]
        done += b


def weighted_auc(scores: np.ndarray, actual: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC-AUC for each row of ``weights`` (b, m): P(score_pos > score_neg) + 0.5 P(tie), NaN if a class is absent."""
    order = np.argsort(scores, kind="mergesort")
    s, a, w = scores[order], actual[order], weights[:, order]
    m = len(s)
    if m == 0:
        return np.full(len(weights), np.nan)
    _, first = np.unique(s, return_index=True)
    last = np.r_[first[1:] - 1, m - 1]
    tie_of = np.repeat(np.arange(len(first)), np.diff(np.r_[first, m]))
    neg = np.cumsum(w * ~a, axis=1)
    below = np.where(first > 0, neg[:, np.maximum(first - 1, 0)], 0.0)
    tied = neg[:, last] - below
    wins = ((w * a) * (below[:, tie_of] + 0.5 * tied[:, tie_of])).sum(axis=1)
    pairs = (w * a).sum(axis=1) * neg[:, -1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, wins / pairs, np.nan)


def weighted_metrics(
    actual: np.ndarray, scores: np.ndarray, decided: np.ndarray, weights: np.ndarray
) -> dict[str, np.ndarray]:
    """Every audit metric for each row of resample ``weights`` (b, m) at once; NaN where undefined."""
    tp = weights @ (actual & decided).astype(float)
    fp = weights @ (~actual & decided).astype(float)
    fn = weights @ (actual & ~decided).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(tp + fn > 0, tp / (tp + fn), np.nan)
        return {
            "auc": weighted_auc(scores, actual, weights),
            "recall": recall,
            "precision": np.where(tp + fp > 0, tp / (tp + fp), np.nan),
            "f1": np.where(tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan),
            "fnr": 1.0 - recall,
        }


def _interval(values: np.ndarray, alpha: float) -> tuple[float | None, float | None, int]:
    used = values[~np.isnan(values)]
    if not used.size:
        return None, None, 0
    low, high = np.percentile(used, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(low), float(high), int(used.size)


# --- the audit ------------------------------------------------------------------------------


def _bootstrap(
    actual: np.ndarray,
    scores: np.ndarray,
    decided: np.ndarray,
    members: Mapping[str, list[np.ndarray]],
    n_boot: int,
    seed: int,
    clusters: Any,
) -> dict[str, dict[str, np.ndarray]]:
    """Per grouping and metric, an (n_boot, groups) array of the metric on each resample."""
    out: dict[str, dict[str, list[np.ndarray]]] = {name: {m: [] for m in METRICS} for name in members}
    for w in resample_counts(len(actual), n_boot, seed, clusters):
        for name, idx_list in members.items():
            per = [weighted_metrics(actual[i], scores[i], decided[i], w[:, i]) for i in idx_list]
            for m in METRICS:
                out[name][m].append(np.array([p[m] for p in per]).T.reshape(len(w), len(per)))
    return {name: {m: np.concatenate(v) for m, v in table.items()} for name, table in out.items()}


def _ordered(rows: list[dict[str, Any]], order: Sequence[Any] | None) -> list[dict[str, Any]]:
    first = [] if order is None else [_label(v) for v in order]
    rank = {g: i for i, g in enumerate(first) if g is not None}
    return sorted(rows, key=lambda r: (rank.get(r["group"], len(rank)), r["group"]))


def _gap(rows: list[dict[str, Any]], boot: np.ndarray | None, metric: str, alpha: float) -> dict[str, Any]:
    """max - min over the groups that define ``metric``; the signed difference when there are two."""
    defined = [i for i, r in enumerate(rows) if r[metric] is not None]
    names = [rows[i]["group"] for i in defined]
    entry: dict[str, Any] = {"value": None, "low": None, "high": None, "n_boot_used": 0, "groups": names}
    excluded = {r["group"]: r["undefined"][metric] for r in rows if r[metric] is None}
    if excluded:
        entry["excluded"] = excluded
    if len(defined) < 2:
        entry["reason"] = f"fewer than two groups define {metric}"
        return entry
    vals = np.array([rows[i][metric] for i in defined])
    entry.update(value=float(vals.max() - vals.min()))
    entry.update(max_group=names[int(vals.argmax())], min_group=names[int(vals.argmin())])
    b = None if boot is None else boot[:, defined]
    if b is not None:
        with np.errstate(invalid="ignore"):
            gaps = np.where(np.isnan(b).any(axis=1), np.nan, b.max(axis=1) - b.min(axis=1))
        entry["low"], entry["high"], entry["n_boot_used"] = _interval(gaps, alpha)
    if len(defined) == 2:
        diff: dict[str, Any] = {"groups": names, "value": float(vals[0] - vals[1])}
        diff.update(low=None, high=None, n_boot_used=0)
        if b is not None:
            diff["low"], diff["high"], diff["n_boot_used"] = _interval(b[:, 0] - b[:, 1], alpha)
        entry["difference"] = diff
    return entry


def fairness_audit(
    y_true: Any,
    probs: Any,
    classes: Sequence[str],
    groups: Mapping[str, Any],
    positive_class: str,
    threshold: float | Sequence[float] | np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    *,
    order: Mapping[str, Sequence[Any]] | None = None,
    resample_groups: Any = None,
) -> dict[str, Any]:
    """Per-group metrics of ``positive_class`` and between-group gaps with bootstrap intervals.

    ``groups`` maps a grouping's name to one label per row (e.g. ``{"ita": ..., "sex": ...}``);
    ``threshold`` is the validation operating point, one number or one per row; ``order`` lists
    a grouping's groups in the order wanted (the two-group difference is first minus second);
    ``resample_groups`` (lesion ids) makes the bootstrap draw whole lesions. The result is plain
    JSON: see the module docstring and docs/fairness.md.
    """
    actual, scores = _inputs(y_true, probs, classes, positive_class)
    n = len(actual)
    if n == 0:
        raise DataError("cannot audit an empty split")
    if n_boot < 0:
        raise ConfigError(f"n_boot must be >= 0, got {n_boot}")
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"alpha must lie in (0, 1), got {alpha}")
    t = _row_thresholds(threshold, n)
    decided = scores >= t
    labels = {name: group_labels(values, n, name) for name, values in groups.items()}
    (overall,) = per_group_metrics(actual, scores, decided, np.full(n, "all", dtype=object), positive_class)
    tables = {
        name: _ordered(
            per_group_metrics(actual, scores, decided, lab, positive_class), (order or {}).get(name)
        )
        for name, lab in labels.items()
    }
    members = {name: [np.flatnonzero(labels[name] == r["group"]) for r in tables[name]] for name in tables}
    boot = _bootstrap(actual, scores, decided, members, n_boot, seed, resample_groups) if n_boot else {}
    scalar = np.ndim(threshold) == 0
    return {
        "positive_class": positive_class,
        "threshold": float(t[0]) if scalar else {"per_row": True, "distinct": sorted(set(t.tolist()))},
        "n": n,
        "positives": int(actual.sum()),
        "n_boot": int(n_boot),
        "seed": int(seed),
        "alpha": float(alpha),
        "resampling": "images" if resample_groups is None else "groups",
        "overall": overall,
        "groupings": {
            name: {
                "groups": rows,
                "n_missing": int(sum(v is None for v in labels[name])),
                "gaps": {m: _gap(rows, boot.get(name, {}).get(m), m, alpha) for m in METRICS},
            }
            for name, rows in tables.items()
        },
    }
