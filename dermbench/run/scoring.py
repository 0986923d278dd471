"""Scoring a run's predictions: post-hoc steps fit on validation, metrics on every split, and the
saved prediction files the leaderboard recomputes everything from.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dermbench.components import Method, Ref
from dermbench.data.leakage import overlap_flag
from dermbench.data.prepare import PreparedData
from dermbench.data.split_data import SplitData
from dermbench.evaluation import challenge
from dermbench.evaluation.calibration import calibration_report
from dermbench.evaluation.chance import RULES, baseline_threshold, chance_flag, chance_report, class_shares
from dermbench.evaluation.degenerate import classifier_flags, operating_point_flags
from dermbench.evaluation.metrics import classification_report
from dermbench.evaluation.screening import screening_report
from dermbench.evaluation.selective import msp_selective
from dermbench.plugins.contract import PosthocContext
from dermbench.run.config import RunConfig
from dermbench.tasks import Task

# A dataset whose adapter names its challenge (a ``challenge`` column) is also scored by that
# challenge's own metric set, as the challenge's scorer computes it.
CHALLENGE_REPORTS = {challenge.NAME: challenge.challenge_report}
META_COLUMNS = ("skin_type", "ita", "ita_true", "sex", "age", "localization", "dataset")


def predictions_frame(split: SplitData, probs: np.ndarray, task: Task) -> pd.DataFrame:
    out = pd.DataFrame(
        {
            "index": np.arange(len(split)),
            "image_id": split.frame["image_id"].astype(str).to_numpy(),
            "label": split.y,
            "label_name": [task.classes[i] for i in split.y],
            "group": split.frame["group"].astype(str).to_numpy(),
        }
    )
    for j, cls in enumerate(task.classes):
        out[f"p_{cls}"] = probs[:, j]
    for col in META_COLUMNS:
        if col in split.frame.columns:
            out[col] = split.frame[col].to_numpy()
    return out


def posthoc_refs(task: Task, method: Method) -> list[Ref]:
    """The method's post-hoc steps, with the task's decision rule first when the method lacks it."""
    refs = list(method.posthoc)
    if task.decision_rule and not any(r.name == task.decision_rule for r in refs):
        refs.insert(0, Ref(task.decision_rule))
    return refs


def fit_posthoc(
    task: Task, method: Method, cfg: RunConfig, registries: Any, val: SplitData, val_probs: np.ndarray
) -> list[tuple[str, Any]]:
    """Each post-hoc step, fit on validation predictions only, with the key its results go under."""
    ctx = PosthocContext(list(task.classes), task.positive_class, task.recall_constraint)
    steps = []
    for ref in posthoc_refs(task, method):
        values = {**ref.options, **cfg.component_options(f"posthoc.{ref.name}")}
        step = registries.posthoc.build(ref.name, values, ctx)
        step.fit(val.y, val_probs, val.frame)
        steps.append((getattr(step, "key", ref.name), step))
    return steps


def score_split(
    split: SplitData, probs: np.ndarray, task: Task, steps: list, extra_metrics: list
) -> dict[str, Any]:
    """The METRICS object of one split: core metrics, each post-hoc step's result, plugins' metrics."""
    m = classification_report(split.y, probs, list(task.classes))
    for key, step in steps:
        m[key] = step.apply(split.y, probs, split.frame)
        for metric, reason in ((m[key] or {}).get("undefined") or {}).items():
            m.setdefault("undefined", {})[f"{key}.{metric}"] = reason
    m.update(field_metrics(split, probs, task, m.get("operating_point")))
    for name, fn in extra_metrics:  # plugins' metrics, under "extra"
        try:
            m.setdefault("extra", {})[name] = fn(split.y, probs, split.frame)
        except Exception as exc:  # a plugin's metric must not lose the run
            m.setdefault("extra", {})[name] = None
            m.setdefault("undefined", {})[f"extra.{name}"] = f"{type(exc).__name__}: {exc}"
    return m


def field_metrics(split: SplitData, probs: np.ndarray, task: Task, op: dict | None) -> dict[str, Any]:
    """Calibration, selective prediction by the classifier's own confidence, threshold-free
    screening metrics and the flags of a trivial result."""
    out: dict[str, Any] = {"calibration": calibration_report(split.y, probs)}
    if len(split):
        out["selective"] = {"max_softmax": msp_selective(probs, split.y)}
    flags = classifier_flags(probs.argmax(axis=1) if len(split) else np.zeros(0, int), list(task.classes))
    if task.positive_class is not None:
        pos = task.index(task.positive_class)
        out["screening"] = screening_report(split.y == pos, probs[:, pos])
        if op and op.get("threshold") is not None:
            decided = probs[:, pos] >= op["threshold"]
            groups = split.frame["group"].astype(str).to_numpy()
            flags += operating_point_flags(split.y == pos, decided, groups=groups)
    out["flags"] = flags
    report = challenge_metrics(split, probs, task)
    if report is not None:
        out["challenge"] = report
    return out


def challenge_metrics(split: SplitData, probs: np.ndarray, task: Task) -> dict[str, Any] | None:
    """The challenge metric set when every image of the split comes from one challenge's data."""
    if "challenge" not in split.frame.columns or not len(split):
        return None
    names = set(split.frame["challenge"].astype(str))
    if len(names) != 1 or (name := names.pop()) not in CHALLENGE_REPORTS:
        return None
    return CHALLENGE_REPORTS[name](split.y, probs, list(task.classes))


