"""Fairness audit against scikit-learn on each subgroup directly, signed differences against a
brute-force loop over the same resamples, small groups and trivial operating points kept out of
the comparisons, and threshold recalibration that only ever sees validation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

from dermbench.errors import ConfigError, DataError
from dermbench.evaluation.fairness import fairness_audit
from dermbench.evaluation.metrics import choose_threshold, threshold_grid
from dermbench.evaluation.recalibration import (
    apply_thresholds,
    recalibrate_thresholds,
    recalibration_report,
    thresholds_for_rows,
)
from dermbench.evaluation.resample import resample_weights
from dermbench.evaluation.weighted import weighted_auc

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


def test_differences_are_reference_minus_group_with_the_paper_sign_for_ita() -> None:
    d = _data()
    out = fairness_audit(d["y"], d["probs"], CLASSES, {"ita": d["tone"]}, "mel", 0.3, n_boot=50,
                         schemes={"ita": "binary28"})  # fmt: skip
    grouping = out["groupings"]["ita"]
    rows = {r["group"]: r for r in grouping["groups"]}
    assert grouping["reference"] == "light" and grouping["difference"] == "reference - group"
    for m in ("auc", "recall", "precision", "f1", "fnr", "specificity"):
        (diff,) = grouping["differences"][m]
        assert diff["group"] == "dark"
        assert diff["value"] == pytest.approx(rows["light"][m] - rows["dark"][m])  # light minus dark
        assert diff["low"] <= diff["high"] and diff["n_boot"] == 50
    assert grouping["differences"]["auc"][0]["value"] > 0  # the weaker signal on 'dark' shows up
    assert grouping["worst_group"]["auc"]["group"] == "dark"


def test_without_a_named_reference_the_largest_group_is_the_reference() -> None:
    d = _data()
    out = fairness_audit(d["y"], d["probs"], CLASSES, {"sex": d["sex"]}, "mel", 0.3, n_boot=0)
    g = out["groupings"]["sex"]
    largest = max(g["groups"], key=lambda r: r["n"])["group"]
    assert g["reference"] == largest and "largest" in g["reference_rule"]
    assert [x["group"] for x in g["differences"]["recall"]] == [
        r["group"] for r in g["groups"] if r["group"] != largest
    ]


def test_differences_equal_a_brute_force_loop_over_the_same_lesion_resamples() -> None:
    d = _data(n=150, seed=1)
    lesions = np.arange(150) // 2
    labels = d["tone"]
    out = fairness_audit(d["y"], d["probs"], CLASSES, {"ita": labels}, "mel", 0.35, n_boot=40, seed=7,
                         resample_groups=lesions, schemes={"ita": "binary28"}, min_group={"positives": 1, "negatives": 1})  # fmt: skip
    counts = np.concatenate(list(resample_weights(150, 40, seed=7, groups=lesions)))
    diffs: dict[str, list[float]] = {"auc": [], "recall": [], "precision": []}
    for c in counts:
        idx = np.repeat(np.arange(150), c.astype(int))
        per = {}
        for g in ("light", "dark"):
            sub = idx[labels[idx] == g]
            actual, score = (d["y"][sub] == POS).astype(int), d["probs"][sub, POS]
            dec = (score >= 0.35).astype(int)
            per[g] = {
                "auc": roc_auc_score(actual, score) if 0 < actual.sum() < len(actual) else np.nan,
                "recall": recall_score(actual, dec) if actual.sum() else np.nan,
                "precision": precision_score(actual, dec) if dec.sum() else np.nan,
            }
        for m in diffs:
            diffs[m].append(per["light"][m] - per["dark"][m])
    for m, values in diffs.items():
        v = np.array(values)
        v = v[~np.isnan(v)]
        low, high = np.percentile(v, [2.5, 97.5])
        (got,) = out["groupings"]["ita"]["differences"][m]
        assert (got["low"], got["high"], got["n_boot_used"]) == (
            pytest.approx(low),
            pytest.approx(high),
            len(v),
        )
    assert out["resampling"] == "groups"


def test_every_reported_interval_contains_its_estimate_or_says_why_not() -> None:
    checked = 0
    for seed in range(4):
        d = _data(n=160, seed=seed)
        out = fairness_audit(d["y"], d["probs"], CLASSES, {"fitz": d["fitz"], "ita": d["tone"]}, "mel", 0.3,
                             n_boot=200, seed=seed, min_group={"images": 10, "positives": 2, "negatives": 2})  # fmt: skip
        for grouping in out["groupings"].values():
            for entries in grouping["differences"].values():
                for e in entries:
                    checked += 1
                    if e.get("low") is not None:
                        assert e["low"] - 1e-12 <= e["value"] <= e["high"] + 1e-12
                        assert e["contains_estimate"] is True
                    elif e.get("contains_estimate") is False:
                        assert "does not contain the estimate" in e["note"]
    assert checked > 50


def test_small_groups_are_shown_but_not_compared_and_conditional_intervals_say_so() -> None:
    d = _data(n=300, seed=2)
    tone = d["tone"].copy()
    tone[:6] = "rare"  # six images: below the minimum group size
    out = fairness_audit(d["y"], d["probs"], CLASSES, {"ita": tone}, "mel", 0.3, n_boot=100,
                         schemes={"ita": "binary28"})  # fmt: skip
    g = out["groupings"]["ita"]
    rare = next(r for r in g["groups"] if r["group"] == "rare")
    assert rare["usable"] is False and "6 images < 30" in rare["not_used"]
    assert all(x["group"] != "rare" for x in g["differences"]["recall"])
    assert g["worst_group"]["recall"]["group"] != "rare"
    rare = np.where(np.arange(300) < 12, "rare", "light").astype(object)
    y = d["y"].copy()
    y[:12] = [POS, POS] + [0] * 10  # two positives: about e^-2 of the resamples draw neither
    few = fairness_audit(y, d["probs"], CLASSES, {"ita": rare}, "mel", 0.3, n_boot=200,
                         schemes={"ita": "binary28"}, min_group={"images": 1, "positives": 1, "negatives": 1})  # fmt: skip
    conditional = [e for e in few["groupings"]["ita"]["differences"]["auc"] if e.get("conditional")]
    assert conditional, "two positives in the group: some resamples leave its AUC undefined"
    for e in conditional:
        assert e["n_boot_used"] < 200 and f"{e['n_boot_used']} of 200" in e["note"]


def test_a_flag_everyone_point_is_not_a_fairness_result() -> None:
    d = _data(n=200)
    out = fairness_audit(d["y"], d["probs"], CLASSES, {"ita": d["tone"]}, "mel", 0.0, n_boot=20,
                         schemes={"ita": "binary28"})  # fmt: skip
    assert out["fairness_result"] is False and "100.0% of images positive" in out["not_a_fairness_result"]
    assert [f["code"] for f in out["flags"]] == ["all_positive"]
    assert all(r["flags"][0]["code"] == "all_positive" for r in out["groupings"]["ita"]["groups"])
    g = out["groupings"]["ita"]
    assert (
        list(g["differences"]) == ["auc"] and "trivial operating point" in g["withheld"]
    )  # no recall gap "0"
    assert g["equalized_odds_difference"] is None and "recall" not in g["worst_group"]


def test_equalized_odds_difference_is_fairlearns() -> None:
    from fairlearn.metrics import equalized_odds_difference

    d = _data()
    out = fairness_audit(d["y"], d["probs"], CLASSES, {"ita": d["tone"]}, "mel", 0.3, n_boot=0)
    expected = equalized_odds_difference((d["y"] == POS).astype(int), (d["probs"][:, POS] >= 0.3).astype(int),
                                         sensitive_features=d["tone"].astype(str))  # fmt: skip
    assert out["groupings"]["ita"]["equalized_odds_difference"] == pytest.approx(expected)


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
    assert all(not r["usable"] for r in rows.values())  # every group is below the minimum size
    assert out["groupings"]["g"]["differences"] == {} and out["groupings"]["g"]["reference"] is None


def test_grouping_without_any_label_and_lesion_resampling() -> None:
    d = _data(n=120)
    lesions = np.arange(120) // 2
    groups = {"none": [None] * 120, "ita": d["tone"]}
    out = fairness_audit(d["y"], d["probs"], CLASSES, groups, "mel", 0.3, n_boot=20, resample_groups=lesions)
    json.dumps(out, allow_nan=False)
    assert out["groupings"]["none"]["groups"] == [] and out["groupings"]["none"]["n_missing"] == 120
    assert out["groupings"]["none"]["reference"] is None
    assert out["resampling"] == "groups"


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
    for chunk in resample_weights(60, 25, seed=0, groups=lesions):
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


def test_flags_the_record_already_holds_give_the_same_audit() -> None:
    from dermbench.evaluation.degenerate import operating_point_flags

    d = _data(n=200, seed=3)
    lesions = np.arange(200) // 2
    args = (d["y"], d["probs"], CLASSES, {"ita": d["tone"]}, "mel", 0.0)
    fresh = fairness_audit(*args, n_boot=20, resample_groups=lesions)
    known = operating_point_flags(d["y"] == POS, d["probs"][:, POS] >= 0.0, groups=lesions)
    reused = fairness_audit(
        *args, n_boot=20, resample_groups=lesions, known_flags=[*known, {"code": "one_class"}]
    )
    assert reused == fresh  # the argmax flag is not the operating point's, so it is left out
