"""The page of one method on one task: every seed of one leaderboard entry, or a single run.

Everything on it comes from the run records and the files they name (test predictions, Grad-CAM++
images); the plots are recomputed from the predictions so that a reader can check them against
the recorded numbers on the same page.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
from PIL import Image, UnidentifiedImageError
from sklearn.metrics import precision_recall_curve, roc_auc_score, roc_curve

from dermbench.evaluation.overfitting import overfitting_report, table_rows
from dermbench.leaderboard import plots, selective_view
from dermbench.leaderboard.aggregate import Cell, summarize
from dermbench.leaderboard.audit_view import audit_tables
from dermbench.leaderboard.config import LeaderboardConfig, read_config
from dermbench.leaderboard.generic import flatten, to_tables
from dermbench.leaderboard.records import Run, as_number, get_path, inside, read_run, slug
from dermbench.leaderboard.render import environment, prepare_out, write_page
from dermbench.leaderboard.settings_view import settings_tables

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp")
MAX_CAMS = 48
OVERALL = ("accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "macro_auc")
OP_FIELDS = ("threshold", "feasible", "recall", "precision", "f1", "specificity", "tp", "fp", "tn", "fn")


@dataclass
class CamImage:
    src: str
    caption: str


def seed_label(run: Run) -> str:
    return f"seed {run.seed}"


def _caption_value(v: Any) -> str:
    """A Grad-CAM caption's value as a reader wants it: a probability to 3 decimals, not 8."""
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def _cam_items(run: Run) -> list[tuple[str, str]]:
    """(relative path, caption) for each Grad-CAM++ image the record lists, in its order."""
    cams = (run.record.get("artifacts") or {}).get("cams")
    if isinstance(cams, str):
        folder = inside(run.dir, cams, "artifacts.cams", run.path)
        if not folder.is_dir():
            return []
        return [
            (str(p.relative_to(run.dir.resolve())), p.stem)
            for p in sorted(folder.iterdir())
            if p.suffix.lower() in IMAGE_SUFFIXES
        ]
    items: list[tuple[str, str]] = []
    for c in cams if isinstance(cams, list) else []:
        if isinstance(c, str):
            items.append((c, Path(c).stem))
        elif isinstance(c, dict):
            rel = c.get("path") or c.get("file") or c.get("image")
            if isinstance(rel, str):
                caption = ", ".join(
                    f"{k}: {_caption_value(v)}" for k, v in c.items() if k not in ("path", "file", "image")
                )
                items.append((rel, caption or Path(rel).stem))
    return items


def copy_cams(run: Run, dest: Path, prefix: str) -> tuple[list[CamImage], list[str]]:
    """Copy the run's Grad-CAM++ images next to the page; unreadable or outside files are noted."""
    out, notes = [], []
    for n, (rel, caption) in enumerate(_cam_items(run)[:MAX_CAMS]):
        src = inside(run.dir, rel, "artifacts.cams entry", run.path)
        if src.suffix.lower() not in IMAGE_SUFFIXES or not src.is_file():
            notes.append(f"{rel}: not an image file")
            continue
        try:
            with Image.open(src) as im:
                im.verify()
        except (UnidentifiedImageError, OSError):
            notes.append(f"{rel}: not a readable image")
            continue
        name = f"{prefix}-{n:03d}-{slug(src.stem, 24)}{src.suffix.lower()}"
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest / name)
        out.append(CamImage(src=f"{dest.name}/{name}", caption=caption))
    return out, notes


