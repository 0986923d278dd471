"""Fairness audit against scikit-learn on each subgroup directly, bootstrap gaps against a brute-force
loop over the same resamples, and threshold recalibration that only ever sees validation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

from dermbench.errors import ConfigError, DataError
from dermbench.evaluation.fairness import (
    fairness_audit,
    resample_counts,
    weighted_auc,
)
from dermbench.evaluation.metrics import choose_threshold, threshold_grid
from dermbench.evaluation.recalibration import (
    apply_thresholds,
    recalibrate_thresholds,
    recalibration_report,
    thresholds_for_rows,
)

CLASSES = ["nv", "mel", "bcc"]
POS = 1


def _data(n: int = 400, seed: int = 0) -> dict:
    """Three-class probabilities whose melanoma score is weaker on the 'dark' group."""
    rng = np.random.default_rng(seed)
    tone = rng.choice(np.array(["light", "dark"], dtype=object), n, p=[0.6, 0.4])
    y = rng.choice(3, n, p=[0.6, 0.25, 0.15])
    signal = np.where(tone == "light", 1.6, 0.9)
    logits = rng.normal(0, 1, (n, 3))
    logits[np.arange(n), y] += signal
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    sex = rng.choice(np.array(["female", "male", None], dtype=object), n, p=[0.45, 0.45, 0.1])
    fitz = rng.choice([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, np.nan], n)
    return {"y": y, "probs": probs, "tone": tone, "sex": sex, "fitz": fitz}


def _sk(y: np.ndarray, probs: np.ndarray, t: float | np.ndarray) -> dict:
    """The audit's numbers for one subgroup, straight from scikit-learn."""
    actual, s = (y == POS).astype(int), probs[:, POS]
    d = (s >= t).astype(int)
    return {
        "n": len(y),
        "positives": int(actual.sum()),
        "auc": roc_auc_score(actual, s),
        "recall": recall_score(actual, d),
        "precision": precision_score(actual, d),
        "f1": f1_score(actual, d),
        "fnr": 1 - recall_score(actual, d),
        "fn": int(((actual == 1) & (d == 0)).sum()),
    }


def test_per_group_metrics_match_sklearn_on_each_subset() -> None:
    d = _data()
    groups = {"ita": d["tone"], "sex": d["sex"], "fitzpatrick": d["fitz"]}
    out = fairness_audit(d["y"], d["probs"], CLASSES, groups, "mel", 0.3, n_boot=0)
    json.dumps(out, allow_nan=False)
    assert out["overall"]["recall"] == pytest.approx(_sk(d["y"], d["probs"], 0.3)["recall"])
    for name, values in groups.items():
        table = out["groupings"][name]
        labels = np.array(
            ["" if v is None or v != v else str(int(v)) if isinstance(v, float) else v for v in values]
        )
        assert table["n_missing"] == int((labels == "").sum())
        assert sorted(r["group"] for r in table["groups"]) == sorted(set(labels) - {""})
        for row in table["groups"]:
            rows = labels == row["group"]
            expected = _sk(d["y"][rows], d["probs"][rows], 0.3)
            for key, value in expected.items():
                assert row[key] == pytest.approx(value), (name, row["group"], key)
            assert row["tp"] + row["fp"] + row["fn"] + row["tn"] == row["n"]


def test_gap_is_max_minus_min_and_difference_follows_order() -> None:
    d = _data()
    out = fairness_audit(
        d["y"],
        d["probs"],
        CLASSES,
        {"ita": d["tone"]},
        "mel",
        0.3,
        n_boot=50,
        order={"ita": ["light", "dark"]},
    )
    rows = out["groupings"]["ita"]["groups"]
    assert [r["group"] for r in rows] == ["light", "dark"]
    for m in ("auc", "recall", "precision", "f1", "fnr"):
        gap = out["groupings"]["ita"]["gaps"][m]
        assert gap["value"] == pytest.approx(abs(rows[0][m] - rows[1][m]))
        assert gap["difference"]["value"] == pytest.approx(rows[0][m] - rows[1][m])
        assert gap["difference"]["groups"] == ["light", "dark"]
        assert gap["low"] <= gap["high"] and gap["n_boot_used"] == 50
    assert rows[0]["auc"] > rows[1]["auc"]  # the weaker signal on 'dark' shows up


