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

from dermbench.components import ModelContext, build_options
from dermbench.config import RunConfig
from dermbench.errors import DataError, DermbenchError
from dermbench.record import read_record, write_json_atomic

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
    ckpt = run_dir / "checkpoints"
    stages = len(record["method"]["recipe"]["stages"])
    best = ckpt / f"best-{stages - 1}.pt"
    if record["config"].get("ensemble", "none") == "none":
        if record["config"]["select"] != "last" and best.is_file():
            return [str(best.relative_to(run_dir))]
        if record["config"]["select"] == "last" and (ckpt / "last.pt").is_file():
            return [str((ckpt / "last.pt").relative_to(run_dir))]
    raise DermbenchError(f"{run_dir}: no saved model to explain (checkpoints/ is missing or incomplete)")


def explain_run(
    run_dir: str | Path,
    n: int = 8,
    split: str = "test",
    progress: bool = True,
    log: Any = print,
    explainer: str = "gradcampp",
    explainer_options: dict[str, Any] | None = None,
) -> dict:
    from dermbench.builtin.models import build_model
    from dermbench.data.prepare import prepare_data
    from dermbench.plugins import get_plugins
    from dermbench.tasks import resolve_task

    run_dir = Path(run_dir)
    record = read_record(run_dir)
    if record["status"] != "complete":
        raise DermbenchError(f"{run_dir}: the run is not complete; finish it with --resume first")
    if split not in record["predictions"]:
        raise DermbenchError(
            f"{run_dir}: no predictions for split {split!r} (has: {', '.join(record['predictions'])})"
        )
    config = dict(record["config"])
    config["groups"] = tuple(config.get("groups") or ())
    cfg = build_options(RunConfig, config, where="record config")
    reg = get_plugins().registries
    task = resolve_task(cfg.task, reg.tasks)
    data = prepare_data(cfg, task, reg, progress=progress)
    if split.startswith("external:") or split == "test":
        ours = data.info["splits"][split]["fingerprint"]
        theirs = record["data"]["splits"][split]["fingerprint"]
        if ours != theirs:
            raise DataError(
                f"the data of {split!r} changed since the run (fingerprint {ours[:12]} != {theirs[:12]})"
            )
    images = data.splits[split].images.numpy()
    preds = pd.read_csv(run_dir / record["predictions"][split])
    models = record.get("artifacts", {}).get("models") or _scored_checkpoint(run_dir, record)
    model = build_model(
        cfg.model,
        ModelContext(task.num_classes, cfg.image_size, "random"),
        reg.models,
        cfg.component_options("model"),
    )
    model.load_state_dict(torch.load(run_dir / models[0], map_location="cpu", weights_only=True)["model"])
    model.eval()
    explain = reg.explainers.get(explainer).build(explainer_options or {})

    category, positive, targets = _categories(preds, record, split)
    p_pos = (
        preds[f"p_{task.classes[positive]}"]
        if positive >= 0
        else preds[[f"p_{c}" for c in task.classes]].max(1)
    )
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
    record.setdefault("artifacts", {})["cams"] = cams
    record["artifacts"]["cams_model"] = models[0]
    if positive >= 0:
        cam_of = {c["image_id"]: c["path"] for c in cams}
        fn = preds[category == "fn"]
        group_cols = [c for c in ("ita", "skin_type", "sex", "dataset") if c in fn.columns]
        record["error_analysis"] = {
            "split": split,
            "threshold": record["metrics"][split]["operating_point"]["threshold"],
            "false_negatives": [
                {
                    "image_id": str(row["image_id"]),
                    "label": str(row["label_name"]),
                    "probability": float(row[f"p_{task.classes[positive]}"]),
                    **{c: (None if pd.isna(row[c]) else row[c]) for c in group_cols},
                    "cam": cam_of.get(str(row["image_id"])),
                }
                for _, row in fn.sort_values(f"p_{task.classes[positive]}").iterrows()
            ],
        }
    write_json_atomic(run_dir / "record.json", record)
    log(f"wrote {len(cams)} overlays under {run_dir / 'cams'}")
    return record
