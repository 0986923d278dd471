"""The METRICS object, the operating point and the overfitting gap against scikit-learn and
against loops written here independently of dermbench.evaluation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
)

from dermbench.errors import ConfigError, DataError
from dermbench.evaluation.bootstrap import bootstrap_ci, bootstrap_report
from dermbench.evaluation.metrics import (
    choose_threshold,
    classification_report,
    operating_point,
    resolve_metric,
    threshold_decisions,
    threshold_grid,
)

HAM7 = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
BINARY = ["benign", "malignant"]
TRIAGE = ["priority_1", "priority_2", "priority_3"]


def sample(n: int, k: int, seed: int, skill: float = 1.0, priors: list[float] | None = None):
    """Labels and softmax probabilities whose true-class logit is raised by ``skill``."""
    rng = np.random.default_rng(seed)
    y = rng.choice(k, size=n, p=priors)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y] += skill
    p = np.exp(logits)
    return y, p / p.sum(axis=1, keepdims=True)


def plain(value) -> bool:
    """True when a value holds only JSON's own Python types (no numpy scalars)."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(plain(v) for v in value)
    return value is None or type(value) in (bool, int, float, str)


def sklearn_auc_present(y, p) -> float:
    present = np.unique(y)
    return float(np.mean([roc_auc_score(y == c, p[:, c]) for c in present]))


@pytest.mark.parametrize(("classes", "seed"), [(BINARY, 0), (BINARY, 1), (HAM7, 2), (TRIAGE, 3)])
def test_report_matches_sklearn_on_random_data(classes, seed):
    k = len(classes)
    y, p = sample(600, k, seed, skill=0.8)
    pred = p.argmax(axis=1)
    m = classification_report(y, p, classes)
    assert m["n"] == 600
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred), abs=1e-12)
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred), abs=1e-12)
    assert m["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"), abs=1e-12)
    assert m["weighted_f1"] == pytest.approx(f1_score(y, pred, average="weighted"), abs=1e-12)
    auc = roc_auc_score(y, p[:, 1]) if k == 2 else roc_auc_score(y, p, multi_class="ovr", average="macro")
    assert m["macro_auc"] == pytest.approx(auc, abs=1e-12)
    prec, rec, f1, sup = precision_recall_fscore_support(y, pred, labels=range(k), zero_division=np.nan)
    for c, name in enumerate(classes):
        row = m["per_class"][name]
        assert row["precision"] == pytest.approx(prec[c], abs=1e-12)
        assert row["recall"] == pytest.approx(rec[c], abs=1e-12)
        assert row["f1"] == pytest.approx(f1[c], abs=1e-12)
        assert row["support"] == sup[c]
    assert m["confusion_matrix"] == confusion_matrix(y, pred, labels=range(k)).tolist()
    assert m["operating_point"] is None
    assert m["undefined"] == {}
    assert plain(m)
    json.dumps(m)


def test_auc_with_ties_matches_sklearn():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 3, 300)
    p = rng.integers(0, 4, size=(300, 3)).astype(float) + 1.0  # many tied scores
    p /= p.sum(axis=1, keepdims=True)
    m = classification_report(y, p, TRIAGE)
    assert m["macro_auc"] == pytest.approx(roc_auc_score(y, p, multi_class="ovr"), abs=1e-12)


def test_absent_class_is_undefined_not_zero_and_macro_f1_follows_sklearn():
    y, p = sample(400, 7, seed=7, skill=0.5)
    keep = (y != 3) & (y != 5)  # df absent but still predicted; nv absent and never predicted
    y, p = y[keep], p[keep]
    p[:, 5] = 0.0
    p /= p.sum(axis=1, keepdims=True)
    pred = p.argmax(axis=1)
    assert (pred == 3).any() and not (pred == 5).any()
    m = classification_report(y, p, HAM7)

    # macro-F1 averages over the classes present in y_true or predicted: sklearn without `labels`
    assert m["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"), abs=1e-12)
    assert m["macro_f1"] != pytest.approx(
        f1_score(y, pred, labels=range(7), average="macro", zero_division=0)
    )
    assert m["weighted_f1"] == pytest.approx(f1_score(y, pred, average="weighted"), abs=1e-12)
    with pytest.warns(UserWarning, match="not in y_true"):
        expected = balanced_accuracy_score(y, pred)
    assert m["balanced_accuracy"] == pytest.approx(expected, abs=1e-12)
    assert m["macro_auc"] == pytest.approx(sklearn_auc_present(y, p), abs=1e-12)

    df, nv = m["per_class"]["df"], m["per_class"]["nv"]
    assert df["support"] == 0 and df["recall"] is None and df["f1"] is None
    assert df["precision"] == 0.0  # predicted, always wrongly
    assert nv == {"precision": None, "recall": None, "f1": None, "support": 0}
    assert set(m["undefined"]) == {
        "per_class.df.recall",
        "per_class.df.f1",
        "per_class.nv.precision",
        "per_class.nv.recall",
        "per_class.nv.f1",
    }
    assert "absent" in m["undefined"]["per_class.df.recall"]
    assert "never predicted" in m["undefined"]["per_class.nv.precision"]
    assert m["confusion_matrix"] == confusion_matrix(y, pred, labels=range(7)).tolist()
    assert plain(m)


