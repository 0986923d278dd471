"""PNG plots for the method pages, drawn with matplotlib's object API on the Agg canvas.

No pyplot: figures are plain objects, so building a site leaves no global state behind and
needs no display. Text that comes from a run record (class names) goes through ``_text`` so that
a ``$`` cannot switch matplotlib into math mode and fail to parse.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

DPI = 100
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


def _text(s: object) -> str:
    return str(s).replace("$", r"\$")


def _figure(width: float, height: float, left=0.9, right=0.3, bottom=0.6, top=0.45, **grid) -> Figure:
    """A figure with fixed margins in inches: a layout engine would cost more than the drawing."""
    fig = Figure(figsize=(width, height))
    fig.subplots_adjust(
        left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height, **grid
    )
    return fig


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, format="png")
    return path


def _matrix(ax, values: np.ndarray, rows: Sequence[str], cols: Sequence[str], fmt, vmax: float) -> None:
    shown = np.ma.masked_invalid(values)
    im = ax.imshow(shown, cmap="viridis", vmin=0.0, vmax=vmax, aspect="auto")
    ax.set_xticks(range(len(cols)), [_text(c) for c in cols], rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), [_text(r) for r in rows])
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            v = values[i, j]
            label = "n/a" if not np.isfinite(v) else fmt(i, j)
            dark = np.isfinite(v) and v < 0.6 * vmax
            ax.text(j, i, label, ha="center", va="center", fontsize=8, color="white" if dark else "black")
    ax.figure.colorbar(im, ax=ax, fraction=0.04, pad=0.02)


def per_class_heatmap(values: np.ndarray, rows: Sequence[str], classes: Sequence[str], path: Path) -> Path:
    """F1 per class (columns) for each seed and their mean (rows)."""
    width = 2.6 + 0.75 * len(classes)
    fig = _figure(width, 1.6 + 0.45 * len(rows), left=1.0, right=1.0, bottom=1.0, top=0.4)
    ax = fig.subplots()
    _matrix(ax, values, rows, classes, lambda i, j: f"{values[i, j]:.2f}", 1.0)
    ax.set_title("Test F1 per class")
    ax.set_xlabel("class")
    ax.set_ylabel("seed")
    return _save(fig, path)


def confusion(counts: np.ndarray, classes: Sequence[str], path: Path, title: str) -> Path:
    """Colour is the row-normalised rate (recall on the diagonal); the text is the count."""
    rows = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(rows > 0, counts / np.where(rows > 0, rows, 1), np.nan)
    size = 2.5 + 0.6 * len(classes)
    fig = _figure(size + 1.4, size + 0.6, left=1.1, right=1.2, bottom=1.2, top=0.4)
    ax = fig.subplots()
    _matrix(ax, rate, classes, classes, lambda i, j: f"{int(counts[i, j])}", 1.0)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(_text(title))
    return _save(fig, path)


@dataclass
class Series:
    label: str
    history: list[dict]
    gap: list[dict]


def _xy(rows: list[dict], key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for i, r in enumerate(rows, start=1):
        v = r.get(key)
        if isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v):
            xs.append(float(i))
            ys.append(float(v))
    return xs, ys


def learning_curves(series: Sequence[Series], path: Path) -> Path:
    """Loss, accuracy and the train - validation gap per epoch, one colour per seed.

    Epochs of successive stages (or folds) are laid end to end; a dotted line marks a new stage.
    The gap is signed as Table II of Matas et al.: training minus validation accuracy, validation
    minus training loss, so above zero means overfitting for both.
    """
    fig = _figure(13, 3.6, left=0.6, right=0.2, bottom=0.55, top=0.35, wspace=0.25)
    ax_loss, ax_acc, ax_gap = fig.subplots(1, 3)
    for n, s in enumerate(series):
        c = COLORS[n % len(COLORS)]
        for ax, key in ((ax_loss, "loss"), (ax_acc, "accuracy")):
            for split, style in (("train", "-"), ("val", "--")):
                xs, ys = _xy(s.history, f"{split}_{key}")
                if xs:
                    ax.plot(xs, ys, style, color=c, marker=".", label=f"{_text(s.label)} {split}")
        for key, style, name in (
            ("train_minus_val_accuracy", "-", "acc"),
            ("val_minus_train_loss", ":", "loss"),
        ):
            xs, ys = _xy(s.gap, key)
            if xs:
                ax_gap.plot(xs, ys, style, color=c, marker=".", label=f"{_text(s.label)} {name}")
        if n == 0:
            stages = [(r.get("stage"), r.get("fold")) for r in s.history]  # a new stage or fold
            for i in range(1, len(stages)):
                if stages[i] != stages[i - 1]:
                    for ax in (ax_loss, ax_acc, ax_gap):
                        ax.axvline(i + 0.5, color="grey", linestyle=":", linewidth=1)
    ax_gap.axhline(0.0, color="grey", linewidth=0.8)
    for ax, title, ylabel in (
        (ax_loss, "Loss (solid train, dashed val)", "loss"),
        (ax_acc, "Accuracy (solid train, dashed val)", "accuracy"),
        (ax_gap, "Gap (> 0 overfits): train - val acc, val - train loss", "gap"),
    ):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole: no 1.5 tick
        if ax.lines:
            ax.legend(fontsize=7)
    return _save(fig, path)


@dataclass
class Curve:
    """One ROC/PR curve; ``op`` is the operating point as (fpr, tpr, recall, precision)."""

    label: str
    fpr: np.ndarray
    tpr: np.ndarray
    recall: np.ndarray
    precision: np.ndarray
    auc: float | None
    op: tuple[float, float, float, float] | None = None
    color_index: int = 0


def auc_legend(curves: Sequence[Curve]) -> dict[str, str]:
    """Each label's legend text: its AUC, or the mean +- std of its curves' AUCs and their count."""
    aucs: dict[str, list[float]] = {}
    for cv in curves:
        aucs.setdefault(cv.label, [])
        if cv.auc is not None:
            aucs[cv.label].append(float(cv.auc))
    out = {}
    for label, values in aucs.items():
        if not values:
            out[label] = _text(label)
        elif len(values) == 1:
            out[label] = f"{_text(label)} (AUC {values[0]:.3f})"
        else:
            out[label] = (
                f"{_text(label)} (AUC {np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}, {len(values)} seeds)"
            )
    return out


def roc_pr(curves: Sequence[Curve], path: Path, title: str) -> Path:
    """ROC and precision-recall side by side; operating points as black-edged stars.

    Curves that share a label (one class over several seeds) share a colour and one legend entry,
    whose AUC is the mean over all of them (with their spread and count), not the first one's.
    """
    fig = _figure(11, 4.6, left=0.7, right=0.2, bottom=0.6, top=0.6, wspace=0.2)
    ax_roc, ax_pr = fig.subplots(1, 2)
    legend = auc_legend(curves)
    labelled: set[str] = set()
    for cv in curves:
        c = COLORS[cv.color_index % len(COLORS)]
        first = cv.label not in labelled
        labelled.add(cv.label)
        kw = {"color": c, "linewidth": 1.2, "alpha": 1.0 if first else 0.6}
        ax_roc.plot(cv.fpr, cv.tpr, label=legend[cv.label] if first else None, **kw)
        ax_pr.plot(
            cv.recall, cv.precision, drawstyle="steps-post", label=_text(cv.label) if first else None, **kw
        )
        if cv.op is not None:
            fpr, tpr, rec, prec = cv.op
            kw = {
                "marker": "*",
                "markersize": 14,
                "color": c,
                "markeredgecolor": "black",
                "linestyle": "none",
            }
            ax_roc.plot([fpr], [tpr], **kw)
            ax_pr.plot([rec], [prec], **kw)
    ax_roc.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax_roc.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(-0.01, 1.01), ylim=(0, 1.02))
    ax_pr.set(xlabel="recall", ylabel="precision", xlim=(-0.01, 1.01), ylim=(0, 1.02))
    ax_roc.set_title("ROC" + (" (star: operating point)" if any(c.op for c in curves) else ""), fontsize=10)
    ax_pr.set_title("Precision-recall", fontsize=10)
    for ax in (ax_roc, ax_pr):
        if ax.lines:
            ax.legend(fontsize=7, loc="lower right" if ax is ax_roc else "lower left")
    fig.suptitle(_text(title), fontsize=11)
    return _save(fig, path)


def reliability(bins_by_seed: Sequence[tuple[str, list[dict]]], path: Path) -> Path:
    """Reliability diagram of the test split: accuracy against mean confidence per bin, per seed.

    The bins are those the recorded ECE was computed from (``metrics.test.calibration.bins``);
    marker area follows each bin's share of cases.
    """
    fig = _figure(4.2, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([0, 1], [0, 1], color="#999999", linestyle=":", linewidth=1, label="perfectly calibrated")
    for label, bins in bins_by_seed:
        conf = [b["confidence"] for b in bins]
        acc = [b["accuracy"] for b in bins]
        size = [20 + 400 * b["fraction"] for b in bins]
        ax.plot(conf, acc, marker=None, linewidth=1)
        ax.scatter(conf, acc, s=size, alpha=0.6, label=_text(label))
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="mean confidence (top class)", ylabel="accuracy")
    ax.set_title("Reliability (test)", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    return _save(fig, path)


def risk_coverage(curves: Sequence[tuple[str, Sequence[float], Sequence[float]]], path: Path) -> Path:
    """Selective risk (error rate among the kept images) against coverage, per seed and score.

    A label is "<seed>, <score>": one colour per seed, solid for the classifier's confidence and
    dashed for a gate's.
    """
    fig = _figure(5.6, 4.0, right=2.2)
    ax = fig.add_subplot(1, 1, 1)
    seeds = list(dict.fromkeys(label.rsplit(", ", 1)[0] for label, _, _ in curves))
    for label, coverage, risk in curves:
        color = COLORS[seeds.index(label.rsplit(", ", 1)[0]) % len(COLORS)]
        dashed = label.endswith("gate PSNR")
        ax.plot(
            coverage, risk, linewidth=1.2, color=color, linestyle="--" if dashed else "-", label=_text(label)
        )
    ax.set(
        xlim=(1.01, -0.01),
        ylim=(0, None),
        xlabel="coverage (share of test images kept)",
        ylabel="selective risk",
    )
    ax.set_title("Risk-coverage (test; lower is better)", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return _save(fig, path)