def test_bootstrap_gaps_equal_a_brute_force_loop_over_the_same_resamples() -> None:
    d = _data(n=150, seed=1)
    groups = {"fitz": np.where(d["fitz"] >= 4, "dark", "light").astype(object), "ita": d["tone"]}
    out = fairness_audit(d["y"], d["probs"], CLASSES, groups, "mel", 0.35, n_boot=40, seed=7)
    counts = np.concatenate(list(resample_counts(150, 40, seed=7)))
    for name, labels in groups.items():
        gaps: dict[str, list[float]] = {"auc": [], "recall": [], "precision": []}
        for c in counts:
            idx = np.repeat(np.arange(150), c.astype(int))
            per = []
            for g in ("dark", "light"):
                sub = idx[labels[idx] == g]
                y, p = d["y"][sub], d["probs"][sub]
                actual, dec = (y == POS).astype(int), (p[:, POS] >= 0.35).astype(int)
                auc = roc_auc_score(actual, p[:, POS]) if 0 < actual.sum() < len(actual) else np.nan
                rec = recall_score(actual, dec) if actual.sum() else np.nan
                prec = precision_score(actual, dec) if dec.sum() else np.nan
                per.append({"auc": auc, "recall": rec, "precision": prec})
            for m in gaps:
                gaps[m].append(abs(per[0][m] - per[1][m]))
        for m, values in gaps.items():
            v = np.array(values)
            v = v[~np.isnan(v)]
            low, high = np.percentile(v, [2.5, 97.5])
            got = out["groupings"][name]["gaps"][m]
            assert (got["low"], got["high"], got["n_boot_used"]) == (
                pytest.approx(low),
                pytest.approx(high),
                len(v),
            )


def test_undefined_metrics_are_none_with_reasons_not_crashes() -> None:
    y = np.array([1, 1, 0, 0, 0, 0, 0, 1])
    s = np.array([0.9, 0.2, 0.1, 0.3, 0.2, 0.1, 0.05, 0.8])
    probs = np.column_stack([1 - s, s])
    g = np.array(["a", "a", "a", "b", "b", "c", "c", "d"], dtype=object)
    out = fairness_audit(y, probs, ["benign", "malignant"], {"g": g}, "malignant", 0.5, n_boot=30)
    json.dumps(out, allow_nan=False)
    rows = {r["group"]: r for r in out["groupings"]["g"]["groups"]}
    assert rows["b"]["recall"] is None and "no malignant cases" in rows["b"]["undefined"]["recall"]
    assert rows["b"]["auc"] is None and rows["b"]["fnr"] is None
    assert rows["b"]["precision"] is None and "no case called" in rows["b"]["undefined"]["precision"]
    assert rows["b"]["f1"] is None
    assert rows["d"]["auc"] is None and "only malignant" in rows["d"]["undefined"]["auc"]
    assert rows["d"]["recall"] == 1.0
    assert rows["a"]["auc"] == 1.0 and rows["a"]["recall"] == 0.5
    gap = out["groupings"]["g"]["gaps"]["recall"]
    assert gap["groups"] == ["a", "d"] and gap["value"] == pytest.approx(0.5)
    assert set(gap["excluded"]) == {"b", "c"}
    auc_gap = out["groupings"]["g"]["gaps"]["auc"]
    assert auc_gap["value"] is None and "fewer than two groups" in auc_gap["reason"]


def test_grouping_without_any_label_and_lesion_resampling() -> None:
    d = _data(n=120)
    lesions = np.arange(120) // 2
    groups = {"none": [None] * 120, "ita": d["tone"]}
    out = fairness_audit(d["y"], d["probs"], CLASSES, groups, "mel", 0.3, n_boot=20, resample_groups=lesions)
    json.dumps(out, allow_nan=False)
    assert out["groupings"]["none"]["groups"] == [] and out["groupings"]["none"]["n_missing"] == 120
    assert "fewer than two groups" in out["groupings"]["none"]["gaps"]["recall"]["reason"]
    assert out["resampling"] == "groups" and out["groupings"]["ita"]["gaps"]["auc"]["n_boot_used"] == 20


def test_weighted_auc_matches_sklearn_with_sample_weights_and_ties() -> None:
    rng = np.random.default_rng(3)
    s = np.round(rng.random(60), 1)  # many ties
    a = rng.random(60) < 0.4
    w = rng.integers(0, 4, (5, 60)).astype(float)
    got = weighted_auc(s, a, np.vstack([np.ones(60), w]))
    assert got[0] == pytest.approx(roc_auc_score(a, s))
    for k in range(5):
        assert got[k + 1] == pytest.approx(roc_auc_score(a, s, sample_weight=w[k]))
    assert np.isnan(weighted_auc(s, np.zeros(60, bool), np.ones((1, 60))))[0]


