"""Every metric as arithmetic on case weights: the one implementation behind every number.

A row of ``weights`` says how often each case counts: all ones for the point estimate, how often
each case was drawn for a bootstrap resample. So the run record, the subgroup audit, every
interval and the leaderboard's significance marks go through the same functions, vectorised over
resamples (``weights`` has shape ``(resamples, cases)``). Undefined values are NaN here; the
callers turn them into ``None`` with a reason. Definitions: ``docs/metrics.md``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

AGGREGATE = ("accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "macro_auc", "brier")
CLASS_KEYS = ("precision", "recall", "f1")
RATES = ("recall", "sensitivity", "precision", "f1", "specificity", "fnr", "positive_rate")
COUNTS = ("tp", "fp", "tn", "fn")


def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` with NaN where ``den`` is 0 (an undefined rate, never a zero)."""
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def ones(n: int) -> np.ndarray:
    """The weights of the point estimate: every case once."""
    return np.ones((1, n))


# --- multi-class, from weighted confusion matrices ------------------------------------------------


def confusions(y: np.ndarray, pred: np.ndarray, k: int, weights: np.ndarray) -> np.ndarray:
    """``cm[b, true, predicted]``: weighted confusion matrices, one per row of ``weights``."""
    cells = np.zeros((len(y), k * k))
    cells[np.arange(len(y)), y * k + pred] = 1.0
    return (weights @ cells).reshape(-1, k, k)