def _curves(runs: list[Run]) -> list[dict[str, Any]]:
    """ROC/PR figures: for a decision task the positive class of every seed with its operating
    point; otherwise one-vs-rest curves per class, every seed drawn in its class's colour."""
    pos = runs[0].positive_class()
    classes = runs[0].classes
    several = len(runs) > 1
    if pos in classes:
        j = classes.index(pos)
        curves = [c for i, r in enumerate(runs) if (c := _curve(r, j, seed_label(r), i, with_op=True))]
        title = f"Test, positive class {pos}"
    else:
        curves = [
            c for r in runs for j, cls in enumerate(classes) if (c := _curve(r, j, cls, j, with_op=False))
        ]
        title = "Test, one-vs-rest per class" + (
            f" ({len(runs)} seeds, a curve each; legend: mean AUC)" if several else ""
        )
    return [{"title": title, "curves": curves}] if curves else []


def _curve(run: Run, j: int, label: str, color: int, with_op: bool) -> plots.Curve | None:
    loaded = run.probs("test")
    if loaded is None:
        return None
    y, probs = loaded
    truth = y == j
    if truth.all() or not truth.any():
        return None
    fpr, tpr, _ = roc_curve(truth, probs[:, j])
    prec, rec, _ = precision_recall_curve(truth, probs[:, j])
    op = None
    rec_op = run.test_metrics.get("operating_point") if with_op else None
    if isinstance(rec_op, dict):
        r, p, s = (as_number(rec_op.get(k)) for k in ("recall", "precision", "specificity"))
        if None not in (r, p, s):
            op = (1.0 - s, r, r, p)
    auc = float(roc_auc_score(truth, probs[:, j]))
    return plots.Curve(
        label=label, fpr=fpr, tpr=tpr, recall=rec, precision=prec, auc=auc, op=op, color_index=color
    )


def _per_class(runs: list[Run], classes: list[str]) -> dict[str, Any]:
    def value(r: Run, c: str) -> float:
        v = as_number(get_path(r.test_metrics, f"per_class.{c}.f1"))
        return np.nan if v is None else v

    f1 = np.array([[value(r, c) for c in classes] for r in runs], dtype=float)
    with np.errstate(all="ignore"):
        mean = np.array([np.nanmean(col) if np.isfinite(col).any() else np.nan for col in f1.T])
    rows = [
        {
            "cls": c,
            "values": [None if not np.isfinite(f1[i, j]) else float(f1[i, j]) for i in range(len(runs))],
            "mean": None if not np.isfinite(mean[j]) else float(mean[j]),
            "support": get_path(runs[0].test_metrics, f"per_class.{c}.support"),
        }
        for j, c in enumerate(classes)
    ]
    return {"rows": rows, "matrix": np.vstack([f1, mean]) if len(runs) > 1 else f1}


def _confusion(runs: list[Run], k: int) -> np.ndarray | None:
    mats = []
    for r in runs:
        cm = r.test_metrics.get("confusion_matrix")
        arr = np.asarray(cm, dtype=float) if isinstance(cm, list) else None
        if arr is None or arr.shape != (k, k):
            return None
        mats.append(arr)
    return np.sum(mats, axis=0) if mats else None


CARD_KEYS = ("name", "summary", "paper", "notes")


def _recipe_tables(recipe: Any) -> list[Any]:
    """The recipe's components (stages, post-hoc steps, protocol profiles) as tables; the fields
    the card already shows are left out."""
    if not isinstance(recipe, dict):
        return to_tables(recipe, "recipe") if recipe else []
    return to_tables({k: v for k, v in recipe.items() if k not in CARD_KEYS and v not in (None, [], {})}, "")


def _pairs(value: Any) -> list[tuple[str, str]]:
    return flatten(value) if value else []


def _data_view(run: Run) -> dict[str, Any]:
    data = run.record["data"]
    splits = data.get("splits") or {}
    return {
        "synthetic": bool(data["synthetic"]),
        "image_size": data.get("image_size"),
        "split_protocol": data.get("split_protocol"),
        "datasets": [d for d in data["datasets"] if isinstance(d, dict)],
        "splits": [
            {
                "name": name,
                "n": s.get("n"),
                "fingerprint": s.get("fingerprint"),
                "counts": ", ".join(f"{k}: {v}" for k, v in (s.get("class_counts") or {}).items()),
            }
            for name, s in splits.items()
            if isinstance(s, dict)
        ],
    }


