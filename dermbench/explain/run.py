"""``dermbench explain RUN``: Grad-CAM++ overlays for a finished run, and its error analysis.

The run's own data is rebuilt from its record and checked against the recorded split
fingerprints, the scored model is reloaded from ``checkpoints/final.pt`` (the first fold's for a
cross-validation ensemble), and overlays are written for the true/false positives/negatives of
the test split at the run's operating point. Every false negative is listed in the record with
its probability and subgroup, the cases a screening test must not miss (Rumale et al.).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from dermbench.errors import DataError, DermbenchError
from dermbench.plugins.contract import ExplainerContext, ModelContext
from dermbench.plugins.options import build_options
from dermbench.run.config import RunConfig
from dermbench.run.record import RECORD_NAME, read_record, write_json_atomic
from dermbench.stages.checkpoints import CHECKPOINTS, LAST, best_name, load_weights

CATEGORIES = ("tp", "fp", "fn", "tn")


def _categories(preds: pd.DataFrame, record: dict, split: str) -> tuple[pd.Series, int, np.ndarray]:
    """Category of each row and the class each CAM explains."""
    classes = record["task"]["classes"]
    probs = preds[[f"p_{c}" for c in classes]].to_numpy()
    positive = record["task"].get("positive_class")
    op = (record["metrics"][split].get("operating_point") or {}) if positive else {}
    if positive and op.get("threshold") is not None:
        k = classes.index(positive)
        called = probs[:, k] >= op["threshold"]
        truth = preds["label"].to_numpy() == k
        cat = np.where(truth, np.where(called, "tp", "fn"), np.where(called, "fp", "tn"))
        return pd.Series(cat, index=preds.index), k, np.full(len(preds), k)
    pred = probs.argmax(1)
    cat = np.where(pred == preds["label"].to_numpy(), "correct", "error")
    return pd.Series(cat, index=preds.index), -1, pred


def _scored_checkpoint(run_dir: Path, record: dict) -> list[str]:
    """The scored model of a run whose record names none: its best or last training checkpoint."""
    ckpt = run_dir / CHECKPOINTS
    stages = len(record["method"]["recipe"]["stages"])
    best = ckpt / best_name(stages - 1)
    if record["config"].get("ensemble", "none") == "none":
        if record["config"]["select"] != "last" and best.is_file():
            return [str(best.relative_to(run_dir))]
        if record["config"]["select"] == "last" and (ckpt / LAST).is_file():
            return [str((ckpt / LAST).relative_to(run_dir))]
    raise DermbenchError(f"{run_dir}: no saved model to explain (checkpoints/ is missing or incomplete)")


def _finished_record(run_dir: Path, split: str) -> dict:
    record = read_record(run_dir)
    if record["status"] != "complete":
        raise DermbenchError(f"{run_dir}: the run is not complete; finish it with --resume first")
    if split not in record["predictions"]:
        raise DermbenchError(
            f"{run_dir}: no predictions for split {split!r} (has: {', '.join(record['predictions'])})"
        )
    return record


def _split_images(
    cfg: RunConfig, task: Any, reg: Any, record: dict, split: str, progress: bool
) -> np.ndarray:
    """The split's decoded images, rebuilt from the record and checked against its fingerprint."""
    from dermbench.data.prepare import prepare_data

    data = prepare_data(cfg, task, reg, progress=progress)
    if split.startswith("external:") or split == "test":
        ours = data.info["splits"][split]["fingerprint"]
        theirs = record["data"]["splits"][split]["fingerprint"]
        if ours != theirs:
            raise DataError(
                f"the data of {split!r} changed since the run (fingerprint {ours[:12]} != {theirs[:12]})"
            )
    return data.splits[split].images.numpy()


def _scored_model(
    run_dir: Path, record: dict, cfg: RunConfig, task: Any, reg: Any
) -> tuple[torch.nn.Module, str]:
    from dermbench.models.build import build_model

    models = record.get("artifacts", {}).get("models") or _scored_checkpoint(run_dir, record)
    ctx = ModelContext(task.num_classes, cfg.image_size, "random")
    model = build_model(cfg.model, ctx, reg.models, cfg.component_options("model"))
    model.load_state_dict(load_weights(run_dir / models[0]))
    model.eval()
    return model, models[0]


