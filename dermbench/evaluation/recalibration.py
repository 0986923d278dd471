"""Fairness recalibration of the decision threshold, chosen on validation only.

Rumale et al. lower the threshold to shrink the recall gap between skin-tone groups without
retraining. ``recalibrate_thresholds`` chooses either one global threshold (the smallest
between-group recall gap subject to overall recall >= the constraint, with overall F1 kept
within ``f1_tolerance`` of the recall-constrained point) or one threshold per group (each
meeting the constraint on its own); ``recalibration_report`` audits a split before and after.
Test labels never reach the choice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from dermbench.errors import ConfigError, DataError
from dermbench.evaluation.degenerate import is_trivial
from dermbench.evaluation.fairness import _inputs, fairness_audit, group_labels
from dermbench.evaluation.metrics import choose_threshold, threshold_decisions, threshold_grid


def _summary(actual: np.ndarray, scores: np.ndarray, labels: np.ndarray, t: np.ndarray) -> dict[str, Any]:
    decided = scores >= t
    tp, fp = int(np.sum(actual & decided)), int(np.sum(~actual & decided))
    fn = int(np.sum(actual & ~decided))
    per = {}
    for g in sorted({v for v in labels if v is not None}):
        rows = labels == g
        pos = int(np.sum(actual[rows]))
        per[g] = float(np.sum(actual[rows] & decided[rows]) / pos) if pos else None
    defined = [v for v in per.values() if v is not None]
    return {
        "val_recall": tp / (tp + fn) if tp + fn else None,
        "val_f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None,
        "val_group_recall": per,
        "val_recall_gap": float(max(defined) - min(defined)) if len(defined) >= 2 else None,
    }


def _global_choice(
    actual: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    gamma: float | None,
    step: float,
    f1_floor: float,
) -> tuple[float | None, str | None]:
    """The grid threshold with the smallest recall gap among those with recall >= gamma and F1 >= floor."""
    grid = threshold_grid(step)
    decided = scores[:, None] >= grid[None, :]
    n_pos = actual.sum()
    tp = (decided & actual[:, None]).sum(axis=0)
    fp = decided.sum(axis=0) - tp
    recall, f1 = tp / n_pos, 2 * tp / (2 * tp + fp + (n_pos - tp))
    with_pos = sorted({g for g, a in zip(labels, actual, strict=True) if g is not None and a})
    if len(with_pos) < 2:
        return None, "fewer than two groups with positive cases on validation: the recall gap is undefined"
    rows = [labels == g for g in with_pos]
    group_recall = np.stack([(decided[r] & actual[r, None]).sum(axis=0) / actual[r].sum() for r in rows])
    gap = group_recall.max(axis=0) - group_recall.min(axis=0)
    ok = (f1 >= f1_floor - 1e-12) & ~is_trivial(decided.mean(axis=0))
    if gamma is not None:
        ok &= recall >= gamma
    if not ok.any():
        return (
            None,
            "no non-trivial grid threshold meets the recall constraint and the F1 floor on validation",
        )
    cand = np.flatnonzero(ok)
    best = cand[np.lexsort((grid[cand], -f1[cand], np.round(gap[cand], 12)))[0]]
    return float(grid[best]), None


def _global(actual, scores, labels, base: dict, gamma, step: float, tol: float, seen: list) -> dict[str, Any]:
    """One threshold for everyone: the smallest recall gap that is neither trivial nor worse in F1."""
    t0 = float(base["threshold"])
    if not base["feasible"]:
        chosen, why = t0, f"{base['reason']}; the baseline threshold is kept"
    else:
        chosen, why = _global_choice(actual, scores, labels, gamma, step, base["val_f1"] - tol)
        if chosen is None and not is_trivial(float(np.mean(scores >= t0))):
            chosen, why = t0, f"{why}; the baseline threshold is kept"
    if chosen is None:
        return {"threshold": None, "thresholds": {}, "reason": f"{why}; no recalibrated threshold"}
    return {"threshold": chosen, "thresholds": dict.fromkeys(seen, chosen), "reason": why}


def _per_group(
    actual, labels, y, p, classes, positive_class, gamma, step, t0: float, seen: list
) -> dict[str, Any]:
    """The baseline rule within each group's own rows, never a trivial threshold."""
    per: dict[str, dict[str, Any]] = {}
    for g in seen:
        rows = labels == g
        if not actual[rows].any():
            per[g] = dict(threshold=t0, feasible=None, reason="no positive case in group: baseline used")
            continue
        c = choose_threshold(
            y[rows], p[rows], classes, positive_class, gamma, step=step, exclude_trivial=True
        )
        if c["threshold"] is None:
            c = {**c, "threshold": t0, "reason": f"{c['reason']}: baseline used"}
        per[g] = {k: c[k] for k in ("threshold", "feasible", "val_recall", "val_f1", "reason")}
    return {"thresholds": {g: v["threshold"] for g, v in per.items()}, "group_choices": per, "reason": None}


