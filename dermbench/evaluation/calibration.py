"""Calibration: expected calibration error (ECE) and the reliability diagram behind it.

Top-label ECE with 15 equal-width confidence bins (Guo et al., "On Calibration of Modern Neural
Networks", ICML 2017), computed by torchmetrics' ``multiclass_calibration_error``; the diagram's
bins (mean confidence, accuracy and share of cases per bin) come from the same torchmetrics
binning, so the plotted bins and the reported ECE cannot disagree. The Brier score is in
:mod:`dermbench.evaluation.weighted` with the other metrics.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torchmetrics.functional.classification import multiclass_calibration_error
from torchmetrics.functional.classification.calibration_error import (
    _binning_bucketize,
    _multiclass_calibration_error_update,
)

N_BINS = 15


def calibration_report(y: np.ndarray, probs: np.ndarray, n_bins: int = N_BINS) -> dict[str, Any]:
    """``{"ece", "n_bins", "bins": [{"low", "high", "confidence", "accuracy", "fraction"}]}``.

    ECE is undefined (None) on an empty split; bins without a case are left out of ``bins``.
    """
    if not len(y):
        return {"ece": None, "n_bins": n_bins, "bins": [], "undefined": "empty split"}
    preds = torch.as_tensor(np.asarray(probs, dtype=np.float64))
    target = torch.as_tensor(np.asarray(y, dtype=np.int64))
    k = preds.shape[1]
    ece = multiclass_calibration_error(preds, target, num_classes=k, n_bins=n_bins, norm="l1")
    confidences, accuracies = _multiclass_calibration_error_update(preds, target)
    bounds = torch.linspace(0, 1, n_bins + 1, dtype=confidences.dtype)
    acc, conf, frac = _binning_bucketize(confidences, accuracies, bounds)
    bins = [
        {"low": float(bounds[i]), "high": float(bounds[i + 1]), "confidence": float(conf[i]),
         "accuracy": float(acc[i]), "fraction": float(frac[i])}
        for i in range(n_bins) if frac[i] > 0
    ]  # fmt: skip
    return {"ece": float(ece), "n_bins": n_bins, "bins": bins}