def test_resampling_whole_lesions_keeps_their_images_together() -> None:
    lesions = np.repeat(np.arange(20), 3)
    for chunk in resample_counts(60, 25, seed=0, clusters=lesions):
        per = chunk.reshape(len(chunk), 20, 3)
        assert (per == per[:, :, :1]).all()
        np.testing.assert_allclose(chunk.sum(axis=1), 60)


def test_per_row_thresholds_equal_a_scalar_and_are_recorded() -> None:
    d = _data(n=200)
    g = {"ita": d["tone"]}
    a = fairness_audit(d["y"], d["probs"], CLASSES, g, "mel", 0.3, n_boot=10)
    b = fairness_audit(d["y"], d["probs"], CLASSES, g, "mel", np.full(200, 0.3), n_boot=10)
    assert a["groupings"] == b["groupings"]
    assert a["threshold"] == 0.3 and b["threshold"] == {"per_row": True, "distinct": [0.3]}


def test_bad_inputs_name_the_problem() -> None:
    d = _data(n=50)
    with pytest.raises(DataError, match="grouping 'sex' has 3 values for 50 rows"):
        fairness_audit(d["y"], d["probs"], CLASSES, {"sex": ["f", "m", "f"]}, "mel", 0.5)
    with pytest.raises(ConfigError, match="positive_class 'scc'"):
        fairness_audit(d["y"], d["probs"], CLASSES, {}, "scc", 0.5)
    with pytest.raises(ConfigError, match=r"thresholds must lie in \[0, 1\]"):
        fairness_audit(d["y"], d["probs"], CLASSES, {}, "mel", 1.5)
    with pytest.raises(DataError, match="label 3 at row 0"):
        fairness_audit(np.r_[3, d["y"][1:]], d["probs"], CLASSES, {}, "mel", 0.5)
    with pytest.raises(ConfigError, match="mode must be"):
        recalibrate_thresholds(d["y"], d["probs"], CLASSES, d["tone"], "mel", 0.8, mode="each")


# --- recalibration --------------------------------------------------------------------------


def _brute_global(y, probs, groups, gamma, step, tol):
    """The global rule spelled out with scikit-learn, one grid threshold at a time."""
    actual, s = (y == POS).astype(int), probs[:, POS]
    base = choose_threshold(y, probs, CLASSES, "mel", gamma, step)
    rows = []
    for t in threshold_grid(step):
        d = (s >= t).astype(int)
        rec, f1 = recall_score(actual, d), f1_score(actual, d)
        per = [recall_score(actual[groups == g], d[groups == g]) for g in ("dark", "light")]
        if rec >= gamma and f1 >= base["val_f1"] - tol - 1e-12:
            rows.append((round(max(per) - min(per), 12), -f1, t))
    return min(rows)[2]


@pytest.mark.parametrize("tol", [0.0, 0.05, 0.2])
def test_global_recalibration_follows_the_rule(tol: float) -> None:
    d = _data(n=500, seed=2)
    choice = recalibrate_thresholds(d["y"], d["probs"], CLASSES, d["tone"], "mel", 0.7, f1_tolerance=tol)
    json.dumps(choice, allow_nan=False)
    assert choice["threshold"] == pytest.approx(_brute_global(d["y"], d["probs"], d["tone"], 0.7, 0.02, tol))
    assert choice["chosen"]["val_recall"] >= 0.7
    assert choice["chosen"]["val_recall_gap"] <= choice["baseline"]["val_recall_gap"] + 1e-12
    if tol == 0.0:  # no F1 to give away: only thresholds as good as the baseline's
        assert choice["chosen"]["val_f1"] == pytest.approx(choice["baseline"]["val_f1"])


def test_f1_floor_keeps_the_everything_positive_threshold_out() -> None:
    d = _data(n=500, seed=2)
    loose = recalibrate_thresholds(d["y"], d["probs"], CLASSES, d["tone"], "mel", 0.7, f1_tolerance=1.0)
    strict = recalibrate_thresholds(d["y"], d["probs"], CLASSES, d["tone"], "mel", 0.7, f1_tolerance=0.05)
    assert loose["chosen"]["val_recall_gap"] == 0.0 and loose["chosen"]["val_recall"] == 1.0
    assert strict["threshold"] > loose["threshold"]
    assert strict["chosen"]["val_f1"] >= strict["baseline"]["val_f1"] - 0.05


