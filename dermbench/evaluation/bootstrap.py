"""Bootstrap intervals of the metrics, and paired comparisons over the same resamples.

Every function draws through :func:`~dermbench.evaluation.resample.resample_weights` (over
images, or over lesion groups when ``groups`` is given) and evaluates through
:func:`~dermbench.evaluation.weighted.evaluate`, the arithmetic the point estimate uses, so an
interval is always of the number it is printed beside.

- :func:`bootstrap_report`: intervals of METRICS paths on one split;
- :func:`bootstrap_ci`: the interval of any ``metric_fn(y, probs)``, one resample at a time;
- :func:`seed_mean_draws`: a leaderboard entry's seed-mean on each resample, all seeds scored on
  the same resampled cases (a paired bootstrap), and :func:`paired_difference`, the interval of
  the difference between two entries over those same resamples (significance).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from dermbench.errors import ConfigError, DataError
from dermbench.evaluation.metrics import check_inputs, check_threshold, positive_index
from dermbench.evaluation.resample import Interval, check_resampling, percentile_interval, resample_weights
from dermbench.evaluation.weighted import evaluate, ones, supported


def bootstrap_ci(
    y_true: np.ndarray,
    probs: np.ndarray,
    metric_fn: Callable[[np.ndarray, np.ndarray], float | None],
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    *,
    groups: Sequence[Any] | np.ndarray | None = None,
) -> Interval:
    """Percentile interval of ``metric_fn(y, probs)`` over resampled images (or ``groups``).

    Resamples where the metric returns None or NaN (undefined) are left out and counted.
    """
    y, p = np.asarray(y_true), np.asarray(probs)
    if len(p) != len(y):
        raise DataError(f"{len(y)} labels but {len(p)} rows of probabilities")
    check_resampling(len(y), n_boot, alpha)
    values = []
    for w in resample_weights(len(y), n_boot, seed, groups):
        for row in w:
            idx = np.repeat(np.arange(len(y)), row.astype(np.int64))
            v = metric_fn(y[idx], p[idx])
            values.append(np.nan if v is None else float(v))
    return percentile_interval(np.asarray(values), alpha)


def bootstrap_report(
    y_true: np.ndarray,
    probs: np.ndarray,
    classes: Sequence[str],
    metrics: Sequence[str] = ("macro_f1", "balanced_accuracy", "macro_auc"),
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    *,
    groups: Sequence[Any] | np.ndarray | None = None,
    positive_class: str | None = None,
    threshold: float | None = None,
) -> dict[str, dict[str, Any]]:
    """``{metric: interval}`` for METRICS paths, every resample evaluated at once."""
    y, p = check_inputs(y_true, probs, classes)
    check_resampling(len(y), n_boot, alpha)
    for m in metrics:
        if not supported(m, classes):
            raise ConfigError(f"metric {m!r} has no bootstrap (known: see docs/metrics.md)")
        if m.startswith("operating_point.") and (positive_class is None or threshold is None):
            raise ConfigError(f"bootstrap of {m!r} needs positive_class and a validation threshold")
    if positive_class is not None:
        positive_index(classes, positive_class)
    if threshold is not None:
        threshold = check_threshold(threshold)
    point = evaluate(ones(len(y)), y, p, classes, metrics, threshold, positive_class)
    draws: dict[str, list[np.ndarray]] = {m: [] for m in metrics}
    for w in resample_weights(len(y), n_boot, seed, groups):
        for m, v in evaluate(w, y, p, classes, metrics, threshold, positive_class).items():
            draws[m].append(v)
    return {
        m: percentile_interval(np.concatenate(draws[m]), alpha, _finite(point[m][0])).to_dict()
        for m in metrics
    }


def _finite(v: float) -> float | None:
    return None if np.isnan(v) else float(v)


def seed_mean_draws(
    y: np.ndarray,
    runs: Sequence[tuple[np.ndarray, float | None]],
    classes: Sequence[str],
    metrics: Sequence[str],
    positive_class: str | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    groups: Any = None,
) -> dict[str, np.ndarray]:
    """Per metric, ``(n_boot,)`` values of the mean over seeds, every seed on the same resamples.

    ``runs`` holds ``(probs, threshold)`` per seed, rows aligned with ``y``. Where a metric is
    undefined for any seed the draw is NaN (left out of intervals and counted there).
    """
    sums = {m: [] for m in metrics}
    for w in resample_weights(len(y), n_boot, seed, groups):
        chunk = {m: np.zeros(len(w)) for m in metrics}
        for probs, threshold in runs:
            for m, v in evaluate(w, y, probs, classes, metrics, threshold, positive_class).items():
                chunk[m] += v
        for m in metrics:
            sums[m].append(chunk[m] / len(runs))
    return {m: np.concatenate(v) for m, v in sums.items()}


def paired_difference(a: np.ndarray, b: np.ndarray, estimate: float, alpha: float = 0.05) -> Interval:
    """The interval of ``a - b`` over the same resamples (``a``, ``b`` from :func:`seed_mean_draws`)."""
    return percentile_interval(a - b, alpha, estimate)