def _overlays(
    explain: Any,
    model: Any,
    images: np.ndarray,
    preds: pd.DataFrame,
    category: pd.Series,
    targets: np.ndarray,
    p_pos: pd.Series,
    n: int,
    run_dir: Path,
) -> list[dict]:
    """Up to ``n`` overlays per category, the most confident errors and hits first."""
    cams: list[dict] = []
    for cat in sorted(set(category)):
        rows = preds.index[category == cat]
        rows = sorted(rows, key=lambda r: -p_pos[r] if cat in ("tp", "fp", "correct") else p_pos[r])[:n]
        if not rows:
            continue
        names = [str(preds.loc[r, "image_id"]).replace("/", "_").replace(":", "_") for r in rows]
        paths = explain(model, images[rows], [int(targets[r]) for r in rows], run_dir / "cams" / cat, names)
        for r, path in zip(rows, paths, strict=True):
            cams.append(
                {
                    "category": cat,
                    "image_id": str(preds.loc[r, "image_id"]),
                    "label": str(preds.loc[r, "label_name"]),
                    "probability": float(p_pos[r]),
                    "path": str(Path(path).relative_to(run_dir)),
                }
            )
    return cams


def _false_negatives(preds: pd.DataFrame, category: pd.Series, positive: str, cams: list[dict]) -> list[dict]:
    """Every false negative, least confident first, with its subgroup columns and overlay."""
    cam_of = {c["image_id"]: c["path"] for c in cams}
    fn = preds[category == "fn"]
    group_cols = [c for c in ("ita", "skin_type", "sex", "dataset") if c in fn.columns]
    return [
        {
            "image_id": str(row["image_id"]),
            "label": str(row["label_name"]),
            "probability": float(row[f"p_{positive}"]),
            **{c: (None if pd.isna(row[c]) else row[c]) for c in group_cols},
            "cam": cam_of.get(str(row["image_id"])),
        }
        for _, row in fn.sort_values(f"p_{positive}").iterrows()
    ]


def explain_run(
    run_dir: str | Path,
    n: int = 8,
    split: str = "test",
    progress: bool = True,
    log: Any = print,
    explainer: str | None = None,
    explainer_options: dict[str, Any] | None = None,
) -> dict:
    from dermbench.plugins import get_plugins
    from dermbench.tasks import task_of

    run_dir = Path(run_dir)
    record = _finished_record(run_dir, split)
    config = {**record["config"], "groups": tuple(record["config"].get("groups") or ())}
    cfg = build_options(RunConfig, config, where="record config")
    plugins = get_plugins()
    reg = plugins.registries
    task = task_of(cfg, reg.tasks)
    images = _split_images(cfg, task, reg, record, split, progress)
    preds = pd.read_csv(run_dir / record["predictions"][split])
    model, model_path = _scored_model(run_dir, record, cfg, task, reg)
    ctx = ExplainerContext(list(task.classes), cfg.image_size)
    explain = reg.explainers.build(explainer or plugins.default("explainers"), explainer_options or {}, ctx)
    category, positive, targets = _categories(preds, record, split)
    if positive >= 0:
        p_pos = preds[f"p_{task.classes[positive]}"]
    else:
        p_pos = preds[[f"p_{c}" for c in task.classes]].max(axis=1)
    cams = _overlays(explain, model, images, preds, category, targets, p_pos, n, run_dir)
    record.setdefault("artifacts", {})["cams"] = cams
    record["artifacts"]["cams_model"] = model_path
    if positive >= 0:
        record["error_analysis"] = {
            "split": split,
            "threshold": record["metrics"][split]["operating_point"]["threshold"],
            "false_negatives": _false_negatives(preds, category, task.classes[positive], cams),
        }
    write_json_atomic(run_dir / RECORD_NAME, record)
    log(f"wrote {len(cams)} overlays under {run_dir / 'cams'}")
    return record
