"""Scores of one split's predictions: the ``METRICS`` object of the run record.

Every number comes from the confusion matrix, the class probabilities and, for decision tasks,
a threshold chosen on validation. A metric that a split cannot define (a class absent from it,
an AUC with one class present, a precision with nothing predicted) is ``None`` with a reason in
``undefined``: a zero would read as a measured failure, and a crash would lose every other number.

The aggregate scores are written once, over a batch of weighted confusion matrices, so the point
estimate (all weights 1) and every bootstrap resample (weights = how often each image was drawn)
go through the same arithmetic. ``docs/metrics.md`` states each definition.

The recall-constrained operating point follows Rumale et al., "Recall-Oriented Deep Learning
Framework for Skin Cancer Detection with Explainability and Fairness Analysis": thresholds on the
validation set in steps of 0.02, ``t* = argmax_t F1(t)`` subject to ``Recall(t) >= gamma``.
The overfitting report (Table II of Matas et al.) is in :mod:`dermbench.evaluation.overfitting`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from dermbench.errors import ConfigError, DataError
from dermbench.evaluation.degenerate import is_trivial
from dermbench.evaluation.weighted import binary_rates, confusions, evaluate, ones

VECTORISED = ("accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "macro_auc")
OPERATING = ("recall", "precision", "f1", "sensitivity", "specificity")


# --- input checks ---------------------------------------------------------------------------


def check_inputs(y_true: Any, probs: Any, classes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Labels as int64 class indices and probabilities as float64, or a DataError saying why not."""
    y = np.asarray(y_true)
    p = np.asarray(probs, dtype=np.float64)
    k = len(classes)
    if y.ndim != 1:
        raise DataError(f"labels must be one class index per row, got an array of shape {y.shape}")
    if p.ndim != 2 or p.shape != (len(y), k):
        raise DataError(
            f"probabilities must have shape (rows, classes) = ({len(y)}, {k}) for classes "
            f"{list(classes)}, got {p.shape}"
        )
    integral = np.issubdtype(y.dtype, np.integer) or (
        np.issubdtype(y.dtype, np.floating) and bool(np.all(np.mod(y, 1) == 0))
    )
    if len(y) and not integral:
        raise DataError(f"labels must be class indices 0..{k - 1}, got values such as {y[0]!r}")
    y = y.astype(np.int64)
    bad = np.flatnonzero((y < 0) | (y >= k))
    if bad.size:
        raise DataError(f"label {int(y[bad[0]])} at row {int(bad[0])} is not a class index 0..{k - 1}")
    rows = np.flatnonzero(~np.isfinite(p).all(axis=1))
    if rows.size:
        raise DataError(f"probabilities at row {int(rows[0])} are not finite: {p[rows[0]].tolist()}")
    return y, p


def positive_index(classes: Sequence[str], positive_class: str) -> int:
    if positive_class not in classes:
        raise ConfigError(f"positive_class {positive_class!r} is not one of the classes {list(classes)}")
    return list(classes).index(positive_class)


def check_threshold(threshold: float) -> float:
    if not 0.0 <= float(threshold) <= 1.0:
        raise ConfigError(f"threshold {threshold!r} is outside [0, 1]")
    return float(threshold)


def _num(x: Any) -> float | None:
    """A plain float for JSON, or None where the metric is undefined (NaN)."""
    x = float(x)
    return None if math.isnan(x) else x


# --- the METRICS object ---------------------------------------------------------------------


def threshold_decisions(probs: np.ndarray, positive_index: int, threshold: float) -> np.ndarray:
    """Class decisions at an operating point: the positive class where ``p >= threshold``, else the
    most probable of the other classes (a triage rule: below threshold the case is not priority 1,
    and the remaining classes compete as usual)."""
    p = np.asarray(probs, dtype=np.float64)
    others = p.copy()
    others[:, positive_index] = -np.inf
    return np.where(p[:, positive_index] >= threshold, positive_index, others.argmax(axis=1))


