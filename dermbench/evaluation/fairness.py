"""Subgroup audit: per-group metrics and signed differences against a named reference group.

Rumale et al., "Recall-Oriented Deep Learning Framework for Skin Cancer Detection with
Explainability and Fairness Analysis" (Table 8), report ROC-AUC, recall, precision, F1 and the
false-negative rate of the positive (malignant) class for light and dark skin (ITA > 28 vs <= 28)
and the light-minus-dark difference. This module does that for any grouping (ITA groups,
Fitzpatrick type, sex, ...):

- per-group numbers through fairlearn's ``MetricFrame`` (plus Brier, ECE and the screening
  metrics of each group), and fairlearn's equalized-odds difference;
- ``reference - group`` for every other group, with a percentile interval from the same
  lesion-grouped resamples; the reference is named (ITA: ``light``, so the sign is the paper's
  light minus dark; otherwise the largest group), and a max - min gap, whose percentile interval
  cannot cover 0, is not reported;
- a minimum group size (images, positives, negatives): a smaller group is shown but used for no
  difference and no worst-group value; every conditional interval says how many resamples
  defined it;
- worst-group AUC and recall (MEDFAIR's summary), over the usable groups;
- flags: an operating point that calls (nearly) every image positive or negative makes every
  difference "not a fairness result", and a group where that happens is flagged itself.

Decisions are one-vs-rest (``p(positive) >= threshold``) at a threshold chosen on validation. A
metric a group cannot define is None with the reason, never 0. ``docs/fairness.md`` has every rule.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
from fairlearn.metrics import MetricFrame, equalized_odds_difference
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

from dermbench.errors import ConfigError, DataError
from dermbench.evaluation.calibration import calibration_report
from dermbench.evaluation.degenerate import OPERATING_POINT_CODES, operating_point_flags, rate_flags
from dermbench.evaluation.resample import (
    check_resampling,
    percentile_interval,
    resample_weights,
    resampling_unit,
)
from dermbench.evaluation.screening import screening_report
from dermbench.evaluation.weighted import binary_rates, brier, ones, weighted_auc

METRICS = ("auc", "recall", "precision", "f1", "fnr", "specificity")
LOWER_IS_BETTER = frozenset({"fnr"})
MIN_GROUP = {"images": 30, "positives": 5, "negatives": 5}
REFERENCE = {"binary28": "light"}  # named reference groups of a scheme (ITA > 28 vs <= 28)
MISSING = frozenset({"", "nan", "none", "unknown"})


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
    "specificity": lambda y, d: recall_score(y, d, pos_label=0, zero_division=np.nan),
    **{name: _cell(*cell) for name, cell in _CELLS.items()},
}


def _reasons(n: int, positives: int, called: int, positive_class: str) -> dict[str, str]:
    none = f"no {positive_class} cases in group"
    why = dict.fromkeys(("auc", "recall", "fnr"), none) if positives == 0 else {}
    if positives == n:
        why["auc"] = f"only {positive_class} cases in group (AUC needs both)"
        why["specificity"] = f"no cases other than {positive_class} in group"
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


# --- what a group adds beyond fairlearn's table ---------------------------------------------


def _group_extras(
    rows: np.ndarray, y: np.ndarray, probs: np.ndarray, actual: np.ndarray, scores: np.ndarray
) -> dict[str, Any]:
    """Calibration and threshold-free screening metrics of one group's rows."""
    return {
        "brier": float(brier(y[rows], probs[rows], ones(len(rows)))[0]) if len(rows) else None,
        "ece": calibration_report(y[rows], probs[rows])["ece"],
        "screening": screening_report(actual[rows], scores[rows]),
    }


def _usability(row: dict[str, Any], minimum: Mapping[str, int]) -> str | None:
    """Why a group is too small to be used for differences, or None if it is usable."""
    counts = {"images": row["n"], "positives": row["positives"], "negatives": row["n"] - row["positives"]}
    short = [
        f"{counts[k]} {k} < {minimum[k]}"
        for k in ("images", "positives", "negatives")
        if counts[k] < minimum[k]
    ]
    return f"too small to compare ({', '.join(short)})" if short else None