def test_single_class_split():
    y = np.zeros(20, dtype=int)
    _, p = sample(20, 3, seed=8)
    pred = p.argmax(axis=1)
    m = classification_report(y, p, TRIAGE)
    assert m["macro_auc"] is None
    assert "priority_1" in m["undefined"]["macro_auc"] and ">= 2" in m["undefined"]["macro_auc"]
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert m["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"), abs=1e-12)
    assert m["balanced_accuracy"] == pytest.approx(np.mean(pred == 0))
    assert m["per_class"]["priority_1"]["precision"] == 1.0 or not (pred == 0).any()


def test_perfect_predictions():
    y = np.repeat(np.arange(7), 5)
    p = np.full((35, 7), 0.01)
    p[np.arange(35), y] = 0.94
    m = classification_report(y, p, HAM7)
    for name in ("accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "macro_auc"):
        assert m[name] == 1.0
    assert m["confusion_matrix"] == (5 * np.eye(7, dtype=int)).tolist()
    assert all(
        v == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 5} for v in m["per_class"].values()
    )


def test_empty_split_reports_nothing_and_says_why():
    m = classification_report(np.zeros(0, dtype=int), np.zeros((0, 2)), BINARY)
    assert m["n"] == 0 and m["accuracy"] is None and m["macro_auc"] is None
    assert m["undefined"]["accuracy"] == "empty split"
    assert m["confusion_matrix"] == [[0, 0], [0, 0]]


def brute_operating_point(y, p, pos, t):
    """Counts one case at a time, as a reader would on paper."""
    tp = fp = tn = fn = 0
    for label, row in zip(y, p, strict=True):
        decided = row[pos] >= t
        if decided and label == pos:
            tp += 1
        elif decided:
            fp += 1
        elif label == pos:
            fn += 1
        else:
            tn += 1
    return tp, fp, tn, fn


@pytest.mark.parametrize(
    ("classes", "positive", "seed"), [(BINARY, "malignant", 0), (TRIAGE, "priority_1", 1)]
)
@pytest.mark.parametrize("threshold", [0.1, 0.34, 0.5, 0.9])
def test_operating_point_against_a_loop(classes, positive, seed, threshold):
    y, p = sample(300, len(classes), seed)
    pos = classes.index(positive)
    m = classification_report(
        y, p, classes, positive_class=positive, recall_constraint=0.85, threshold=threshold, feasible=True
    )
    op = m["operating_point"]
    tp, fp, tn, fn = brute_operating_point(y, p, pos, threshold)
    assert (op["tp"], op["fp"], op["tn"], op["fn"]) == (tp, fp, tn, fn)
    assert op["recall"] == op["sensitivity"] == pytest.approx(tp / (tp + fn))
    assert op["specificity"] == pytest.approx(tn / (tn + fp))
    if tp + fp:
        assert op["precision"] == pytest.approx(tp / (tp + fp))
    decided = p[:, pos] >= threshold
    assert op["f1"] == pytest.approx(f1_score(y == pos, decided, zero_division=0.0), abs=1e-12)
    assert op["threshold"] == threshold and op["feasible"] is True and op["recall_constraint"] == 0.85
    assert op["positive_class"] == positive
    assert plain(m)


def test_threshold_decisions_fall_back_to_the_other_classes():
    p = np.array([[0.30, 0.50, 0.20], [0.20, 0.30, 0.50], [0.10, 0.60, 0.30], [0.40, 0.35, 0.25]])
    assert threshold_decisions(p, 0, 0.3).tolist() == [0, 2, 1, 0]
    assert threshold_decisions(p, 0, 0.5).tolist() == [1, 2, 1, 1]


