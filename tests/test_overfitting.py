"""The overfitting report (Table II of Matas et al.) against hand computations and numpy.polyfit."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dermbench.evaluation.overfitting import overfitting_report, slope, stage_spans, table_rows


def _row(stage, epoch, tl, vl, ta, va, **extra):
    return {"stage": stage, "epoch": epoch, "train_loss": tl, "val_loss": vl, "train_accuracy": ta,
            "val_accuracy": va, **extra}  # fmt: skip


HISTORY = [
    _row("frozen", 1, 0.145, 0.150, 0.45, 0.44),
    _row("frozen", 2, 0.130, 0.140, 0.50, 0.47),
    _row("frozen", 3, 0.120, 0.135, 0.52, 0.50),
    _row("finetune", 1, 0.100, 0.125, 0.58, 0.55),
    _row("finetune", 2, 0.080, 0.118, 0.63, 0.58),
    _row("finetune", 3, 0.060, 0.115, 0.70, 0.60),
]


def test_values_changes_and_signed_gaps_by_hand():
    rep = overfitting_report(HISTORY)
    tl = rep["series"]["train_loss"]
    assert (tl["initial"], tl["final"]) == (0.145, 0.060)
    assert tl["change"] == pytest.approx(-0.085)
    assert tl["pct_change"] == pytest.approx(-0.085 / 0.145 * 100)  # -58.6%, as Table II computes it
    va = rep["series"]["val_accuracy"]
    assert va["pct_change"] == pytest.approx((0.60 - 0.44) / 0.44 * 100)
    loss_gap = rep["gap"]["val_minus_train_loss"]  # validation minus training: > 0 overfits
    assert loss_gap["initial"] == pytest.approx(0.005) and loss_gap["final"] == pytest.approx(0.055)
    acc_gap = rep["gap"]["train_minus_val_accuracy"]  # training minus validation: > 0 overfits
    assert acc_gap["initial"] == pytest.approx(0.01) and acc_gap["final"] == pytest.approx(0.10)
    assert [p["val_minus_train_loss"] for p in rep["per_epoch"]] == pytest.approx(
        [r["val_loss"] - r["train_loss"] for r in HISTORY]
    )


def test_slopes_per_stage_equal_numpy_polyfit_on_end_to_end_epochs():
    rep = overfitting_report(HISTORY)
    assert rep["stages"] == [
        {"stage": "frozen", "first_epoch": 1, "last_epoch": 3},
        {"stage": "finetune", "first_epoch": 4, "last_epoch": 6},
    ]
    for key in ("train_loss", "val_loss", "train_accuracy", "val_accuracy"):
        ys = [r[key] for r in HISTORY]
        slopes = rep["series"][key]["slope_per_stage"]
        assert slopes["frozen"] == pytest.approx(np.polyfit([1, 2, 3], ys[:3], 1)[0])
        assert slopes["finetune"] == pytest.approx(np.polyfit([4, 5, 6], ys[3:], 1)[0])
    gap = [r["train_accuracy"] - r["val_accuracy"] for r in HISTORY]
    assert rep["gap"]["train_minus_val_accuracy"]["slope"] == pytest.approx(
        np.polyfit(range(1, 7), gap, 1)[0]
    )


def test_boundaries_come_from_the_run_not_a_fixed_epoch():
    one_stage = [_row("train", e, 1.0 / e, 1.1 / e, 0.1 * e, 0.09 * e) for e in range(1, 6)]
    rep = overfitting_report(one_stage)
    assert [s["stage"] for s in rep["stages"]] == ["train"]
    assert rep["series"]["val_loss"]["slope_per_stage"]["train"] == pytest.approx(
        np.polyfit(range(1, 6), [1.1 / e for e in range(1, 6)], 1)[0]
    )
    assert stage_spans([]) == []


def test_missing_values_are_left_out_and_single_points_have_no_slope():
    rows = [_row("a", 1, 0.5, math.nan, 0.4, None), _row("b", 1, 0.4, 0.6, 0.5, 0.45)]
    rep = overfitting_report(rows)
    assert rep["series"]["val_loss"]["initial"] == 0.6  # the NaN epoch is left out
    assert rep["series"]["train_loss"]["slope_per_stage"] == {"a": None, "b": None}
    assert rep["gap"]["val_minus_train_loss"]["initial"] == pytest.approx(0.2)
    assert rep["per_epoch"][0]["val_minus_train_loss"] is None
    assert slope([1.0], [2.0]) is None
    assert overfitting_report([])["series"]["train_loss"] is None


def test_an_ensemble_reports_every_fold_and_fold_zero_on_top():
    folds = [dict(r, fold=f) for f in (0, 1) for r in HISTORY[: 3 + f]]
    rep = overfitting_report(folds)
    assert len(rep["folds"]) == 2 and rep["epochs"] == 3 and rep["folds"][1]["epochs"] == 4


def test_table_rows_hold_one_slope_column_per_stage():
    header, rows = table_rows(overfitting_report(HISTORY))
    assert header[-2:] == ["slope frozen", "slope finetune"]
    assert [r[0] for r in rows] == [
        "train_loss", "val_loss", "train_accuracy", "val_accuracy", "val_minus_train_loss", "train_minus_val_accuracy",
    ]  # fmt: skip