def _reference(name: str, scheme: str | None, rows: list[dict[str, Any]]) -> tuple[str | None, str]:
    """The named reference group of a grouping, and the rule that named it."""
    usable = [r for r in rows if r["usable"]]
    named = REFERENCE.get(scheme or name)
    if named is not None and any(r["group"] == named for r in usable):
        return named, f"{named} (the paper's reference: differences are {named} minus the group)"
    if not usable:
        return None, "no usable group"
    largest = max(usable, key=lambda r: (r["n"], r["group"]))
    return largest["group"], "the largest usable group"


# --- resampled differences ------------------------------------------------------------------


def _group_draws(actual, scores, decided, members, n_boot, seed, clusters) -> list[dict[str, np.ndarray]]:
    """Per group, ``{metric: (n_boot,)}`` over the same resamples of the whole split."""
    out: list[dict[str, list]] = [{m: [] for m in METRICS} for _ in members]
    for w in resample_weights(len(actual), n_boot, seed, clusters):
        for g, idx in enumerate(members):
            wg = w[:, idx]
            rates = binary_rates(actual[idx], decided[idx], wg)
            rates["auc"] = weighted_auc(scores[idx], actual[idx], wg)
            for m in METRICS:
                out[g][m].append(rates[m])
    return [{m: np.concatenate(v) for m, v in d.items()} for d in out]


def _differences(
    rows: list[dict[str, Any]], ref: str | None, draws: list | None, alpha: float, metrics: Sequence[str]
) -> dict[str, list]:
    """``reference - group`` for each usable group, with its interval over the shared resamples."""
    if ref is None:
        return {}
    r = next(i for i, row in enumerate(rows) if row["group"] == ref)
    out: dict[str, list] = {m: [] for m in metrics}
    for g, row in enumerate(rows):
        if g == r or not row["usable"]:
            continue
        for m in metrics:
            a, b = rows[r][m], row[m]
            entry: dict[str, Any] = {
                "group": row["group"],
                "value": None if a is None or b is None else a - b,
            }
            if entry["value"] is None:
                entry["undefined"] = row["undefined"].get(m) or rows[r]["undefined"].get(m)
            elif draws is not None:
                entry.update(percentile_interval(draws[r][m] - draws[g][m], alpha, entry["value"]).to_dict())
            out[m].append(entry)
    return out


def _worst(rows: list[dict[str, Any]], metrics: Sequence[str]) -> dict[str, Any]:
    """The worst usable group for AUC and recall (MEDFAIR), and for the false-negative rate."""
    out = {}
    for m in (m for m in ("auc", "recall", "fnr") if m in metrics):
        defined = [r for r in rows if r["usable"] and r[m] is not None]
        if defined:
            pick = max if m in LOWER_IS_BETTER else min
            worst = pick(defined, key=lambda r: r[m])
            out[m] = {"group": worst["group"], "value": worst[m]}
    return out


def _equalized_odds(
    actual: np.ndarray, decided: np.ndarray, labels: np.ndarray, rows: list[dict]
) -> float | None:
    """fairlearn's equalized-odds difference over the usable groups' images."""
    usable = {r["group"] for r in rows if r["usable"]}
    keep = np.array([v in usable for v in labels], dtype=bool)
    if len(usable) < 2:
        return None
    value = equalized_odds_difference(
        actual[keep].astype(int), decided[keep].astype(int), sensitive_features=labels[keep].astype(str)
    )
    return None if math.isnan(value) else float(value)


# --- the audit ------------------------------------------------------------------------------


def _ordered(rows: list[dict[str, Any]], order: Sequence[Any] | None) -> list[dict[str, Any]]:
    first = [] if order is None else [_label(v) for v in order]
    rank = {g: i for i, g in enumerate(first) if g is not None}
    return sorted(rows, key=lambda r: (rank.get(r["group"], len(rank)), r["group"]))


