"""Subgroup audit of a run: skin tone (ITA) and any metadata column, before and after
threshold recalibration.

ITA (Chardon et al. 1991; Del Bino et al. 2013) is computed from the decoded images of the run
(skin outside the lesion, see :mod:`dermbench.evaluation.ita`) and cached beside them, so it is computed
once per dataset and resolution. The audit follows Rumale et al.: light (ITA > 28) vs dark
(ITA <= 28) groups, per-group AUC / recall / precision / F1 / false-negative rate, gaps with
bootstrap intervals, and a threshold recalibration chosen on validation only.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dermbench.errors import ConfigError
from dermbench.tasks import Task

SKIN_TONE_SCHEMES = {"ita": "binary28", "ita6": "chardon6"}
ALIASES = {"fitzpatrick": "skin_type"}


def ita_column(images: np.ndarray, identity: str, cache_dir: Path) -> np.ndarray:
    """ITA per image, cached under ``cache_dir`` keyed by the images' identity."""
    from dermbench.evaluation.ita import ita_for_images

    key = hashlib.sha256(f"ita-v1|{identity}|{images.shape}".encode()).hexdigest()[:32]
    path = cache_dir / f"ita-{key}.npy"
    if path.exists():
        values = np.load(path)
        if len(values) == len(images):
            return values
    values = ita_for_images(images).astype(np.float64)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, values)
    tmp.replace(path)
    return values


def group_values(frame: pd.DataFrame, name: str) -> tuple[np.ndarray, dict[str, Any]]:
    """The group label of every row for one grouping name, and how it was made."""
    from dermbench.evaluation.ita import ita_groups

    if name in SKIN_TONE_SCHEMES:
        if "ita" not in frame.columns:
            raise ConfigError(f"--groups {name}: no ITA values for this split")
        labels, scheme = ita_groups(frame["ita"].to_numpy(), SKIN_TONE_SCHEMES[name])
        return np.asarray(labels, dtype=object), {"source": "ita", **scheme}
    column = ALIASES.get(name, name)
    if column not in frame.columns:
        known = ", ".join(sorted(set(frame.columns) - {"y", "row", "label", "image_id", "group", "path"}))
        raise ConfigError(
            f"--groups {name}: no column {column!r} in the data (available: ita, ita6, {known})"
        )
    values = frame[column]
    if column == "skin_type":
        values = values.map(lambda v: None if pd.isna(v) or v < 1 else f"type {int(v)}")
    return values.astype(object).where(values.notna(), None).to_numpy(), {"source": column}


def check_groups(task: Task, groups: tuple[str, ...]) -> None:
    if not task.is_decision_task:
        raise ConfigError(
            f"--groups needs a task with a positive class and an operating point (binary, triage3), not {task.name!r}"
        )


def audit_run(
    task: Task,
    groups: tuple[str, ...],
    frames: dict[str, pd.DataFrame],
    labels: dict[str, np.ndarray],
    probs: dict[str, np.ndarray],
    threshold: float | None,
    seed: int,
    n_boot: int = 1000,
) -> dict[str, Any]:
    """Audit every scored split except train; recalibrate on validation (ITA groups first)."""
    from dermbench.evaluation.fairness import fairness_audit
    from dermbench.evaluation.recalibration import recalibrate_thresholds, recalibration_report

    check_groups(task, groups)
    if threshold is None:
        raise ConfigError(
            "the audit needs an operating point, and validation gave none (no positives in val?)"
        )
    out: dict[str, Any] = {
        "positive_class": task.positive_class,
        "threshold": threshold,
        "schemes": {},
        "splits": {},
    }
    for split, frame in frames.items():
        if split == "train":
            continue
        grouping = {}
        for name in groups:
            values, scheme = group_values(frame, name)
            grouping[name] = values
            out["schemes"][name] = scheme
        out["splits"][split] = fairness_audit(
            labels[split],
            probs[split],
            list(task.classes),
            grouping,
            task.positive_class,
            threshold,
            n_boot=n_boot,
            seed=seed,
        )
    base = next((g for g in groups if g in SKIN_TONE_SCHEMES), groups[0])
    val_groups, _ = group_values(frames["val"], base)
    recal: dict[str, Any] = {"grouping": base}
    for mode in ("global", "per_group"):
        choice = recalibrate_thresholds(
            labels["val"],
            probs["val"],
            list(task.classes),
            val_groups,
            task.positive_class,
            task.recall_constraint,
            mode=mode,
        )
        reports = {}
        for split, frame in frames.items():
            if split in ("train", "val"):
                continue
            g, _ = group_values(frame, base)
            reports[split] = recalibration_report(
                labels[split],
                probs[split],
                list(task.classes),
                {base: g},
                choice,
                g,
                n_boot=n_boot,
                seed=seed,
            )
        recal[mode] = {"choice": choice, "splits": reports}
    out["recalibration"] = recal
    return out
