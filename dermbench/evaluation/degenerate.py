"""Flags for results that are trivial, so that no one reads them as achievements.

A classifier that calls every image positive has recall 1 in every subgroup, hence "no recall
gap"; one that predicts the majority class for every image has a high accuracy. Such results are
flagged wherever they are reported (run record, ``dermbench show``, the audit, the leaderboard):

- ``all_positive`` / ``all_negative``: an operating point that calls at least ``1 - RATE`` (at
  most ``RATE``) of the images positive;
- ``f1_as_all_positive``: an operating point whose F1 is not distinguishable from the F1 of
  calling every image positive (``2p / (1 + p)`` at prevalence ``p``): the paired bootstrap
  interval of the difference, over the same resamples, reaches 0 or below;
- ``one_class``: argmax decisions that put at least ``1 - RATE`` of the images in one class.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dermbench.evaluation.resample import percentile_interval, resample_weights
from dermbench.evaluation.weighted import binary_rates, ones, ratio

RATE = 0.02
OPERATING_POINT_CODES = ("all_positive", "all_negative", "f1_as_all_positive")
N_BOOT = 1000


def _flag(code: str, message: str, **detail: Any) -> dict[str, Any]:
    return {"code": code, "message": message, **detail}


def rate_flags(positive_rate: float | None) -> list[dict[str, Any]]:
    """``all_positive`` or ``all_negative`` for a predicted-positive rate near 1 or 0."""
    if positive_rate is None:
        return []
    if positive_rate >= 1 - RATE:
        return [
            _flag(
                "all_positive", f"calls {positive_rate:.1%} of images positive", positive_rate=positive_rate
            )
        ]
    if positive_rate <= RATE:
        return [
            _flag(
                "all_negative", f"calls {positive_rate:.1%} of images positive", positive_rate=positive_rate
            )
        ]
    return []


def is_trivial(positive_rate: float | np.ndarray) -> bool | np.ndarray:
    """Whether a predicted-positive rate is one of a rule that needs no model."""
    return (positive_rate >= 1 - RATE) | (positive_rate <= RATE)


def operating_point_flags(
    actual: np.ndarray, decided: np.ndarray, groups: Any = None, seed: int = 0, n_boot: int = N_BOOT
) -> list[dict[str, Any]]:
    """Flags of one split's decisions against the truth (bool arrays)."""
    n = len(actual)
    if n == 0:
        return []
    point = {k: float(v[0]) for k, v in binary_rates(actual, decided, ones(n)).items()}
    flags = rate_flags(point["positive_rate"])
    if actual.any() and not flags:
        diff = _f1_minus_all_positive(actual, decided, groups, seed, n_boot)
        if diff.low is not None and diff.low <= 0:
            prevalence = float(actual.mean())
            flags.append(_flag(
                "f1_as_all_positive",
                f"F1 {point['f1']:.3f} is not distinguishable from calling every image positive "
                f"(F1 {2 * prevalence / (1 + prevalence):.3f}; difference interval [{diff.low:.3f}, {diff.high:.3f}])",
                difference=diff.to_dict(),
            ))  # fmt: skip
    return flags


def _f1_minus_all_positive(
    actual: np.ndarray, decided: np.ndarray, groups: Any, seed: int, n_boot: int
) -> Any:
    a = actual.astype(np.float64)
    values = []
    for w in resample_weights(len(a), n_boot, seed, groups):
        f1 = binary_rates(actual, decided, w)["f1"]
        p = ratio(w @ a, w.sum(axis=1))
        values.append(f1 - 2 * p / (1 + p))
    prevalence = a.mean()
    estimate = binary_rates(actual, decided, ones(len(a)))["f1"][0] - 2 * prevalence / (1 + prevalence)
    return percentile_interval(np.concatenate(values), 0.05, float(estimate))


def classifier_flags(pred: np.ndarray, classes: list[str]) -> list[dict[str, Any]]:
    """``one_class`` when argmax decisions put nearly every image in one class."""
    if not len(pred):
        return []
    counts = np.bincount(pred, minlength=len(classes))
    top = int(counts.argmax())
    share = counts[top] / len(pred)
    if share >= 1 - RATE:
        return [_flag("one_class", f"predicts {classes[top]} for {share:.1%} of images", share=float(share))]
    return []
