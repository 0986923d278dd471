"""Threshold-free screening metrics of the positive class, as the field reports them.

- ``auc``: ROC AUC of p(positive);
- ``auc_above_sensitivity``: the ISIC challenges' "AUC, Sens > 80%": the raw (not McClish
  normalised) area under the ROC curve where sensitivity >= 0.80, integrated over the false
  positive rate, with a point interpolated at exactly 0.80 (ISIC scoring code's definition);
- ``sensitivity_at_specificity``: the highest sensitivity of any threshold whose specificity is
  at least the target, and ``specificity_at_sensitivity`` the reverse.

These points are read off the split's own ROC curve: they describe what the scores can do, not
an operating point chosen in advance (that is ``operating_point``, chosen on validation).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import auc, roc_curve

SENSITIVITY_FLOOR = 0.80  # ISIC's partial AUC
SPECIFICITY_TARGETS = (0.90, 0.95)
SENSITIVITY_TARGETS = (0.85, 0.95)


def auc_above_sensitivity(fpr: np.ndarray, tpr: np.ndarray, floor: float = SENSITIVITY_FLOOR) -> float:
    i = int(np.searchsorted(tpr, floor, side="left"))
    at = np.interp(floor, tpr[max(i - 1, 0) : i + 1], fpr[max(i - 1, 0) : i + 1])
    return float(auc(np.r_[at, fpr[i:]], np.r_[floor, tpr[i:]]))


def screening_report(actual: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    """The metrics above for truth ``actual`` (bool) and scores ``p(positive)``; None if undefined."""
    n_pos = int(actual.sum())
    if n_pos == 0 or n_pos == len(actual):
        why = "needs both positive and negative cases"
        return {"auc": None, "undefined": why}
    fpr, tpr, _ = roc_curve(actual, scores, drop_intermediate=False)
    spec = 1.0 - fpr
    return {
        "auc": float(auc(fpr, tpr)),
        "auc_above_sensitivity": {f"{SENSITIVITY_FLOOR:.2f}": auc_above_sensitivity(fpr, tpr)},
        "sensitivity_at_specificity": {
            f"{s:.2f}": float(tpr[spec >= s - 1e-12].max()) for s in SPECIFICITY_TARGETS
        },
        "specificity_at_sensitivity": {
            f"{s:.2f}": float(spec[tpr >= s - 1e-12].max()) for s in SENSITIVITY_TARGETS
        },
    }