def test_precision_with_no_predicted_positive_is_undefined():
    y, p = sample(50, 2, seed=3)
    p = np.clip(p, 0.0, 0.9)
    m = classification_report(y, p, BINARY, positive_class="malignant", threshold=0.95)
    op = m["operating_point"]
    assert op["precision"] is None and op["tp"] == 0 and op["fp"] == 0
    assert op["f1"] == 0.0 and op["recall"] == 0.0
    assert "operating_point.precision" in m["undefined"]
    assert "precision" in op["undefined"]


def test_positive_class_without_threshold_and_bad_input():
    y, p = sample(30, 2, seed=4)
    m = classification_report(y, p, BINARY, positive_class="malignant")
    assert m["operating_point"] is None and "operating_point" in m["undefined"]
    with pytest.raises(ConfigError, match="melanoma"):
        classification_report(y, p, BINARY, positive_class="melanoma", threshold=0.5)
    with pytest.raises(ConfigError, match="threshold"):
        classification_report(y, p, BINARY, positive_class="malignant", threshold=1.5)
    with pytest.raises(DataError, match="shape"):
        classification_report(y, p[:, :1], BINARY)
    bad = y.copy()
    bad[7] = 2
    with pytest.raises(DataError, match="row 7"):
        classification_report(bad, p, BINARY)
    nan = p.copy()
    nan[4, 0] = np.nan
    with pytest.raises(DataError, match="row 4"):
        classification_report(y, nan, BINARY)
    with pytest.raises(DataError, match="class indices"):
        classification_report(y + 0.5, p, BINARY)


def test_resolve_metric_paths():
    y, p = sample(100, 3, seed=9)
    m = classification_report(y, p, TRIAGE, positive_class="priority_1", threshold=0.4)
    assert resolve_metric(m, "macro_f1") == m["macro_f1"]
    assert resolve_metric(m, "operating_point.f1") == m["operating_point"]["f1"]
    assert resolve_metric(m, "per_class.priority_2.recall") == m["per_class"]["priority_2"]["recall"]
    plain_m = classification_report(y, p, TRIAGE)
    assert resolve_metric(plain_m, "operating_point.f1") is None
    assert resolve_metric({"per_class": {"a.b": {"f1": 0.5}}}, "per_class.a.b.f1") == 0.5
    with pytest.raises(ConfigError, match="macro_f2"):
        resolve_metric(m, "macro_f2")
    with pytest.raises(ConfigError, match="not a group"):
        resolve_metric(m, "accuracy.low")


# --- the recall-constrained threshold -------------------------------------------------------


def brute_threshold(y, p, pos, gamma):
    """Rumale et al.'s rule with a plain loop: thresholds 0.02..0.98, best F1 with recall >= gamma."""
    best = None
    lowest = None
    for i in range(1, 50):
        t = i / 50
        decided = p[:, pos] >= t
        r = float(np.sum(decided & (y == pos)) / np.sum(y == pos))
        f = f1_score(y == pos, decided, zero_division=0.0)
        if lowest is None:
            lowest = (t, r, f)
        if r >= gamma and (best is None or f > best[2]):
            best = (t, r, f)
    return (best, True) if best else (lowest, False)


def test_grid_is_open_at_both_ends():
    grid = threshold_grid(0.02)
    assert len(grid) == 49 and grid[0] == 0.02 and grid[-1] == 0.98
    assert np.allclose(np.diff(grid), 0.02)
    assert threshold_grid(0.25).tolist() == [0.25, 0.5, 0.75]
    with pytest.raises(ConfigError, match="step"):
        threshold_grid(0.0)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("gamma", [0.5, 0.85, 0.95, 1.0])
def test_choose_threshold_against_a_loop(seed, gamma):
    classes = BINARY if seed % 2 else TRIAGE
    y, p = sample(150, len(classes), seed, skill=0.7, priors=None)
    if seed == 4:
        p[np.flatnonzero(y == 0)[:3], 0] = 0.001  # a positive no grid threshold can catch
    (t, r, f), feasible = brute_threshold(y, p, 1 if classes is BINARY else 0, gamma)
    positive = classes[1] if classes is BINARY else classes[0]
    got = choose_threshold(y, p, classes, positive, gamma)
    assert got["threshold"] == pytest.approx(t, abs=1e-12)
    assert got["feasible"] is feasible
    assert got["val_recall"] == pytest.approx(r) and got["val_f1"] == pytest.approx(f)
    assert got["grid"] == 0.02
    if not feasible:
        assert got["threshold"] == 0.02 and "no threshold" in got["reason"]


