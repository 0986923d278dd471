"""The ISIC challenge's own metric set, computed as its official scorer computes it.

ISIC 2018 Task 3 (Codella et al., "Skin Lesion Analysis Toward Melanoma Detection 2018: A Challenge
Hosted by the International Skin Imaging Collaboration (ISIC)", arXiv:1902.03368, 2019) ranks
entries by balanced multi-class accuracy and reports, per diagnostic category, one-vs-rest scores.
The scorer is the ``isic-challenge-scoring`` package (``isic_challenge_scoring/metrics.py``); this
module follows it line by line, so dermbench's numbers on ISIC data are the challenge's:

- **balanced accuracy**: the argmax label of each row, a row whose maximum is shared by two
  categories is "undecided" (wrong for every category); the mean over the categories present in
  the labels of (correct / in that category). Equal to :mod:`dermbench.evaluation.weighted`'s
  balanced accuracy whenever no row ties.
- **per category**, with a category's probability > 0.5 as its binary decision: accuracy,
  sensitivity, specificity, Dice, PPV, NPV (an undefined one, 0/0, is 1.0 as the scorer scores
  it), ROC AUC (the core's implementation, equal to scikit-learn's), the ROC area above 80%
  sensitivity (the screening metrics' implementation: the raw area, not McClish-normalised), and average precision (scikit-learn's).
- **macro average**: the mean of each per-category score over the categories.

Case weights: the scorer weighs each ground-truth row by its ``score_weight``; dermbench's
ISIC adapter leaves out the rows of weight 0 (it accepts no other weight than 0 and 1), so here
every case counts once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, roc_curve

from dermbench.evaluation.screening import SENSITIVITY_FLOOR, auc_above_sensitivity
from dermbench.evaluation.weighted import ones, weighted_auc

NAME = "isic"
CATEGORY_SCORES = ("accuracy", "sensitivity", "specificity", "dice", "ppv", "npv", "auc", "auc_sens_80", "ap")


def _undecided_labels(probs: np.ndarray) -> np.ndarray:
    """Argmax per row; -1 where the maximum is shared (the scorer's "undecided")."""
    labels = probs.argmax(axis=1)
    ties = (probs == probs.max(axis=1, keepdims=True)).sum(axis=1) > 1
    return np.where(ties, -1, labels)


def balanced_accuracy(y: np.ndarray, probs: np.ndarray) -> float:
    """Mean over the categories present in ``y`` of the share of their rows labelled correctly."""
    pred = _undecided_labels(probs)
    present = np.unique(y)
    return float(np.mean([(pred[y == c] == c).mean() for c in present])) if len(present) else float("nan")


def _freebie(num: float, den: float) -> float:
    """The scorer's rule for a rate with an empty denominator: 1.0."""
    return 1.0 if den == 0 else float(num / den)


def area_above_sensitivity(actual: np.ndarray, scores: np.ndarray) -> float:
    """The ROC area where TPR >= 0.80, on the curve with every threshold kept (the scorer's)."""
    fpr, tpr, _ = roc_curve(actual, scores, drop_intermediate=False)
    return auc_above_sensitivity(fpr, tpr, SENSITIVITY_FLOOR)


def category_scores(actual: np.ndarray, scores: np.ndarray) -> dict[str, float | None]:
    """One category's scores: decisions at p > 0.5, and the threshold-free areas (None with one class)."""
    decided = scores > 0.5
    tp, fp = float(np.sum(actual & decided)), float(np.sum(~actual & decided))
    fn, tn = float(np.sum(actual & ~decided)), float(np.sum(~actual & ~decided))
    both = 0 < actual.sum() < len(actual)
    return {
        "accuracy": _freebie(tp + tn, tp + tn + fp + fn),
        "sensitivity": _freebie(tp, tp + fn),
        "specificity": _freebie(tn, tn + fp),
        "dice": _freebie(2 * tp, 2 * tp + fp + fn),
        "ppv": _freebie(tp, tp + fp),
        "npv": _freebie(tn, tn + fn),
        "auc": float(weighted_auc(scores, actual, ones(len(actual)))[0]) if both else None,
        "auc_sens_80": area_above_sensitivity(actual, scores) if both else None,
        "ap": float(average_precision_score(actual, scores)) if both else None,
    }


def challenge_report(y: np.ndarray, probs: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """The ISIC metric set of one split: primary balanced accuracy, per-category and macro scores."""
    y, probs = np.asarray(y), np.asarray(probs, dtype=np.float64)
    per = {name: category_scores(y == c, probs[:, c]) for c, name in enumerate(classes)}
    macro = {}
    for key in CATEGORY_SCORES:
        values = [per[c][key] for c in classes]
        macro[key] = None if any(v is None for v in values) else float(np.mean(values))
    undefined = {
        f"per_category.{c}.{key}": f"category {c} is all positive or all negative in this split"
        for c in classes
        for key in ("auc", "auc_sens_80", "ap")
        if per[c][key] is None
    }
    return {
        "name": NAME,
        "primary": "balanced_accuracy",
        "balanced_accuracy": balanced_accuracy(y, probs) if len(y) else None,
        "per_category": per,
        "macro_average": macro,
        "n": int(len(y)),
        "undefined": undefined,
    }
