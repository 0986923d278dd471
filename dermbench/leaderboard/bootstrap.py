"""Bootstrap 95% intervals of a leaderboard entry, recomputed from the saved test predictions.

An entry is the mean over seeds of a metric on one test split. Its interval must reflect how much
that mean would move with another test sample of the same size, so every seed is scored on the
*same* resampled test cases (a paired bootstrap) and the seed-mean of each draw forms the
distribution (Efron & Tibshirani, "An Introduction to the Bootstrap", 1993, percentile method).

A draw is a vector of case counts (how often each test case was drawn), so every metric here is a
weighted count: one matrix product gives the confusion matrices of all draws at once, and the
one-vs-rest AUC is computed from weighted cumulative sums over the sorted scores. That keeps
1000 draws over thousands of cases at well under a second per entry on a laptop CPU.

Definitions are those of ``dermbench.metrics.classification_report`` (docs/metrics.md), applied
to each draw: macro F1 over the classes present in the drawn labels or predictions; balanced
accuracy and ``macro_auc`` over the classes present in the drawn labels; a precision with nothing
predicted is undefined, and a draw where a metric is undefined is left out. The operating point
predicts positive when ``p >= threshold``. Before an interval is given, ``aggregate`` checks that
these definitions reproduce the value the record holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

OVERALL = ("accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "macro_auc")
OP_KEYS = ("recall", "sensitivity", "precision", "f1", "specificity")
CLASS_KEYS = ("precision", "recall", "f1")
CHUNK = 250
MIN_DEFINED = 0.9  # fewer defined draws than this share: the interval would be conditional, so none


@dataclass(frozen=True)
class Interval:
    low: float
    high: float
    n_boot_used: int


def supported(metric: str, classes: Sequence[str]) -> bool:
    """Whether ``metric`` (a dotted METRICS path) can be recomputed here from predictions."""
    if metric in OVERALL:
        return True
    parts = metric.split(".")
    if len(parts) == 2 and parts[0] == "operating_point":
        return parts[1] in OP_KEYS
    return len(parts) == 3 and parts[0] == "per_class" and parts[1] in classes and parts[2] in CLASS_KEYS


def draw_counts(
    n: int, n_boot: int, seed: int, groups: Sequence[Any] | np.ndarray | None = None
) -> np.ndarray:
    """``(n_boot, n)`` case counts: row ``b`` counts how often each case is in bootstrap sample ``b``.

    Without ``groups`` a sample is ``rng.integers(0, n, n)``; with ``groups`` (lesion ids) whole
    groups are drawn, ``rng.integers(0, n_groups, n_groups)`` over the sorted distinct ids, so that
    several images of one lesion cannot make an interval look tighter than the number of lesions
    allows. Both draw what ``dermbench.bootstrap.bootstrap_ci`` draws for the same seed.
    """
    rng = np.random.default_rng(seed)
    if groups is None:
        units, inverse = n, None
    else:
        _, inverse = np.unique(np.asarray(groups).astype(str), return_inverse=True)
        units = int(inverse.max()) + 1
    draw = rng.integers(0, units, size=(n_boot, units))
    counts = np.stack([np.bincount(row, minlength=units) for row in draw]).astype(np.float64)
    return counts if inverse is None else counts[:, inverse]


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1), np.nan)


def _auc(w: np.ndarray, score: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """Weighted ROC AUC per row of ``w`` (ties count one half); NaN without both classes."""
    order = np.argsort(score, kind="mergesort")
    s = score[order]
    starts = np.r_[0, np.flatnonzero(np.diff(s)) + 1]
    ws = w[:, order]
    pos = np.add.reduceat(ws * positive[order], starts, axis=1)
    neg = np.add.reduceat(ws * ~positive[order], starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    num = (pos * (below + 0.5 * neg)).sum(axis=1)
    return _div(num, pos.sum(axis=1) * neg.sum(axis=1))


def evaluate(
    w: np.ndarray,
    y: np.ndarray,
    probs: np.ndarray,
    classes: Sequence[str],
    metrics: Sequence[str],
    threshold: float | None = None,
    positive_class: str | None = None,
) -> dict[str, np.ndarray]:
    """Each metric on each row of case weights ``w`` ``(B, n)``: an array of ``B`` values."""
    k = len(classes)
    pred = probs.argmax(axis=1)
    onehot = np.zeros((len(y), k * k))
    onehot[np.arange(len(y)), y * k + pred] = 1.0
    conf = (w @ onehot).reshape(-1, k, k)
    tp = np.diagonal(conf, axis1=1, axis2=2)
    support, predicted = conf.sum(axis=2), conf.sum(axis=1)
    total = support.sum(axis=1)
    present = (support + predicted) > 0
    precision = _div(tp, predicted)
    recall = _div(tp, support)
    f1 = np.where(present, _div(2 * tp, support + predicted), np.nan)
    out: dict[str, np.ndarray] = {}
    for m in metrics:
        parts = m.split(".")
        if m == "accuracy":
            out[m] = _div(tp.sum(axis=1), total)
        elif m == "balanced_accuracy":
            out[m] = _nanmean(recall)
        elif m == "macro_f1":
            out[m] = _nanmean(f1)
        elif m == "weighted_f1":
            out[m] = _div(np.nansum(f1 * support, axis=1), total)
        elif m == "macro_auc":
            aucs = np.stack([_auc(w, probs[:, j], y == j) for j in range(k)], axis=1)
            out[m] = _nanmean(aucs)
        elif parts[0] == "per_class" and len(parts) == 3:
            j = list(classes).index(parts[1])
            out[m] = {"precision": precision, "recall": recall, "f1": f1}[parts[2]][:, j]
        elif parts[0] == "operating_point" and len(parts) == 2:
            out[m] = _operating_point(w, y, probs, classes, threshold, positive_class)[parts[1]]
        else:
            raise ValueError(f"metric {m!r} cannot be recomputed from predictions")
    return out


def _nanmean(a: np.ndarray) -> np.ndarray:
    finite = np.isfinite(a)
    return _div(np.where(finite, a, 0.0).sum(axis=1), finite.sum(axis=1).astype(np.float64))


def _operating_point(
    w: np.ndarray,
    y: np.ndarray,
    probs: np.ndarray,
    classes: Sequence[str],
    threshold: float | None,
    positive_class: str | None,
) -> dict[str, np.ndarray]:
    if threshold is None or positive_class not in classes:
        nan = np.full(len(w), np.nan)
        return dict.fromkeys(OP_KEYS, nan)
    j = list(classes).index(positive_class)
    is_pos, says_pos = y == j, probs[:, j] >= threshold
    tp, fp = w @ (is_pos & says_pos), w @ (~is_pos & says_pos)
    fn, tn = w @ (is_pos & ~says_pos), w @ (~is_pos & ~says_pos)
    recall = _div(tp, tp + fn)
    precision = _div(tp, tp + fp)
    f1 = _div(2 * tp, 2 * tp + fp + fn)
    return {
        "recall": recall,
        "sensitivity": recall,
        "precision": precision,
        "f1": f1,
        "specificity": _div(tn, tn + fp),
    }


def point_values(
    y: np.ndarray,
    probs: np.ndarray,
    classes: Sequence[str],
    metrics: Sequence[str],
    threshold: float | None = None,
    positive_class: str | None = None,
) -> dict[str, float | None]:
    """The metrics on the full test set, to check that the predictions reproduce the record."""
    vals = evaluate(np.ones((1, len(y))), y, probs, classes, metrics, threshold, positive_class)
    return {m: (float(v[0]) if np.isfinite(v[0]) else None) for m, v in vals.items()}


def paired_interval(
    y: np.ndarray,
    runs: Sequence[tuple[np.ndarray, float | None]],
    classes: Sequence[str],
    metrics: Sequence[str],
    positive_class: str | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    groups: Sequence[Any] | np.ndarray | None = None,
) -> dict[str, Interval | None]:
    """Percentile interval of the seed-mean of each metric, all seeds scored on the same draws.

    ``runs`` holds ``(probs, threshold)`` per seed, rows aligned with ``y``. A draw where a metric
    is undefined for some seed (a class absent from the draw) is left out and counted; when more
    than a tenth of the draws are left out, no interval is given. ``groups`` resamples whole
    lesions (see ``draw_counts``).
    """
    w_all = draw_counts(len(y), n_boot, seed, groups)
    sums = {m: np.zeros(n_boot) for m in metrics}
    for lo in range(0, n_boot, CHUNK):
        chunk = w_all[lo : lo + CHUNK]
        for probs, threshold in runs:
            vals = evaluate(chunk, y, probs, classes, metrics, threshold, positive_class)
            for m in metrics:
                sums[m][lo : lo + CHUNK] += vals[m]
    alpha = (1 - level) / 2
    out: dict[str, Interval | None] = {}
    for m in metrics:
        mean = sums[m] / len(runs)
        ok = mean[np.isfinite(mean)]
        if len(ok) < max(10, MIN_DEFINED * n_boot):
            out[m] = None
            continue
        low, high = np.quantile(ok, [alpha, 1 - alpha])
        out[m] = Interval(low=float(low), high=float(high), n_boot_used=len(ok))
    return out
