"""Bootstrap confidence intervals of the metrics in :mod:`dermbench.evaluation.metrics`.

Percentile bootstrap over images, or over lesion groups when ``groups`` is given (a lesion's
images are resampled together), vectorised in chunks so 1000 resamples of a few thousand rows
take well under a second.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from dermbench.errors import ConfigError, DataError
from dermbench.evaluation.metrics import (
    _CHUNK_CELLS,
    _auc_ovr,
    _check,
    _check_threshold,
    _confusions,
    _macro_auc,
    _op_rates,
    _positive_index,
    _scores,
    classification_report,
    resolve_metric,
)


class Interval(tuple):
    """``(low, high)`` that also says how many resamples defined the metric (``n_boot_used``)."""

    def __new__(cls, low: float | None, high: float | None, n_boot_used: int) -> Interval:
        self = super().__new__(cls, (low, high))
        self.n_boot_used = n_boot_used
        return self

    @property
    def low(self) -> float | None:
        return self[0]

    @property
    def high(self) -> float | None:
        return self[1]


def _resamples(n: int, n_boot: int, seed: int, groups: Any) -> Iterator[tuple[np.ndarray, Callable]]:
    """Chunks of resample weights ``(chunk, n)`` (how often each row was drawn) and a function
    giving, per resample, the row indices drawn (for metrics computed one resample at a time).

    With ``groups`` whole groups (e.g. all images of one lesion) are drawn with replacement, so
    near-duplicate images never make an interval look tighter than the number of lesions allows.
    """
    rng = np.random.default_rng(seed)
    if groups is None:
        members, units = None, n
    else:
        g = np.asarray(groups)
        if len(g) != n:
            raise DataError(f"groups has {len(g)} entries for {n} rows")
        _, inverse = np.unique(g, return_inverse=True)
        units = int(inverse.max()) + 1
        split = np.split(np.argsort(inverse, kind="stable"), np.cumsum(np.bincount(inverse))[:-1])
        members = np.empty(units, dtype=object)
        members[:] = split
    chunk = max(1, _CHUNK_CELLS // max(n, 1))
    done = 0
    while done < n_boot:
        b = min(chunk, n_boot - done)
        draw = rng.integers(0, units, size=(b, units))
        counts = np.bincount((draw + units * np.arange(b)[:, None]).ravel(), minlength=b * units)
        counts = counts.reshape(b, units).astype(np.float64)
        if members is None:
            yield counts, lambda draw=draw: iter(draw)
        else:
            yield counts[:, inverse], lambda draw=draw: (np.concatenate(members[row]) for row in draw)
        done += b


def _interval(values: np.ndarray, alpha: float) -> Interval:
    used = values[~np.isnan(values)]
    if not used.size:
        return Interval(None, None, 0)
    low, high = np.percentile(used, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return Interval(float(low), float(high), int(used.size))


def _check_boot(n: int, n_boot: int, alpha: float) -> None:
    if n == 0:
        raise DataError("cannot bootstrap an empty split")
    if n_boot < 1:
        raise ConfigError(f"n_boot must be >= 1, got {n_boot}")
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"alpha must lie in (0, 1), got {alpha}")


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
    """Percentile bootstrap interval of ``metric_fn(y, probs)`` over images (or ``groups``).

    Resamples where the metric returns None or NaN (undefined) are skipped; the result's
    ``n_boot_used`` says how many were kept.
    """
    y, p = np.asarray(y_true), np.asarray(probs)
    if len(p) != len(y):
        raise DataError(f"{len(y)} labels but {len(p)} rows of probabilities")
    _check_boot(len(y), n_boot, alpha)
    values = []
    for _, rows in _resamples(len(y), n_boot, seed, groups):
        for idx in rows():
            v = metric_fn(y[idx], p[idx])
            values.append(np.nan if v is None else float(v))
    return _interval(np.asarray(values), alpha)


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
    """``{metric: {"low", "high", "n_boot_used"}}`` for paths of the METRICS object.

    The aggregate scores and ``operating_point.<rate>`` are computed for all resamples at once
    from weighted confusion counts; any other path (e.g. ``per_class.mel.recall``) goes through
    :func:`classification_report` per resample. Same seed, same resamples as :func:`bootstrap_ci`.
    """
    y, p = _check(y_true, probs, classes)
    _check_boot(len(y), n_boot, alpha)
    k = len(classes)
    pos = None if positive_class is None else _positive_index(classes, positive_class)
    for m in metrics:
        if m.startswith("operating_point.") and (pos is None or threshold is None):
            raise ConfigError(f"bootstrap of {m!r} needs positive_class and a validation threshold")
    pred = p.argmax(axis=1)
    if threshold is not None:
        threshold = _check_threshold(threshold)
    values: dict[str, list[np.ndarray]] = {m: [] for m in metrics}
    for weights, rows in _resamples(len(y), n_boot, seed, groups):
        cm = _confusions(y, pred, k, weights)
        batch = _scores(cm)
        if "macro_auc" in metrics:
            batch["macro_auc"] = _macro_auc(_auc_ovr(y, p, weights), cm.sum(axis=2))
        if pos is not None and threshold is not None:
            rates = _op_rates(y, p, pos, threshold, weights)
            batch.update({f"operating_point.{r}": v for r, v in rates.items()})
        for m in metrics:
            if m in batch:
                values[m].append(batch[m])
                continue
            settings = {"positive_class": positive_class, "threshold": threshold}
            one = [resolve_metric(classification_report(y[i], p[i], classes, **settings), m) for i in rows()]
            values[m].append(np.array([np.nan if v is None else v for v in one], dtype=np.float64))
    out = {}
    for m in metrics:
        ci = _interval(np.concatenate(values[m]), alpha)
        out[m] = {"low": ci.low, "high": ci.high, "n_boot_used": ci.n_boot_used}
    return out