def overfitting_of(record: dict) -> dict[str, Any]:
    """The record's Table II report, recomputed from its history (records of any age have one)."""
    history = record.get("history")
    return overfitting_report(history) if isinstance(history, list) and history else {}


def _draw(
    runs: list[Run], classes: list[str], f1: np.ndarray, cm: np.ndarray | None, page_dir: Path
) -> tuple[dict[str, str], list[dict[str, str]]]:
    """The page's PNG plots, written next to it; what was drawn, by section."""
    images: dict[str, str] = {}
    if np.isfinite(f1).any():
        rows = [seed_label(r) for r in runs] + (["mean"] if len(runs) > 1 else [])
        plots.per_class_heatmap(f1, rows, classes, page_dir / "per_class_f1.png")
        images["per_class"] = "per_class_f1.png"
    if cm is not None:
        where = f"summed over {len(runs)} seeds" if len(runs) > 1 else seed_label(runs[0])
        plots.confusion(cm, classes, page_dir / "confusion.png", f"Test confusion matrix ({where})")
        images["confusion"] = "confusion.png"
    series = [
        plots.Series(
            seed_label(r),
            r.record.get("history") or [],
            overfitting_of(r.record).get("per_epoch") or [],
        )
        for r in runs
    ]
    if any(s.history or s.gap for s in series):
        plots.learning_curves(series, page_dir / "learning_curves.png")
        images["learning"] = "learning_curves.png"
    bins = [(seed_label(r), get_path(r.test_metrics, "calibration.bins")) for r in runs]
    if any(b for _, b in bins):
        plots.reliability([(label, b) for label, b in bins if b], page_dir / "reliability.png")
        images["reliability"] = "reliability.png"
    selective = selective_view.curves(runs, [seed_label(r) for r in runs])
    if selective:
        plots.risk_coverage(selective, page_dir / "risk_coverage.png")
        images["risk_coverage"] = "risk_coverage.png"
    curve_figs = []
    for n, fig in enumerate(_curves(runs)):
        name = f"roc_pr_{n}.png"
        plots.roc_pr(fig["curves"], page_dir / name, fig["title"])
        curve_figs.append({"src": name, "title": fig["title"]})
    return images, curve_figs


def _challenge_tables(r: Run) -> list[Any]:
    """Each split that is a challenge's data, scored as that challenge's official scorer scores it
    (``metrics.<split>.challenge``, from :mod:`dermbench.evaluation.challenge`)."""
    tables = []
    for split, m in (r.record.get("metrics") or {}).items():
        c = m.get("challenge") if isinstance(m, dict) else None
        if isinstance(c, dict):
            shown = {k: v for k, v in c.items() if k not in ("name", "undefined")}
            tables += to_tables(shown, f"{seed_label(r)}, {split}: the {c.get('name')} challenge's metrics")
    return tables


def _seed_view(r: Run, i: int, primary: str, page_dir: Path) -> dict[str, Any]:
    """What the page shows of one seed's run (its Grad-CAM++ images copied next to the page)."""
    cams, cam_notes = copy_cams(r, page_dir / "cams", f"s{i}")
    fairness = r.record.get("fairness")
    report = overfitting_of(r.record)
    op = r.test_metrics.get("operating_point")
    return {
        "label": seed_label(r),
        "run": r,
        "record": r.record,
        "primary": as_number(get_path(r.test_metrics, primary)),
        "overfitting": report,
        "overfitting_table": table_rows(report) if report else None,
        "epochs": len(r.record.get("history") or []),
        "op": op if isinstance(op, dict) else None,
        "splits": [
            (name, [as_number(m.get(k)) if isinstance(m, dict) else None for k in OVERALL])
            for name, m in (r.record.get("metrics") or {}).items()
        ],
        "undefined": r.test_metrics.get("undefined") or {},
        "flags": r.test_metrics.get("flags") or [],
        "challenge": _challenge_tables(r),
        "ece": as_number(get_path(r.test_metrics, "calibration.ece")),
        "selective": selective_view.seed_tables(r, seed_label(r)),
        "gate": selective_view.gate_line(r),
        "audit_notes": audit_tables(fairness)[0],
        "audit": audit_tables(fairness)[1],
        "fairness": to_tables({k: v for k, v in fairness.items() if k != "splits"}, "fairness")
        if fairness
        else [],
        "cams": cams,
        "cam_notes": cam_notes,
    }


