"""Numbers a reviewer can trust: trivial results flagged, recalibration that refuses them,
calibration as the library computes it, the screening metrics the field reports."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchmetrics.functional.classification import multiclass_calibration_error

from dermbench.evaluation.bootstrap import bootstrap_report
from dermbench.evaluation.calibration import calibration_report
from dermbench.evaluation.degenerate import classifier_flags, operating_point_flags
from dermbench.evaluation.recalibration import recalibrate_thresholds
from dermbench.evaluation.screening import screening_report

BINARY = ["benign", "malignant"]


def _weak(n: int, prevalence: float, seed: int, skill: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < prevalence).astype(int)
    s = np.clip(rng.random(n) * (1 - skill) + skill * y * rng.random(n), 0, 1)
    return y, np.column_stack([1 - s, s])


def test_an_all_positive_operating_point_is_flagged():
    actual = np.array([1, 0, 1, 0, 0, 1, 0, 1] * 10, dtype=bool)
    flags = operating_point_flags(actual, np.ones(80, dtype=bool))
    assert [f["code"] for f in flags] == ["all_positive"] and "100.0%" in flags[0]["message"]
    assert [f["code"] for f in operating_point_flags(actual, np.zeros(80, dtype=bool))] == ["all_negative"]
    assert operating_point_flags(actual, actual) == []  # a perfect classifier is no trivial one


def test_an_f1_within_noise_of_calling_everyone_positive_is_flagged():
    rng = np.random.default_rng(0)
    actual = rng.random(300) < 0.5
    decided = rng.random(300) < 0.9  # calls 90% positive at random: not all, but no better
    codes = [f["code"] for f in operating_point_flags(actual, decided)]
    assert codes == ["f1_as_all_positive"]


def test_one_class_predictions_are_flagged():
    assert classifier_flags(np.zeros(100, dtype=int), ["nv", "mel"])[0]["code"] == "one_class"
    assert classifier_flags(np.r_[np.zeros(90), np.ones(10)].astype(int), ["nv", "mel"]) == []


def test_recalibration_refuses_a_flag_everyone_threshold():
    """At 52% prevalence, calling everyone positive has gap 0 and an F1 inside the floor."""
    y, p = _weak(400, 0.52, seed=1, skill=0.25)
    groups = np.where(np.random.default_rng(2).random(400) < 0.5, "light", "dark").astype(object)
    choice = recalibrate_thresholds(y, p, BINARY, groups, "malignant", 0.85, mode="global", f1_tolerance=0.2)
    rate = float(np.mean(p[:, 1] >= choice["threshold"]))  # the old rule chose 0.04: 98% positive
    assert 0.02 < rate < 0.98, choice
    per = recalibrate_thresholds(y, p, BINARY, groups, "malignant", 0.85, mode="per_group")
    for g, t in per["thresholds"].items():
        rows = groups == g
        assert np.mean(p[rows, 1] >= t) < 0.98 or "baseline" in (per["group_choices"][g]["reason"] or "")


def test_ece_is_the_librarys_and_the_bins_add_up_to_it():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 400)
    p = rng.dirichlet([2, 1, 1], 400)
    report = calibration_report(y, p)
    lib = multiclass_calibration_error(torch.tensor(p), torch.tensor(y), num_classes=3, n_bins=15, norm="l1")
    assert report["ece"] == pytest.approx(float(lib))
    from_bins = sum(b["fraction"] * abs(b["accuracy"] - b["confidence"]) for b in report["bins"])
    assert from_bins == pytest.approx(report["ece"], abs=1e-6)
    assert sum(b["fraction"] for b in report["bins"]) == pytest.approx(1.0)


def test_ece_of_a_hand_computed_case():
    # two cases at confidence 0.9 (one right), two at 0.6 (both right): |0.5-0.9|/2 + |1-0.6|/2
    p = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    y = np.array([0, 1, 0, 0])
    assert calibration_report(y, p)["ece"] == pytest.approx(0.5 * 0.4 + 0.5 * 0.4)


def test_screening_metrics_on_curves_with_known_areas():
    actual = np.r_[np.ones(50), np.zeros(50)].astype(bool)
    perfect = screening_report(actual, actual.astype(float))
    assert perfect["auc"] == 1.0 and perfect["auc_above_sensitivity"]["0.80"] == pytest.approx(1.0)
    assert perfect["sensitivity_at_specificity"]["0.90"] == 1.0
    rng = np.random.default_rng(4)
    actual = rng.random(20000) < 0.5
    chance = screening_report(actual, rng.random(20000))
    assert chance["auc"] == pytest.approx(0.5, abs=0.02)
    assert chance["auc_above_sensitivity"]["0.80"] == pytest.approx(0.18, abs=0.01)  # int_0.8^1 x dx
    assert chance["sensitivity_at_specificity"]["0.90"] == pytest.approx(0.10, abs=0.02)


def test_every_bootstrap_interval_contains_its_estimate_or_says_why_not():
    for seed in range(5):
        y, p = _weak(60, 0.3, seed)
        report = bootstrap_report(y, p, BINARY, ("macro_f1", "macro_auc", "operating_point.f1"), n_boot=200,
                                  seed=seed, positive_class="malignant", threshold=0.5)  # fmt: skip
        for m, ci in report.items():
            if ci["low"] is not None:
                assert ci["contains_estimate"] is True, m
            else:
                assert ci["contains_estimate"] is False and "does not contain the estimate" in ci["note"]


def test_an_interval_that_would_exclude_its_estimate_is_not_reported():
    from dermbench.evaluation.resample import percentile_interval

    skewed = percentile_interval(np.repeat([0.5, 0.6, 0.7, 0.8], 10), 0.05, estimate=0.1)
    assert (skewed.low, skewed.high, skewed.contains_estimate) == (None, None, False)
    assert "does not contain the estimate 0.1" in skewed.note
    fine = percentile_interval(np.repeat([0.5, 0.6, 0.7, 0.8], 10), 0.05, estimate=0.65)
    assert fine.low <= 0.65 <= fine.high and fine.contains_estimate
    some = percentile_interval(np.r_[np.full(30, np.nan), np.linspace(0, 1, 70)], 0.05, estimate=0.5)
    assert some.conditional and some.n_boot_used == 70 and "70 of 100 resamples" in some.note
