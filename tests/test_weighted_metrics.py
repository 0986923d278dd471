"""The one vectorised metric implementation against scikit-learn on the same index resamples, and
the leaderboard's paired seed-mean intervals built on it."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from dermbench.evaluation.bootstrap import seed_mean_draws
from dermbench.evaluation.resample import percentile_interval, resample_weights
from dermbench.evaluation.weighted import evaluate, ones, supported
from dermbench.leaderboard.generic import flatten, to_tables


def draw_counts(n, n_boot, seed, groups=None):
    return np.concatenate(list(resample_weights(n, n_boot, seed, groups)))


def point_values(y, p, classes, metrics, threshold=None, positive_class=None):
    vals = evaluate(ones(len(y)), y, p, classes, metrics, threshold, positive_class)
    return {m: (float(v[0]) if np.isfinite(v[0]) else None) for m, v in vals.items()}


def paired_interval(y, runs, classes, metrics, positive_class=None, n_boot=1000, seed=0, groups=None):
    draws = seed_mean_draws(y, runs, classes, metrics, positive_class, n_boot, seed, groups)
    out = {}
    for m, d in draws.items():
        out[m] = percentile_interval(d) if np.isfinite(d).sum() >= max(10, 0.9 * n_boot) else None
    return out


CLASSES = ["a", "b", "c", "d", "e"]


def _data(n: int, seed: int, k: int = 5, rounding: int = 2) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y] += 1.0
    p = np.exp(logits)
    return y, np.round(p / p.sum(axis=1, keepdims=True), rounding)  # rounding makes tied scores


def _sklearn(y: np.ndarray, p: np.ndarray, threshold: float, pos: int) -> dict[str, float]:
    pred = p.argmax(axis=1)
    present = [j for j in range(p.shape[1]) if 0 < (y == j).sum() < len(y)]
    says = p[:, pos] >= threshold
    return {
        "accuracy": accuracy_score(y, pred),
        "balanced_accuracy": balanced_accuracy_score(y, pred),
        "macro_f1": f1_score(y, pred, average="macro"),
        "weighted_f1": f1_score(y, pred, average="weighted"),
        "macro_auc": np.mean([roc_auc_score(y == j, p[:, j]) for j in present]),
        "per_class.b.precision": precision_score(y, pred, labels=[1], average=None, zero_division=np.nan)[0],
        "per_class.c.recall": recall_score(y, pred, labels=[2], average=None, zero_division=0)[0],
        "per_class.d.f1": f1_score(y, pred, labels=[3], average=None, zero_division=0)[0],
        "operating_point.f1": f1_score(y == pos, says),
        "operating_point.recall": recall_score(y == pos, says),
        "operating_point.precision": precision_score(y == pos, says, zero_division=np.nan),
        "operating_point.specificity": recall_score(y != pos, ~says),
    }


METRICS = list(_sklearn(*_data(50, 0), 0.3, 1))


@pytest.mark.parametrize("seed", [0, 1])
def test_every_draw_matches_sklearn_on_the_resampled_rows(seed):
    y, p = _data(120, seed)
    n_boot = 12
    w = draw_counts(len(y), n_boot, seed=seed)
    idx = np.random.default_rng(seed).integers(0, len(y), size=(n_boot, len(y)))
    got = evaluate(w, y, p, CLASSES, METRICS, threshold=0.3, positive_class="b")
    for b in range(n_boot):
        ref = _sklearn(y[idx[b]], p[idx[b]], 0.3, 1)
        for m in METRICS:
            assert got[m][b] == pytest.approx(ref[m], abs=1e-12, nan_ok=True), (m, b)


def test_point_values_on_the_full_set():
    y, p = _data(200, 3)
    got = point_values(y, p, CLASSES, METRICS, threshold=0.25, positive_class="b")
    ref = _sklearn(y, p, 0.25, 1)
    assert got == pytest.approx(ref, abs=1e-12)


def test_macro_averages_skip_a_class_absent_from_labels_and_predictions():
    y, p = _data(90, 4)
    keep = (y != 4) & (p.argmax(axis=1) != 4)
    y, p = y[keep], p[keep]
    got = point_values(y, p, CLASSES, ["macro_f1", "balanced_accuracy", "macro_auc"])
    pred = p.argmax(axis=1)
    assert got["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert got["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert got["macro_auc"] == pytest.approx(np.mean([roc_auc_score(y == j, p[:, j]) for j in range(4)]))


def test_paired_interval_is_the_percentile_of_seed_means():
    y, p0 = _data(150, 5)
    p1 = 0.5 * p0 + 0.5 * np.random.default_rng(0).dirichlet(np.ones(5), size=150)  # a second seed
    got = paired_interval(y, [(p0, None), (p1, None)], CLASSES, ["macro_f1", "accuracy"], n_boot=100, seed=7)
    idx = np.random.default_rng(7).integers(0, 150, size=(100, 150))
    for m, fn in (("macro_f1", lambda a, b: f1_score(a, b, average="macro")), ("accuracy", accuracy_score)):
        means = [np.mean([fn(y[i], p[i].argmax(axis=1)) for p in (p0, p1)]) for i in idx]
        low, high = np.quantile(means, [0.025, 0.975])
        assert (got[m].low, got[m].high) == pytest.approx((low, high), abs=1e-12)
        assert got[m].n_boot_used == 100


def test_interval_withheld_when_a_metric_is_mostly_undefined():
    y = np.array([0] * 60 + [1])  # one positive: about a third of the draws have no class-1 case
    p = np.tile([0.6, 0.4], (61, 1))
    got = paired_interval(y, [(p, None)], ["neg", "pos"], ["per_class.pos.recall", "accuracy"], n_boot=50)
    assert got["per_class.pos.recall"] is None
    assert got["accuracy"] is not None


def test_grouped_draws_resample_whole_lesions():
    groups = np.array(["l2", "l1", "l2", "l3", "l1"])
    w = draw_counts(5, 30, seed=2, groups=groups)
    draw = np.random.default_rng(2).integers(0, 3, size=(30, 3))  # over sorted ids l1, l2, l3
    for b in range(30):
        per_lesion = np.bincount(draw[b], minlength=3)
        assert w[b].tolist() == [per_lesion[i] for i in (1, 0, 1, 2, 0)]


def test_same_numbers_as_the_metrics_module():
    """One seed: the seed-mean path and dermbench.evaluation.metrics agree exactly."""
    from dermbench.evaluation.bootstrap import bootstrap_report
    from dermbench.evaluation.metrics import classification_report, resolve_metric

    y, p = _data(300, 8)
    groups = [f"lesion{i // 3}" for i in range(len(y))]
    report = classification_report(y, p, CLASSES, positive_class="c", threshold=0.3)
    mine = point_values(y, p, CLASSES, METRICS, threshold=0.3, positive_class="c")
    for m in METRICS:
        assert mine[m] == pytest.approx(resolve_metric(report, m), abs=1e-12), m
    names = ["macro_f1", "balanced_accuracy", "macro_auc", "weighted_f1", "operating_point.f1"]
    ref = bootstrap_report(
        y, p, CLASSES, names, n_boot=300, seed=4, groups=groups, positive_class="c", threshold=0.3
    )
    got = paired_interval(y, [(p, 0.3)], CLASSES, names, "c", n_boot=300, seed=4, groups=groups)
    for m in names:
        assert (got[m].low, got[m].high, got[m].n_boot_used) == pytest.approx(
            (ref[m]["low"], ref[m]["high"], ref[m]["n_boot_used"]), abs=1e-12
        ), m


def test_supported_metrics():
    assert supported("macro_f1", CLASSES) and supported("operating_point.specificity", CLASSES)
    assert supported("per_class.a.f1", CLASSES)
    assert not supported("per_class.zz.f1", CLASSES) and not supported("ece", CLASSES)
    assert supported("brier", CLASSES) and supported("operating_point.positive_rate", CLASSES)


def test_generic_tables_lay_out_any_json():
    fairness = {
        "column": "skin_type",
        "groups": {"I-II": {"n": 10, "recall": 0.5}, "V-VI": {"n": 3, "recall": None}},
        "rows": [{"group": "a", "m": {"f1": 0.25}}, {"group": "b", "extra": True}],
    }
    tables = to_tables(fairness, "fairness")
    assert [(t.caption, t.columns) for t in tables] == [
        ("fairness", ["field", "value"]),
        ("fairness / groups", ["", "n", "recall"]),
        ("fairness / rows", ["group", "m.f1", "extra"]),
    ]
    assert tables[1].rows == [["I-II", "10", "0.500"], ["V-VI", "3", "—"]]
    assert tables[2].rows == [["a", "0.250", "—"], ["b", "—", "yes"]]
    assert flatten({"stages": [{"loss": {"name": "focal"}}]}) == [("stages[0].loss.name", "focal")]