def _method_card(first: Run) -> dict[str, Any]:
    """The method card's parts: notes, recipe tables, component options and run settings."""
    method = first.method
    return {
        "notes": (method.get("recipe") or {}).get("notes")
        if isinstance(method.get("recipe"), dict)
        else None,
        "recipe": _recipe_tables(method.get("recipe")),
        "settings_used": settings_tables(first.record),
        "options": _pairs((first.record.get("config") or {}).get("options")),
        "settings": _pairs(
            {**{k: v for k, v in first.variant.items() if k != "options"}, "lr": first.lr_used()}
        ),
    }


def entry_page(
    env: jinja2.Environment,
    cfg: LeaderboardConfig,
    runs: list[Run],
    page_dir: Path,
    root: str,
    crumbs: list[tuple[str, str]],
    columns: list[str] | None = None,
    label: str | None = None,
    cells: dict[str, Cell] | None = None,
    standing: dict[str, Any] | None = None,
) -> Path:
    """Write ``page_dir/index.html`` and its images for the seeds ``runs`` of one entry
    (``standing``, from the board: where it stands under the board's rules)."""
    first = runs[0]
    classes = first.classes
    primary = str(first.task["primary_metric"])
    decision = first.positive_class() is not None and bool(first.test_metrics.get("operating_point"))
    columns = columns or cfg.columns(str(first.task["name"]), primary, decision)
    page_dir.mkdir(parents=True, exist_ok=True)
    per_class = _per_class(runs, classes)
    cm = _confusion(runs, len(classes))
    images, curve_figs = _draw(runs, classes, per_class["matrix"], cm, page_dir)
    seeds = [_seed_view(r, i, primary, page_dir) for i, r in enumerate(runs)]
    method = first.method
    context = {
        "root": root,
        "crumbs": crumbs,
        "title": f"{label or method['name']} on {first.task['name']}",
        "label": label or str(method["name"]),
        "task": first.task,
        "method": method,
        **_method_card(first),
        "protocol": first.record["protocol"],
        "profile": first.record.get("profile"),
        "data": _data_view(first),
        "versions": sorted({str(r.version) for r in runs}),
        "devices": sorted({str(get_path(r.record, "environment.device")) for r in runs}),
        "primary": primary,
        "cells": cells or summarize(runs, columns, cfg.n_boot, cfg.bootstrap_seed),
        "columns": columns,
        "metric_label": cfg.label,
        "digits": cfg.digits,
        "classes": classes,
        "per_class": per_class["rows"],
        "confusion": cm.astype(int).tolist() if cm is not None else None,
        "images": images,
        "curves": curve_figs,
        "seeds": seeds,
        "overall": OVERALL,
        "op_fields": OP_FIELDS,
        "has_op": any(s["op"] for s in seeds),
        "standing": standing,
    }
    return write_page(env, "entry.html", page_dir / "index.html", **context)


def build_report(run_dir: Path, out: Path, config: Path | None = None) -> Path:
    """The method page for the single run in ``run_dir``, written to ``out/index.html``.

    Any run record will do, complete or not (a run in progress gets a warning on the page);
    ``config`` only sets columns, labels and bootstrap settings.
    """
    run = read_run(Path(run_dir))
    cfg = read_config(config)
    prepare_out(out)
    return entry_page(environment(), cfg, [run], out, root="", crumbs=[])
