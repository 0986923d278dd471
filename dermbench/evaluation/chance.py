"""What a model that learned nothing scores: the chance baselines of every split, and the flag of
a result that is not above them.

Two rules that need no image, both fitted on the training split's labels alone (scikit-learn's
``DummyClassifier`` strategies of the same names):

- ``majority``: every image gets the training class shares as its probabilities, so its argmax is
  the training majority class and its scores carry no ranking (AUC 0.5);
- ``stratified``: every image gets one class drawn at random from the training class shares
  (one-hot probabilities, a fixed seed, so the baseline is reproducible).

Each is scored on the task's metrics by the arithmetic every other number uses
(:func:`dermbench.evaluation.weighted.evaluate`); where the task has a positive class, its
threshold is chosen on the baseline's own validation probabilities under the task's recall
constraint, as a model's is. ``no_better_than_chance``: the model's primary metric minus the
better baseline's, over the same (lesion-grouped) bootstrap resamples, has an interval that
reaches 0 or below.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from dermbench.evaluation.metrics import choose_threshold
from dermbench.evaluation.resample import percentile_interval, resample_weights
from dermbench.evaluation.weighted import AGGREGATE, CLASS_KEYS, RATES, evaluate, ones, supported

RULES = ("majority", "stratified")
SEED = 0
N_BOOT = 1000
CODE = "no_better_than_chance"


def class_shares(y_train: np.ndarray, k: int) -> np.ndarray:
    """The training split's class shares (the only thing either rule knows)."""
    counts = np.bincount(np.asarray(y_train, dtype=np.int64), minlength=k).astype(np.float64)
    return counts / counts.sum() if counts.sum() else np.full(k, 1.0 / k)


def baseline_probs(rule: str, shares: np.ndarray, n: int, seed: int = SEED) -> np.ndarray:
    """``(n, k)`` probabilities of ``rule`` for ``n`` images."""
    k = len(shares)
    if rule == "majority":
        return np.tile(shares, (n, 1))
    if rule == "stratified":
        draw = np.random.default_rng(seed).choice(k, size=n, p=shares)
        return np.eye(k)[draw]
    raise ValueError(f"unknown chance rule {rule!r} (known: {', '.join(RULES)})")


def metric_names(classes: Sequence[str], with_threshold: bool) -> list[str]:
    """The METRICS paths a baseline is scored on: aggregates, per-class scores, operating point."""
    names = [m for m in AGGREGATE if m != "brier"]
    names += [f"per_class.{c}.{key}" for c in classes for key in CLASS_KEYS]
    if with_threshold:
        names += [f"operating_point.{r}" for r in RATES]
    return names


def nest(flat: dict[str, float]) -> dict[str, Any]:
    """``{"a.b": v}`` -> ``{"a": {"b": v}}``, NaN as None, so baselines read like METRICS."""
    out: dict[str, Any] = {}
    for path, v in flat.items():
        *parents, leaf = path.split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = None if np.isnan(v) else float(v)
    return out


def baseline_threshold(
    rule: str, shares: np.ndarray, val_y: np.ndarray, classes: Sequence[str], positive_class: str | None,
    recall_constraint: float | None,
) -> float | None:  # fmt: skip
    """The rule's operating threshold, chosen on its own validation probabilities."""
    if positive_class is None or not len(val_y):
        return None
    probs = baseline_probs(rule, shares, len(val_y))
    return choose_threshold(val_y, probs, classes, positive_class, recall_constraint)["threshold"]


def chance_report(
    y: np.ndarray, shares: np.ndarray, classes: Sequence[str], thresholds: dict[str, float | None],
    positive_class: str | None,
) -> dict[str, Any]:  # fmt: skip
    """One split's ``chance`` object: each rule's threshold and metrics, and what they came from."""
    out: dict[str, Any] = {
        "class_shares": {c: float(s) for c, s in zip(classes, shares, strict=True)},
        "fitted_on": "train",
        "seed": SEED,
        "n": len(y),
    }
    for rule in RULES:
        t = thresholds.get(rule)
        probs = baseline_probs(rule, shares, len(y))
        names = metric_names(classes, t is not None)
        flat = {
            m: float(v[0])
            for m, v in evaluate(ones(len(y)), y, probs, classes, names, t, positive_class).items()
        }
        entry = {"threshold": t, **nest(flat)}
        if rule == "majority":
            entry["class"] = classes[int(np.argmax(shares))]
        out[rule] = entry
    return out


def chance_flag(
    y: np.ndarray, probs: np.ndarray, threshold: float | None, chance: dict[str, Any], classes: Sequence[str],
    primary: str, positive_class: str | None, groups: Any = None, n_boot: int = N_BOOT,
) -> dict[str, Any] | None:  # fmt: skip
    """``no_better_than_chance`` when the model's ``primary`` is not above the better baseline's
    by a paired bootstrap interval of the difference (None when it is, or cannot be told)."""
    if not len(y) or not supported(primary, classes):
        return None
    shares = np.array([chance["class_shares"][c] for c in classes])
    model = evaluate(ones(len(y)), y, probs, classes, [primary], threshold, positive_class)[primary][0]
    scored = {}
    for rule in RULES:
        t = chance[rule]["threshold"]
        base = baseline_probs(rule, shares, len(y))
        scored[rule] = (
            base,
            t,
            evaluate(ones(len(y)), y, base, classes, [primary], t, positive_class)[primary][0],
        )
    rule = max(RULES, key=lambda r: -np.inf if np.isnan(scored[r][2]) else scored[r][2])
    base, t, base_value = scored[rule]
    if np.isnan(model) or np.isnan(base_value):
        return None
    diffs = [
        evaluate(w, y, probs, classes, [primary], threshold, positive_class)[primary]
        - evaluate(w, y, base, classes, [primary], t, positive_class)[primary]
        for w in resample_weights(len(y), n_boot, SEED, groups)
    ]
    interval = percentile_interval(np.concatenate(diffs), 0.05, float(model - base_value))
    if interval.low is not None and interval.low > 0:
        return None
    low = "undefined" if interval.low is None else f"{interval.low:.3f}"
    high = "undefined" if interval.high is None else f"{interval.high:.3f}"
    return {
        "code": CODE,
        "message": (
            f"{primary} {model:.3f} is not above chance ({rule} rule {base_value:.3f}; "
            f"difference interval [{low}, {high}])"
        ),
        "rule": rule,
        "metric": primary,
        "difference": interval.to_dict(),
    }