def recalibrate_thresholds(
    val_y: Any,
    val_probs: Any,
    classes: Sequence[str],
    val_groups: Any,
    positive_class: str,
    recall_constraint: float | None,
    mode: str = "global",
    step: float = 0.02,
    f1_tolerance: float = 0.05,
) -> dict[str, Any]:
    """Thresholds chosen on VALIDATION predictions only, to shrink the between-group recall gap.

    ``global``: the smallest gap among grid thresholds keeping recall >= the constraint and F1
    within ``f1_tolerance`` of the baseline (the paper's recall-constrained point), never one that
    calls (nearly) every or no image positive: that would win with a zero gap and mean nothing.
    ``per_group``: the baseline rule on each group's own rows, with the same exclusion.
    docs/fairness.md gives the full rule, ties and fallbacks.
    """
    if mode not in ("global", "per_group"):
        raise ConfigError(f"recalibration mode must be 'global' or 'per_group', got {mode!r}")
    if not 0.0 <= f1_tolerance <= 1.0:
        raise ConfigError(f"f1_tolerance must lie in [0, 1], got {f1_tolerance!r}")
    actual, scores = _inputs(val_y, val_probs, classes, positive_class)
    labels = group_labels(val_groups, len(actual), "val_groups")
    y, p = np.asarray(val_y), np.asarray(val_probs, dtype=np.float64)
    base = choose_threshold(y, p, classes, positive_class, recall_constraint, step=step)
    result: dict[str, Any] = {
        "mode": mode,
        "positive_class": positive_class,
        "recall_constraint": None if recall_constraint is None else float(recall_constraint),
        "step": float(step),
        "f1_tolerance": float(f1_tolerance),
        "default": base["threshold"],
        "threshold": None,
        "thresholds": {},
        "feasible": base["feasible"],
        "reason": base["reason"],
    }
    if base["threshold"] is None:
        return result
    t0 = float(base["threshold"])
    result["baseline"] = {"threshold": t0, **_summary(actual, scores, labels, np.full(len(actual), t0))}
    seen = sorted({v for v in labels if v is not None})
    if mode == "global":
        result.update(_global(actual, scores, labels, base, recall_constraint, step, f1_tolerance, seen))
    else:
        result.update(
            _per_group(actual, labels, y, p, classes, positive_class, recall_constraint, step, t0, seen)
        )
    if result["thresholds"]:
        result["chosen"] = _summary(actual, scores, labels, thresholds_for_rows(val_groups, result))
    return result


def thresholds_for_rows(groups: Any, choice: Mapping[str, Any]) -> np.ndarray:
    """Each row's threshold under a recalibration ``choice``; unseen or missing groups get its default."""
    if choice.get("default") is None:
        raise ConfigError(f"no threshold was chosen on validation: {choice.get('reason')}")
    labels = group_labels(groups, len(groups), "groups")
    table = choice.get("thresholds") or {}
    default = choice["threshold"] if choice.get("threshold") is not None else choice["default"]
    return np.array([table.get(g, default) if g is not None else default for g in labels], dtype=np.float64)


def apply_thresholds(
    probs: Any, classes: Sequence[str], groups: Any, choice: Mapping[str, Any]
) -> np.ndarray:
    """Class decisions on any split: the positive class where ``p >= the row's threshold``, else the
    most probable other class (the rule of :func:`dermbench.evaluation.metrics.threshold_decisions`)."""
    positive_class = choice["positive_class"]
    p = np.asarray(probs, dtype=np.float64)
    _inputs(np.zeros(len(p), dtype=np.int64), p, classes, positive_class)
    pos = list(classes).index(positive_class)
    t = thresholds_for_rows(groups, choice)
    if len(t) != len(p):
        raise DataError(f"groups has {len(t)} entries for {len(p)} rows of probabilities")
    return threshold_decisions(p, pos, t)


def recalibration_report(
    y_true: Any,
    probs: Any,
    classes: Sequence[str],
    groups: Mapping[str, Any],
    choice: Mapping[str, Any],
    threshold_groups: Any,
    n_boot: int = 1000,
    seed: int = 0,
    known_flags: list | None = None,
    **audit: Any,
) -> dict[str, Any]:
    """The audit of a split before (the baseline threshold) and after (the recalibrated ones).

    ``choice`` comes from :func:`recalibrate_thresholds` on validation and is only read here, so
    the labels of the audited split cannot move a threshold. ``threshold_groups`` is each row's
    group in the grouping the thresholds were chosen for.
    """
    if choice.get("default") is None:
        raise ConfigError(f"no threshold was chosen on validation: {choice.get('reason')}")
    positive_class = choice["positive_class"]
    before = fairness_audit(
        y_true, probs, classes, groups, positive_class, float(choice["default"]), n_boot, seed,
        known_flags=known_flags, **audit,
    )  # fmt: skip
    if not choice.get("thresholds"):
        return {"choice": dict(choice), "before": before, "after": None, "reason": choice.get("reason")}
    after_t = thresholds_for_rows(threshold_groups, choice)
    if len(after_t) != before["n"]:
        raise DataError(f"threshold_groups has {len(after_t)} entries for {before['n']} rows")
    after = fairness_audit(y_true, probs, classes, groups, positive_class, after_t, n_boot, seed, **audit)
    return {"choice": dict(choice), "before": before, "after": after}