def operating_point(
    y_true: np.ndarray,
    probs: np.ndarray,
    classes: Sequence[str],
    positive_class: str,
    threshold: float,
    *,
    recall_constraint: float | None = None,
    feasible: bool | None = None,
) -> dict[str, Any]:
    """One-vs-rest counts and rates of ``positive_class`` at a fixed threshold.

    ``feasible`` is a property of the validation choice (did any grid threshold meet the
    constraint there), so the caller passes it through; it is not recomputed on this split.
    """
    y, p = check_inputs(y_true, probs, classes)
    pos = positive_index(classes, positive_class)
    t = check_threshold(threshold)
    values = {name: v[0] for name, v in binary_rates(y == pos, p[:, pos] >= t, ones(len(y))).items()}
    why = {
        "recall": f"no {positive_class} cases in split",
        "precision": f"no case decided {positive_class} at threshold {t}",
        "f1": f"no {positive_class} cases and none decided",
        "specificity": f"no cases other than {positive_class} in split",
    }
    why["sensitivity"] = why["recall"]
    return {
        "positive_class": positive_class,
        "recall_constraint": None if recall_constraint is None else float(recall_constraint),
        "threshold": t,
        "feasible": None if feasible is None else bool(feasible),
        **{name: _num(values[name]) for name in OPERATING},
        **{name: int(values[name]) for name in ("tp", "fp", "tn", "fn")},
        "positive_rate": _num(values["positive_rate"]),
        "undefined": {name: why[name] for name in OPERATING if math.isnan(values[name])},
    }


def _per_class(
    counts: np.ndarray, classes: Sequence[str], undefined: dict[str, str]
) -> dict[str, dict[str, Any]]:
    """Precision, recall, F1 and support of each class from one confusion matrix of counts."""
    per_class: dict[str, dict[str, Any]] = {}
    for c, name in enumerate(classes):
        tp, support, predicted = counts[c, c], counts[c].sum(), counts[:, c].sum()
        entry: dict[str, Any] = {"precision": None, "recall": None, "f1": None, "support": int(support)}
        if predicted:
            entry["precision"] = float(tp / predicted)
        else:
            undefined[f"per_class.{name}.precision"] = f"class {name} never predicted"
        if support:
            entry["recall"] = float(tp / support)
            entry["f1"] = float(2 * tp / (support + predicted))
        else:
            why = f"class {name} absent from split"
            undefined[f"per_class.{name}.recall"] = why
            undefined[f"per_class.{name}.f1"] = why
        per_class[name] = entry
    return per_class


def classification_report(
    y_true: np.ndarray,
    probs: np.ndarray,
    classes: Sequence[str],
    *,
    positive_class: str | None = None,
    recall_constraint: float | None = None,
    threshold: float | None = None,
    feasible: bool | None = None,
) -> dict[str, Any]:
    """The ``METRICS`` object of ``docs/run-record.md`` for one split (argmax decisions).

    ``operating_point`` is filled when both ``positive_class`` and ``threshold`` are given; the
    threshold must come from validation (:func:`choose_threshold`), never from this split.
    """
    y, p = check_inputs(y_true, probs, classes)
    w = ones(len(y))
    scores = {name: _num(v[0]) for name, v in evaluate(w, y, p, classes, (*VECTORISED, "brier")).items()}
    undefined: dict[str, str] = {}
    if not len(y):
        undefined.update({name: "empty split" for name in scores})
    elif scores["macro_auc"] is None:
        only = [classes[c] for c in np.unique(y)]
        undefined["macro_auc"] = f"only class {only[0]} present in split (one-vs-rest AUC needs >= 2)"
    pred = p.argmax(axis=1) if len(y) else np.zeros(0, dtype=np.int64)
    counts = confusions(y, pred, len(classes), w)[0].astype(np.int64)
    op = None
    if positive_class is not None and threshold is not None:
        settings = {"recall_constraint": recall_constraint, "feasible": feasible}
        op = operating_point(y, p, classes, positive_class, threshold, **settings)
        undefined.update({f"operating_point.{m}": why for m, why in op["undefined"].items()})
    elif positive_class is not None:
        positive_index(classes, positive_class)
        undefined["operating_point"] = "no threshold chosen on validation"
    return {
        "n": len(y),
        **{name: scores[name] for name in VECTORISED},
        "brier": scores["brier"],
        "per_class": _per_class(counts, classes, undefined),
        "confusion_matrix": counts.tolist(),
        "operating_point": op,
        "undefined": undefined,
    }


