"""The overfitting report of Table II of Matas et al., "Mitigating Overfitting in Medical Imaging:
Self-Supervised Pretraining vs. ImageNet Transfer Learning for Dermatological Diagnosis", for any
run's history.

For training and validation loss and accuracy: the first and final value, the overall change, the
% change (relative to the first value's magnitude) and the least-squares slope over each of the
run's stages (``numpy.polyfit`` of the value on the epoch, degree 1; the stage boundaries are the
run's own, e.g. frozen -> fine-tuned). And the generalisation gap, signed as Table II signs it:
**validation minus training loss** and **training minus validation accuracy**, so a positive gap
means overfitting for both; its value at the first and last epoch, its change and its slope over
all epochs, and its value per epoch.

Epochs are counted end to end over the stages (1, 2, ... in the order trained), so a slope is per
epoch. Rows without both a training and a validation value of a quantity are left out of it.
A cross-validation ensemble gets one report per fold (``folds``); the top level is fold 0's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

SERIES = ("train_loss", "val_loss", "train_accuracy", "val_accuracy")
GAPS = {
    "val_minus_train_loss": ("val_loss", "train_loss"),
    "train_minus_val_accuracy": ("train_accuracy", "val_accuracy"),
}


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v) if math.isfinite(v) else None


def slope(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """The least-squares slope of ``ys`` on ``xs``; None with fewer than two points."""
    if len(xs) < 2:
        return None
    return float(np.polyfit(np.asarray(xs, float), np.asarray(ys, float), 1)[0])


def stage_spans(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Consecutive rows of one stage, as ``{"stage", "first_epoch", "last_epoch"}`` (end-to-end epochs)."""
    spans: list[dict[str, Any]] = []
    for epoch, row in enumerate(rows, start=1):
        name = row.get("stage")
        if spans and spans[-1]["stage"] == name:
            spans[-1]["last_epoch"] = epoch
        else:
            spans.append({"stage": name, "first_epoch": epoch, "last_epoch": epoch})
    return spans


def series_summary(xs: list[float], ys: list[float], spans: list[dict]) -> dict[str, Any] | None:
    if not ys:
        return None
    first, final = ys[0], ys[-1]
    slopes = {}
    for span in spans:
        pts = [(x, y) for x, y in zip(xs, ys, strict=True) if span["first_epoch"] <= x <= span["last_epoch"]]
        slopes[str(span["stage"])] = slope([p[0] for p in pts], [p[1] for p in pts])
    return {
        "initial": first,
        "final": final,
        "change": final - first,
        "pct_change": 100.0 * (final - first) / abs(first) if first != 0 else None,
        "slope_per_stage": slopes,
    }


def _points(rows: Sequence[Mapping[str, Any]], get: Any) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for epoch, row in enumerate(rows, start=1):
        v = get(row)
        if v is not None:
            xs.append(float(epoch))
            ys.append(v)
    return xs, ys


def _gap_value(row: Mapping[str, Any], a: str, b: str) -> float | None:
    x, y = _number(row.get(a)), _number(row.get(b))
    return None if x is None or y is None else x - y


def report_one(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Table II for one model's history (the rows of every stage, in training order)."""
    rows = [
        r for r in rows if _number(r.get("train_loss")) is not None or _number(r.get("val_loss")) is not None
    ]
    spans = stage_spans(rows)
    series = {k: series_summary(*_points(rows, lambda r, k=k: _number(r.get(k))), spans) for k in SERIES}
    gaps = {}
    for name, (a, b) in GAPS.items():
        xs, ys = _points(rows, lambda r, a=a, b=b: _gap_value(r, a, b))
        summary = series_summary(xs, ys, spans)
        if summary is not None:
            summary["slope"] = slope(xs, ys)
        gaps[name] = summary
    per_epoch = [
        {"epoch": e, "stage": r.get("stage"), **{n: _gap_value(r, a, b) for n, (a, b) in GAPS.items()}}
        for e, r in enumerate(rows, start=1)
    ]
    return {"epochs": len(rows), "stages": spans, "series": series, "gap": gaps, "per_epoch": per_epoch}


def overfitting_report(history: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The report of a run's history: one model's, or fold 0's with every fold's under ``folds``."""
    folds = sorted({r["fold"] for r in history if r.get("fold") is not None})
    if not folds:
        return report_one(history)
    per_fold = [report_one([r for r in history if r.get("fold") == f]) for f in folds]
    return {**per_fold[0], "folds": per_fold}


def table_rows(report: Mapping[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """Table II as rows: one per quantity and gap, a slope column per stage."""
    stages = [str(s["stage"]) for s in report.get("stages") or []]
    header = ["quantity", "initial", "final", "change", "% change", *[f"slope {s}" for s in stages]]
    rows = []
    for name, summary in [*(report.get("series") or {}).items(), *(report.get("gap") or {}).items()]:
        if not summary:
            continue
        slopes = summary.get("slope_per_stage") or {}
        rows.append([name, summary["initial"], summary["final"], summary["change"], summary["pct_change"],
                     *[slopes.get(s) for s in stages]])  # fmt: skip
    return header, rows