def _grouping(name: str, lab: np.ndarray, data: dict, settings: dict) -> dict[str, Any]:
    """One grouping's table, reference, differences, worst group and equalized odds."""
    actual, scores, decided = data["actual"], data["scores"], data["decided"]
    rows = _ordered(
        per_group_metrics(actual, scores, decided, lab, data["positive_class"]), settings["order"].get(name)
    )
    for row in rows:
        idx = np.flatnonzero(lab == row["group"])
        row.update(_group_extras(idx, data["y"], data["probs"], actual, scores))
        row["positive_rate"] = (row["tp"] + row["fp"]) / row["n"] if row["n"] else None
        row["flags"] = rate_flags(row["positive_rate"])
        why = _usability(row, settings["min_group"])
        row["usable"], row["not_used"] = why is None, why
    ref, rule = _reference(name, settings["schemes"].get(name), rows)
    draws = None
    if settings["n_boot"]:
        members = [np.flatnonzero(lab == r["group"]) for r in rows]
        draws = _group_draws(
            actual, scores, decided, members, settings["n_boot"], settings["seed"], settings["clusters"]
        )
    metrics = ("auc",) if settings["trivial"] else METRICS  # at a trivial point only AUC compares anything
    out = {
        "groups": rows,
        "n_missing": int(sum(v is None for v in lab)),
        "reference": ref,
        "reference_rule": rule,
        "difference": "reference - group",
        "differences": _differences(rows, ref, draws, settings["alpha"], metrics),
        "worst_group": _worst(rows, metrics),
        "equalized_odds_difference": None
        if settings["trivial"]
        else _equalized_odds(actual, decided, lab, rows),
    }
    if settings["trivial"]:
        out["withheld"] = (
            "decision metrics (recall, precision, F1, FNR, specificity, equalized odds): trivial operating point"
        )
    return out


def _split_flags(
    actual: np.ndarray, decided: np.ndarray, scalar: bool, clusters: Any, seed: int, known: list | None
) -> dict[str, Any]:
    """The operating point's flags (``known``: those the run record already holds for this split
    and threshold); a trivial one makes the whole audit not a fairness result."""
    if scalar and known is not None:
        flags = [f for f in known if f["code"] in OPERATING_POINT_CODES]
    elif scalar:
        flags = operating_point_flags(actual, decided, groups=clusters, seed=seed)
    else:
        flags = rate_flags(float(decided.mean()))
    trivial = [f for f in flags if f["code"] in ("all_positive", "all_negative")]
    out: dict[str, Any] = {"flags": flags, "fairness_result": not trivial}
    if trivial:
        why = f"the operating point {trivial[0]['message']}: every group's recall is trivially the same"
        out["not_a_fairness_result"] = why
    return out


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
    schemes: Mapping[str, str] | None = None,
    min_group: Mapping[str, int] | None = None,
    known_flags: list | None = None,
) -> dict[str, Any]:
    """Per-group metrics of ``positive_class`` and signed differences against a reference group.

    ``groups`` maps a grouping's name to one label per row; ``threshold`` is the validation
    operating point, one number or one per row; ``resample_groups`` (lesion ids) makes the
    bootstrap draw whole lesions; ``schemes`` maps a grouping to its scheme (``ita`` has the named
    reference ``light``); ``min_group`` overrides :data:`MIN_GROUP`; ``known_flags`` are the split's
    flags at this threshold when the caller has them already (the run record), so the bootstrap
    behind them is not drawn again. Plain JSON out.
    """
    actual, scores = _inputs(y_true, probs, classes, positive_class)
    n = len(actual)
    if n == 0:
        raise DataError("cannot audit an empty split")
    check_resampling(n, n_boot, alpha, allow_none=True)
    t = _row_thresholds(threshold, n)
    decided = scores >= t
    data = {"actual": actual, "scores": scores, "decided": decided, "positive_class": positive_class,
            "y": np.asarray(y_true).astype(np.int64), "probs": np.asarray(probs, dtype=np.float64)}  # fmt: skip
    settings = {"order": dict(order or {}), "schemes": dict(schemes or {}), "min_group": {**MIN_GROUP, **(min_group or {})},
                "n_boot": n_boot, "seed": seed, "alpha": alpha, "clusters": resample_groups}  # fmt: skip
    (overall,) = per_group_metrics(actual, scores, decided, np.full(n, "all", dtype=object), positive_class)
    overall["positive_rate"] = float(decided.mean())
    scalar = np.ndim(threshold) == 0
    flags = _split_flags(actual, decided, scalar, resample_groups, seed, known_flags)
    settings["trivial"] = not flags["fairness_result"]
    return {
        "positive_class": positive_class,
        "threshold": float(t[0]) if scalar else {"per_row": True, "distinct": sorted(set(t.tolist()))},
        "n": n,
        "positives": int(actual.sum()),
        "n_boot": int(n_boot),
        "seed": int(seed),
        "alpha": float(alpha),
        "resampling": resampling_unit(resample_groups),
        "min_group": settings["min_group"],
        "overall": overall,
        **flags,
        "groupings": {
            name: _grouping(name, group_labels(v, n, name), data, settings) for name, v in groups.items()
        },
    }