def test_f1_ties_go_to_the_lowest_threshold():
    # positives at 0.9, negatives at 0.1: every threshold in (0.1, 0.9] gives F1 = 1
    y = np.array([1, 1, 0, 0])
    p1 = np.array([0.9, 0.9, 0.1, 0.1])
    got = choose_threshold(y, np.c_[1 - p1, p1], BINARY, "malignant", 0.85)
    assert got["threshold"] == 0.12 and got["val_f1"] == 1.0


def test_no_positive_in_validation_cannot_choose():
    y = np.zeros(10, dtype=int)
    _, p = sample(10, 2, seed=1)
    got = choose_threshold(y, p, BINARY, "malignant", 0.85)
    assert got["threshold"] is None and got["feasible"] is False and "no malignant" in got["reason"]
    with pytest.raises(ConfigError, match="recall_constraint"):
        choose_threshold(y, p, BINARY, "malignant", 1.5)


def test_threshold_never_depends_on_test_labels():
    """Only validation predictions choose t; relabelling test leaves it, and only its scores, alone."""
    y_val, p_val = sample(200, 2, seed=11, skill=0.8)
    y_test, p_test = sample(200, 2, seed=12, skill=0.8)
    chosen = choose_threshold(y_val, p_val, BINARY, "malignant", 0.85)
    rng = np.random.default_rng(0)
    test_chosen, f1s = set(), set()
    for _ in range(8):
        relabelled = rng.integers(0, 2, len(y_test))
        again = choose_threshold(y_val, p_val, BINARY, "malignant", 0.85)
        assert again == chosen
        m = classification_report(
            relabelled, p_test, BINARY, positive_class="malignant", threshold=again["threshold"]
        )
        assert m["operating_point"]["threshold"] == chosen["threshold"]
        f1s.add(m["operating_point"]["f1"])
        test_chosen.add(choose_threshold(relabelled, p_test, BINARY, "malignant", 0.85)["threshold"])
    # the relabelling is strong enough that a threshold chosen on test would have moved
    assert len(test_chosen) > 1 and len(f1s) > 1


def test_operating_point_function_matches_report():
    y, p = sample(80, 3, seed=13)
    op = operating_point(y, p, TRIAGE, "priority_1", 0.3, recall_constraint=0.9, feasible=False)
    m = classification_report(
        y, p, TRIAGE, positive_class="priority_1", recall_constraint=0.9, threshold=0.3, feasible=False
    )
    assert op == m["operating_point"]


# --- bootstrap intervals --------------------------------------------------------------------


def sk_macro_f1(y, p):
    return f1_score(y, p.argmax(axis=1), average="macro")


def sk_balanced_accuracy(y, p):
    pred = p.argmax(axis=1)
    if not np.isin(pred, y).all():  # sklearn warns, then averages over the classes present
        return float(np.mean([np.mean(pred[y == c] == c) for c in np.unique(y)]))
    return balanced_accuracy_score(y, pred)


def sk_macro_auc(y, p):
    return None if len(np.unique(y)) < 2 else sklearn_auc_present(y, p)


def test_bootstrap_report_equals_the_loop_over_sklearn():
    y, p = sample(300, 7, seed=21, skill=1.0, priors=[0.03, 0.05, 0.11, 0.01, 0.11, 0.67, 0.02])
    report = bootstrap_report(y, p, HAM7, n_boot=200, seed=3)
    for name, fn in (("macro_f1", sk_macro_f1), ("balanced_accuracy", sk_balanced_accuracy),
                     ("macro_auc", sk_macro_auc)):  # fmt: skip
        ci = bootstrap_ci(y, p, fn, n_boot=200, seed=3)
        assert report[name]["low"] == pytest.approx(ci.low, abs=1e-10)
        assert report[name]["high"] == pytest.approx(ci.high, abs=1e-10)
        assert report[name]["n_boot_used"] == ci.n_boot_used == 200