def class_scores(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class precision, recall and F1 ``(b, k)``, and the support and predicted counts."""
    tp = np.diagonal(cm, axis1=1, axis2=2)
    support, predicted = cm.sum(axis=2), cm.sum(axis=1)
    return {
        "precision": ratio(tp, predicted),
        "recall": ratio(tp, support),
        "f1": ratio(2 * tp, support + predicted),
        "support": support,
        "predicted": predicted,
        "tp": tp,
    }


def aggregate_scores(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy, balanced accuracy and macro/weighted F1 of each confusion matrix; NaN if undefined.

    Macro-F1 averages over the classes present in the labels or the predictions (scikit-learn's
    ``f1_score(average="macro")``); balanced accuracy over the classes present in the labels.
    """
    c = class_scores(cm)
    support, n = c["support"], c["support"].sum(axis=1)
    present, seen = support > 0, (support + c["predicted"]) > 0
    return {
        "accuracy": ratio(c["tp"].sum(axis=1), n),
        "balanced_accuracy": ratio(np.where(present, c["recall"], 0).sum(axis=1), present.sum(axis=1)),
        "macro_f1": ratio(np.where(seen, c["f1"], 0).sum(axis=1), seen.sum(axis=1)),
        "weighted_f1": ratio(np.where(present, c["f1"] * support, 0).sum(axis=1), n),
    }


# --- scores: ROC AUC and the Brier score ----------------------------------------------------------


def weighted_auc(scores: np.ndarray, positive: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC AUC for each row of ``weights``: P(score_pos > score_neg) + 0.5 P(tie); NaN without both.

    The Mann-Whitney form over the weighted sample, which equals the trapezoidal ROC area of the
    sample with each case repeated ``weight`` times.
    """
    if not len(scores):
        return np.full(len(weights), np.nan)
    order = np.argsort(scores, kind="mergesort")
    s = scores[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    w = weights[:, order]
    pos = positive[order].astype(np.float64)
    gp = np.add.reduceat(w * pos, starts, axis=1)
    gn = np.add.reduceat(w * (1.0 - pos), starts, axis=1)
    below = np.cumsum(gn, axis=1) - gn
    return ratio((gp * (below + 0.5 * gn)).sum(axis=1), gp.sum(axis=1) * gn.sum(axis=1))


def macro_auc(y: np.ndarray, probs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Mean one-vs-rest AUC over the classes present in the (weighted) labels; NaN if fewer than two."""
    k = probs.shape[1]
    aucs = np.stack([weighted_auc(probs[:, c], y == c, weights) for c in range(k)], axis=1)
    present = np.stack([weights @ (y == c).astype(np.float64) for c in range(k)], axis=1) > 0
    total = np.where(present, np.nan_to_num(aucs), 0).sum(axis=1)
    return np.where(present.sum(axis=1) >= 2, total / np.maximum(present.sum(axis=1), 1), np.nan)


def brier(y: np.ndarray, probs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Multi-class Brier score: the mean over cases of ``sum_j (p_j - [y = j])^2`` (lower is better)."""
    onehot = np.zeros_like(probs)
    onehot[np.arange(len(y)), y] = 1.0
    per_case = ((probs - onehot) ** 2).sum(axis=1)
    return ratio(weights @ per_case, weights.sum(axis=1))


# --- one-vs-rest decisions at a threshold ------------------------------------------------------------


def binary_rates(actual: np.ndarray, decided: np.ndarray, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Weighted tp/fp/tn/fn and the rates of decisions ``decided`` against truth ``actual``."""
    a, d = actual.astype(np.float64), decided.astype(np.float64)
    tp, fp = weights @ (a * d), weights @ ((1 - a) * d)
    fn, tn = weights @ (a * (1 - d)), weights @ ((1 - a) * (1 - d))
    recall = ratio(tp, tp + fn)
    return {
        "recall": recall,
        "sensitivity": recall,
        "precision": ratio(tp, tp + fp),
        "f1": ratio(2 * tp, 2 * tp + fp + fn),
        "specificity": ratio(tn, tn + fp),
        "fnr": 1.0 - recall,
        "positive_rate": ratio(tp + fp, tp + fp + tn + fn),
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
    }


# --- by name ------------------------------------------------------------------------------------------


def supported(metric: str, classes: Sequence[str]) -> bool:
    """Whether ``metric`` (a dotted METRICS path) is computed here from labels and probabilities."""
    parts = metric.split(".")
    if metric in AGGREGATE:
        return True
    if len(parts) == 2 and parts[0] == "operating_point":
        return parts[1] in RATES + COUNTS
    return len(parts) == 3 and parts[0] == "per_class" and parts[1] in classes and parts[2] in CLASS_KEYS


def evaluate(
    weights: np.ndarray,
    y: np.ndarray,
    probs: np.ndarray,
    classes: Sequence[str],
    metrics: Sequence[str],
    threshold: float | None = None,
    positive_class: str | None = None,
) -> dict[str, np.ndarray]:
    """Each named metric for each row of ``weights``: ``{metric: array of len(weights)}``.

    Argmax decisions for the aggregate and per-class scores; ``operating_point.*`` decides the
    positive class where ``p(positive) >= threshold`` (NaN without a threshold).
    """
    k = len(classes)
    pred = probs.argmax(axis=1) if len(y) else np.zeros(0, dtype=np.int64)
    cm = (
        confusions(y, pred, k, weights)
        if any(m.split(".")[0] in ("per_class", *AGGREGATE[:4]) for m in metrics)
        else None
    )
    out: dict[str, np.ndarray] = {}
    agg = aggregate_scores(cm) if cm is not None else {}
    per = class_scores(cm) if cm is not None else {}
    op = _operating_rates(weights, y, probs, classes, threshold, positive_class, metrics)
    for m in metrics:
        parts = m.split(".")
        if m in agg:
            out[m] = agg[m]
        elif m == "macro_auc":
            out[m] = macro_auc(y, probs, weights)
        elif m == "brier":
            out[m] = brier(y, probs, weights)
        elif parts[0] == "per_class" and len(parts) == 3 and parts[2] in CLASS_KEYS:
            out[m] = per[parts[2]][:, list(classes).index(parts[1])]
        elif parts[0] == "operating_point" and len(parts) == 2 and parts[1] in op:
            out[m] = op[parts[1]]
        else:
            raise ValueError(f"metric {m!r} cannot be computed from predictions")
    return out


def _operating_rates(weights, y, probs, classes, threshold, positive_class, metrics) -> dict[str, np.ndarray]:
    if not any(m.startswith("operating_point.") for m in metrics):
        return {}
    if threshold is None or positive_class not in classes:
        return dict.fromkeys(RATES + COUNTS, np.full(len(weights), np.nan))
    j = list(classes).index(positive_class)
    return binary_rates(y == j, probs[:, j] >= threshold, weights)