def resolve_metric(metrics: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path such as ``"operating_point.f1"`` or ``"per_class.mel.recall"``.

    A ``None`` on the way (no operating point on this task) gives ``None``; a name that is not
    there is a ConfigError, since it is a typo rather than an undefined metric. Keys that contain
    dots themselves are matched longest first.
    """
    parts = path.split(".")
    node: Any = metrics
    i = 0
    while i < len(parts):
        if node is None:
            return None
        if not isinstance(node, Mapping):
            raise ConfigError(f"metric {path!r}: {'.'.join(parts[:i])} is a value, not a group")
        for j in range(len(parts), i, -1):
            key = ".".join(parts[i:j])
            if key in node:
                node, i = node[key], j
                break
        else:
            known = ", ".join(sorted(map(str, node))) or "none"
            raise ConfigError(f"unknown metric {path!r}: no {parts[i]!r} (known here: {known})")
    return node


# --- the recall-constrained threshold (Rumale et al.) ---------------------------------------


def threshold_grid(step: float = 0.02) -> np.ndarray:
    """Thresholds ``step, 2*step, ...`` strictly between 0 and 1.

    0 and 1 are left out: ``p >= 0`` refers every case and ``p >= 1`` almost none, rules that
    need no model, and the paper's grid is of thresholds a classifier actually makes.
    """
    if not 0.0 < step < 0.5:
        raise ConfigError(f"threshold grid step {step!r} must lie in (0, 0.5)")
    k = np.arange(1, int(math.ceil(1.0 / step)) + 1)
    grid = np.round(k * step, 10)
    return grid[grid < 1.0]


def choose_threshold(
    y_true: np.ndarray,
    probs: np.ndarray,
    classes: Sequence[str],
    positive_class: str,
    recall_constraint: float | None,
    step: float = 0.02,
    exclude_trivial: bool = False,
) -> dict[str, Any]:
    """``t* = argmax_t F1(t)`` subject to ``Recall(t) >= gamma`` on VALIDATION predictions.

    ``exclude_trivial`` leaves out thresholds that call (nearly) every or no image positive
    (:func:`dermbench.evaluation.degenerate.is_trivial`), as recalibration must.

    Ties in F1 go to the lowest threshold, i.e. the highest recall among equally good F1: in
    screening a missed malignancy costs more than a false alarm. If no threshold meets the
    constraint, the lowest grid threshold (the highest recall on offer) with ``feasible`` False.
    ``recall_constraint=None`` is plain F1 maximisation. With no positive case in the split no
    threshold can be chosen: ``threshold`` is None and ``reason`` says why.
    """
    y, p = check_inputs(y_true, probs, classes)
    pos = positive_index(classes, positive_class)
    if recall_constraint is not None and not 0.0 < recall_constraint <= 1.0:
        raise ConfigError(f"recall_constraint {recall_constraint!r} must lie in (0, 1]")
    grid = threshold_grid(step)
    actual = y == pos
    n_pos = int(actual.sum())
    result: dict[str, Any] = {"threshold": None, "feasible": False, "val_recall": None, "val_f1": None}
    result.update(grid=float(step), reason=None if n_pos else f"validation has no {positive_class} cases")
    if n_pos == 0:
        return result
    decided = p[:, pos][:, None] >= grid[None, :]
    tp = (decided & actual[:, None]).sum(axis=0)
    fp = decided.sum(axis=0) - tp
    recall = tp / n_pos
    f1 = 2 * tp / (2 * tp + fp + (n_pos - tp))
    allowed = ~is_trivial(decided.mean(axis=0)) if exclude_trivial else np.ones(len(grid), dtype=bool)
    if not allowed.any():
        result["reason"] = "every grid threshold calls (nearly) all or no images positive on validation"
        return result
    ok = allowed & (True if recall_constraint is None else recall >= recall_constraint)
    best = int(np.flatnonzero(ok)[np.argmax(f1[ok])]) if ok.any() else int(np.flatnonzero(allowed)[0])
    if not ok.any():
        result["reason"] = (
            f"no threshold reaches recall {recall_constraint} on validation (best {recall[allowed][0]:.4f})"
        )
    result.update(threshold=float(grid[best]), feasible=bool(ok.any()))
    result.update(val_recall=float(recall[best]), val_f1=float(f1[best]))
    return result