def test_bootstrap_of_operating_point_and_per_class_paths():
    y, p = sample(150, 3, seed=22)
    paths = ("operating_point.f1", "operating_point.recall", "per_class.priority_2.recall")
    report = bootstrap_report(
        y, p, TRIAGE, paths, n_boot=60, seed=1, positive_class="priority_1", threshold=0.3
    )
    loops = {
        "operating_point.f1": lambda a, b: f1_score(a == 0, b[:, 0] >= 0.3, zero_division=0.0),
        "operating_point.recall": lambda a, b: np.mean(b[a == 0, 0] >= 0.3),
        "per_class.priority_2.recall": lambda a, b: np.mean(b[a == 1].argmax(axis=1) == 1),
    }
    for path, fn in loops.items():
        ci = bootstrap_ci(y, p, fn, n_boot=60, seed=1)
        assert (report[path]["low"], report[path]["high"]) == pytest.approx(tuple(ci), abs=1e-10)
    with pytest.raises(ConfigError, match="threshold"):
        bootstrap_report(y, p, TRIAGE, ("operating_point.f1",), n_boot=5)


def test_bootstrap_contains_the_estimate_and_narrows_with_n():
    widths = []
    for n in (150, 1500):
        y, p = sample(n, 2, seed=23, skill=1.0)
        m = classification_report(y, p, BINARY)
        ci = bootstrap_report(y, p, BINARY, n_boot=300, seed=0)
        for name, c in ci.items():
            assert c["low"] <= m[name] <= c["high"], name
        widths.append(ci["macro_f1"]["high"] - ci["macro_f1"]["low"])
    assert widths[1] < 0.6 * widths[0]  # ~ 1/sqrt(10) in theory


def test_bootstrap_skips_undefined_resamples():
    y = np.array([0, 0, 0, 0, 0, 1])
    _, p = sample(6, 2, seed=24)
    ci = bootstrap_report(y, p, BINARY, ("macro_auc", "accuracy"), n_boot=300, seed=0)
    assert 150 < ci["macro_auc"]["n_boot_used"] < 260  # (5/6)^6 = 33% of resamples lack class 1
    assert ci["accuracy"]["n_boot_used"] == 300
    loop = bootstrap_ci(y, p, sk_macro_auc, n_boot=300, seed=0)
    assert loop.n_boot_used == ci["macro_auc"]["n_boot_used"]
    none = bootstrap_ci(y, p, lambda a, b: None, n_boot=10)
    assert tuple(none) == (None, None) and none.n_boot_used == 0


def test_grouped_bootstrap_resamples_lesions_not_images():
    y1, p1 = sample(200, 2, seed=25, skill=1.0)
    y, p = np.repeat(y1, 5), np.repeat(p1, 5, axis=0)  # five images of each lesion
    groups = np.repeat(np.arange(200), 5)
    by_image = bootstrap_ci(y, p, sk_macro_f1, n_boot=200, seed=0)
    by_lesion = bootstrap_ci(y, p, sk_macro_f1, n_boot=200, seed=0, groups=groups)
    assert by_lesion.high - by_lesion.low > 1.5 * (by_image.high - by_image.low)
    report = bootstrap_report(y, p, BINARY, ("macro_f1",), n_boot=200, seed=0, groups=groups)
    assert (report["macro_f1"]["low"], report["macro_f1"]["high"]) == pytest.approx(
        tuple(by_lesion), abs=1e-10
    )
    paths = ("per_class.benign.recall", "per_class.malignant.recall")  # two per-resample metrics
    per_class = bootstrap_report(y, p, BINARY, paths, n_boot=40, seed=2, groups=groups)
    for c, path in enumerate(paths):
        ci = bootstrap_ci(
            y, p, lambda a, b, c=c: np.mean(b[a == c].argmax(axis=1) == c), n_boot=40, seed=2, groups=groups
        )
        assert (per_class[path]["low"], per_class[path]["high"]) == pytest.approx(tuple(ci), abs=1e-10)
        assert per_class[path]["n_boot_used"] == 40
    with pytest.raises(DataError, match="groups"):
        bootstrap_ci(y, p, sk_macro_f1, groups=groups[:-1])


def test_bootstrap_ci_is_the_percentile_interval_of_image_resamples():
    y, p = sample(120, 3, seed=27)
    rng = np.random.default_rng(5)
    draws = rng.integers(0, 120, size=(150, 120))  # the documented scheme: n rows with replacement
    values = [sk_macro_f1(y[i], p[i]) for i in draws]
    for alpha in (0.05, 0.2):
        ci = bootstrap_ci(y, p, sk_macro_f1, n_boot=150, seed=5, alpha=alpha)
        expected = np.percentile(values, [100 * alpha / 2, 100 * (1 - alpha / 2)])
        assert tuple(ci) == pytest.approx(tuple(expected), abs=1e-12)
        assert ci.n_boot_used == 150