def test_per_group_recalibration_applies_the_baseline_rule_within_each_group() -> None:
    d = _data(n=500, seed=4)
    choice = recalibrate_thresholds(d["y"], d["probs"], CLASSES, d["tone"], "mel", 0.8, mode="per_group")
    for g in ("dark", "light"):
        rows = d["tone"] == g
        own = choose_threshold(d["y"][rows], d["probs"][rows], CLASSES, "mel", 0.8)
        assert choice["thresholds"][g] == own["threshold"]
        assert choice["chosen"]["val_group_recall"][g] >= 0.8
    assert (
        choice["baseline"]["threshold"]
        == choose_threshold(d["y"], d["probs"], CLASSES, "mel", 0.8)["threshold"]
    )


def test_groups_without_positives_unseen_or_missing_get_the_default() -> None:
    y = np.array([1, 0, 1, 0, 0, 0, 1, 0])
    s = np.array([0.9, 0.2, 0.7, 0.4, 0.3, 0.1, 0.6, 0.5])
    probs = np.column_stack([1 - s, s])
    g = np.array(["a", "a", "b", "b", "c", "c", "a", "b"], dtype=object)
    choice = recalibrate_thresholds(y, probs, ["benign", "malignant"], g, "malignant", 0.9, mode="per_group")
    assert choice["thresholds"]["c"] == choice["default"]
    t = thresholds_for_rows(["a", "zzz", None, "c"], choice)
    assert t.tolist() == [choice["thresholds"]["a"], choice["default"], choice["default"], choice["default"]]
    dec = apply_thresholds(probs[:4], ["benign", "malignant"], ["a", "zzz", None, "c"], choice)
    np.testing.assert_array_equal(dec, (s[:4] >= t).astype(int))


def test_apply_thresholds_uses_the_triage_rule_on_three_classes() -> None:
    d = _data(n=100)
    choice = recalibrate_thresholds(d["y"], d["probs"], CLASSES, d["tone"], "mel", 0.7, mode="per_group")
    dec = apply_thresholds(d["probs"], CLASSES, d["tone"], choice)
    t = thresholds_for_rows(d["tone"], choice)
    called = d["probs"][:, POS] >= t
    assert (dec[called] == POS).all()
    others = d["probs"][~called][:, [0, 2]].argmax(axis=1)
    np.testing.assert_array_equal(dec[~called], np.array([0, 2])[others])


def test_test_labels_never_change_the_chosen_thresholds() -> None:
    val, test = _data(n=400, seed=10), _data(n=300, seed=11)
    for mode in ("global", "per_group"):
        choice = recalibrate_thresholds(val["y"], val["probs"], CLASSES, val["tone"], "mel", 0.75, mode=mode)
        frozen = json.dumps(choice, sort_keys=True)
        reports = []
        for labels in (test["y"], np.random.default_rng(0).permutation(test["y"]), np.full(300, POS)):
            rep = recalibration_report(
                labels, test["probs"], CLASSES, {"ita": test["tone"]}, choice, test["tone"], n_boot=5
            )
            assert json.dumps(rep["choice"], sort_keys=True) == frozen
            assert rep["before"]["threshold"] == choice["default"]
            reports.append(rep)
        assert json.dumps(choice, sort_keys=True) == frozen  # nothing wrote into it
        after = {tuple(r["after"]["threshold"]["distinct"]) for r in reports}
        assert len(after) == 1
        # the audited numbers do follow the labels, so the report really read them
        assert reports[0]["after"]["overall"]["recall"] != reports[1]["after"]["overall"]["recall"]
    # whereas validation labels do move the choice
    flipped = np.where(val["tone"] == "dark", np.random.default_rng(1).permutation(val["y"]), val["y"])
    a = recalibrate_thresholds(val["y"], val["probs"], CLASSES, val["tone"], "mel", 0.75, mode="per_group")
    b = recalibrate_thresholds(flipped, val["probs"], CLASSES, val["tone"], "mel", 0.75, mode="per_group")
    assert a["thresholds"] != b["thresholds"]


def test_no_positive_on_validation_gives_no_threshold_and_a_clear_error_later() -> None:
    d = _data(n=60)
    y = np.zeros(60, dtype=int)
    choice = recalibrate_thresholds(y, d["probs"], CLASSES, d["tone"], "mel", 0.8)
    assert choice["threshold"] is None and "no mel cases" in choice["reason"]
    with pytest.raises(ConfigError, match="no threshold was chosen on validation"):
        apply_thresholds(d["probs"], CLASSES, d["tone"], choice)