def save_predictions(run_dir: Path, name: str, split: SplitData, probs: np.ndarray, task: Task) -> str:
    """``predictions/<split>.csv``, written atomically; the path relative to the run folder."""
    pred_dir = run_dir / "predictions"
    pred_dir.mkdir(parents=True, exist_ok=True)
    fname = name.replace(":", "-") + ".csv"
    tmp = pred_dir / (fname + ".tmp")
    predictions_frame(split, probs, task).to_csv(tmp, index=False)
    tmp.replace(pred_dir / fname)
    return f"predictions/{fname}"


def score(
    probs: dict[str, np.ndarray],
    data: PreparedData,
    task: Task,
    method: Method,
    cfg: RunConfig,
    registries: Any,
    run_dir: Path,
) -> dict[str, Any]:
    """Fit post-hoc steps on validation predictions, apply them unchanged to every split, score."""
    steps = fit_posthoc(task, method, cfg, registries, data.splits["val"], probs["val"])
    extra_metrics = [(c.name, registries.metrics.build(c.name, {}, task)) for c in registries.metrics]
    metrics: dict[str, Any] = {}
    predictions: dict[str, str] = {}
    chance = chance_setup(data, task)
    for name, split in data.splits.items():
        metrics[name] = score_split(split, probs[name], task, steps, extra_metrics)
        if chance is not None:
            add_chance(metrics[name], split, probs[name], task, chance, flag=name != "train")
        if name in data.info.get("overlap", {}):
            metrics[name].setdefault("flags", []).append(overlap_flag(data.info["overlap"][name]))
        if name != "train":  # training-split metrics are kept; its predictions are not worth the disk
            predictions[name] = save_predictions(run_dir, name, split, probs[name], task)
    hashes = {
        name: hashlib.sha256((run_dir / rel).read_bytes()).hexdigest() for name, rel in predictions.items()
    }
    return {"metrics": metrics, "predictions": predictions, "predictions_sha256": hashes}


def chance_setup(data: PreparedData, task: Task) -> tuple[np.ndarray, dict[str, float | None]] | None:
    """The training class shares and each chance rule's validation threshold (docs/metrics.md)."""
    train, val = data.splits.get("train"), data.splits.get("val")
    if train is None or val is None or not len(train):
        return None
    shares = class_shares(train.y, len(task.classes))
    thresholds = {
        r: baseline_threshold(
            r, shares, val.y, list(task.classes), task.positive_class, task.recall_constraint
        )
        for r in RULES
    }
    return shares, thresholds


def add_chance(
    m: dict[str, Any], split: SplitData, probs: np.ndarray, task: Task, chance: tuple, flag: bool
) -> None:
    """The split's chance baselines, and the ``no_better_than_chance`` flag on the primary metric."""
    shares, thresholds = chance
    classes = list(task.classes)
    m["chance"] = chance_report(split.y, shares, classes, thresholds, task.positive_class)
    if not flag:
        return
    threshold = (m.get("operating_point") or {}).get("threshold")
    groups = split.frame["group"].astype(str).to_numpy()
    found = chance_flag(
        split.y, probs, threshold, m["chance"], classes, task.primary_metric, task.positive_class, groups
    )
    if found is not None:
        m.setdefault("flags", []).append(found)
