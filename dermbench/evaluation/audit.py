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
from collections.abc import Mapping
from dataclasses import dataclass, field
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


def _lesions(frame: pd.DataFrame) -> np.ndarray | None:
    """The lesion (or patient) of each image, so resamples keep a lesion's images together."""
    return frame["group"].astype(str).to_numpy() if "group" in frame.columns else None


@dataclass(frozen=True)
class AuditInputs:
    """One run's audited splits: records, labels, probabilities, the validation threshold and the
    operating-point flags the run record already holds per split (so they are not drawn again)."""

    task: Task
    groups: tuple[str, ...]
    frames: Mapping[str, pd.DataFrame]
    labels: Mapping[str, np.ndarray]
    probs: Mapping[str, np.ndarray]
    threshold: float
    seed: int
    n_boot: int
    known_flags: Mapping[str, list] = field(default_factory=dict)


def _split_audit(a: AuditInputs, split: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """One split's audit at the validation threshold, and how each grouping was made."""
    from dermbench.evaluation.fairness import fairness_audit

    frame = a.frames[split]
    grouping, schemes, made = {}, {}, {}
    for name in a.groups:
        grouping[name], made[name] = group_values(frame, name)
        schemes[name] = made[name].get("scheme") or name
    audit = fairness_audit(
        a.labels[split], a.probs[split], list(a.task.classes), grouping, a.task.positive_class, a.threshold,
        n_boot=a.n_boot, seed=a.seed, resample_groups=_lesions(frame), schemes=schemes,
        known_flags=a.known_flags.get(split),
    )  # fmt: skip
    return audit, made


def _recalibration(a: AuditInputs) -> dict[str, Any]:
    """Global and per-group thresholds chosen on validation, audited on every other split."""
    from dermbench.evaluation.recalibration import recalibrate_thresholds, recalibration_report

    task = a.task
    base = next((g for g in a.groups if g in SKIN_TONE_SCHEMES), a.groups[0])
    val_groups, _ = group_values(a.frames["val"], base)
    recal: dict[str, Any] = {"grouping": base}
    for mode in ("global", "per_group"):
        choice = recalibrate_thresholds(a.labels["val"], a.probs["val"], list(task.classes), val_groups,
                                        task.positive_class, task.recall_constraint, mode=mode)  # fmt: skip
        same_point = choice["default"] == a.threshold  # then the record's flags hold for "before"
        reports = {}
        for split, frame in a.frames.items():
            if split in ("train", "val"):
                continue
            g, made = group_values(frame, base)
            reports[split] = recalibration_report(
                a.labels[split], a.probs[split], list(task.classes), {base: g}, choice, g,
                n_boot=a.n_boot, seed=a.seed, resample_groups=_lesions(frame),
                schemes={base: made.get("scheme") or base},
                known_flags=a.known_flags.get(split) if same_point else None,
            )  # fmt: skip
        recal[mode] = {"choice": choice, "splits": reports}
    return recal


def audit_run(
    task: Task,
    groups: tuple[str, ...],
    frames: dict[str, pd.DataFrame],
    labels: dict[str, np.ndarray],
    probs: dict[str, np.ndarray],
    threshold: float | None,
    seed: int,
    n_boot: int = 1000,
    known_flags: Mapping[str, list] | None = None,
) -> dict[str, Any]:
    """Audit every scored split except train, resampling whole lesions; recalibrate on validation."""
    check_groups(task, groups)
    if threshold is None:
        raise ConfigError(
            "the audit needs an operating point, and validation gave none (no positives in val?)"
        )
    a = AuditInputs(task, groups, frames, labels, probs, threshold, seed, n_boot, dict(known_flags or {}))
    out: dict[str, Any] = {
        "positive_class": task.positive_class,
        "threshold": threshold,
        "schemes": {},
        "splits": {},
    }
    for split in frames:
        if split != "train":
            out["splits"][split], made = _split_audit(a, split)
            out["schemes"].update(made)
    out["recalibration"] = _recalibration(a)
    return out
