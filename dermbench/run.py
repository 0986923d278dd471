"""One run, end to end: data -> split -> stages -> predictions -> post-hoc -> metrics -> record.

Every arrow is a plain call. The record is written when the run starts (status "running"), after
every epoch, and when it ends (status "complete"), always atomically, so a killed run loses at
most the epoch in progress and ``--resume`` picks up from the last checkpoint.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from dermbench import __version__
from dermbench.components import ModelContext
from dermbench.config import RunConfig
from dermbench.data.cache import load_images
from dermbench.data.splits import check_splits, make_splits, split_fingerprint
from dermbench.data.tasking import apply_task
from dermbench.errors import ConfigError
from dermbench.metrics import classification_report, overfitting_gap
from dermbench.plugins import Plugins
from dermbench.record import RECORD_NAME, environment, now, read_record, write_json_atomic
from dermbench.tasks import Task, resolve_task
from dermbench.training import SplitData, StageContext, pick_device, predict_logits

META_COLUMNS = ("skin_type", "ita", "sex", "age", "localization", "dataset")


@dataclass
class PreparedData:
    splits: dict[str, SplitData]
    info: dict[str, Any]
    synthetic: bool
    extra: dict[str, Any] = field(default_factory=dict)


def default_cache_dir(cfg: RunConfig) -> Path:
    import os

    return Path(cfg.cache_dir or os.environ.get("DERMBENCH_CACHE") or Path.home() / ".cache" / "dermbench")


def _load_source(
    name: str, path: str | None, cfg: RunConfig, task: Task, registries: Any, progress: bool
) -> tuple[pd.DataFrame, np.ndarray, dict[str, Any], bool]:
    comp = registries.datasets.get(name)
    opts = cfg.component_options(f"data.{name}")
    if path is None:
        opts = {
            "label_source": task.synthetic_source,
            "priors": dict(task.synthetic_priors) or None,
            "n": cfg.synthetic_n,
            **opts,
        }
    records = comp.build(opts, path)
    frame, dropped = apply_task(records, task)
    images, kept_rows, skipped = load_images(
        records,
        frame["row"].to_numpy(),
        cfg.image_size,
        default_cache_dir(cfg),
        skip_bad=cfg.skip_bad_images,
        progress=progress,
    )
    frame = frame.set_index("row", drop=False).loc[list(kept_rows)].reset_index(drop=True)
    frame["dataset"] = name
    info = {
        "name": name,
        "path": path,
        "n_records": len(records),
        "n_used": len(frame),
        "label_source": records.label_source,
        "dropped_unmapped": dropped,
        "skipped_images": skipped,
        "synthetic": records.synthetic,
    }
    return frame, np.asarray(images), info, records.synthetic


def prepare_data(cfg: RunConfig, task: Task, registries: Any, progress: bool = True) -> PreparedData:
    sources: dict[str, str | None] = dict(cfg.data) if cfg.data else {"synthetic": None}
    frames, arrays, infos, synthetic = [], [], [], False
    for name, path in sources.items():
        frame, images, info, synth = _load_source(name, path, cfg, task, registries, progress)
        info["role"] = "train"
        frames.append(frame)
        arrays.append(images)
        infos.append(info)
        synthetic |= synth
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if len(frames) > 1:  # ids and groups from different sources must not collide
        frame["image_id"] = frame["dataset"] + ":" + frame["image_id"].astype(str)
        frame["group"] = frame["dataset"] + ":" + frame["group"].astype(str)
    images = np.concatenate(arrays) if len(arrays) > 1 else arrays[0]
    if len(frame) == 0:
        raise ConfigError(
            f"no images left for task {task.name!r} after mapping labels: check --data and the task"
        )
    idx = make_splits(frame, seed=cfg.split_seed)
    check_splits(frame, idx, list(task.classes), cfg.allow_empty_classes)
    official = "split" in frame.columns and frame["split"].notna().all()
    splits = {name: _split(name, frame, images, pos) for name, pos in idx.items()}
    for name, path in cfg.test_data.items():
        ext_frame, ext_images, info, synth = _load_source(name, path, cfg, task, registries, progress)
        info["role"] = "external-test"
        infos.append(info)
        synthetic |= synth
        key = f"external:{name}"
        splits[key] = _split(key, ext_frame, ext_images, np.arange(len(ext_frame)))
    info = {
        "synthetic": synthetic,
        "image_size": cfg.image_size,
        "datasets": infos,
        "split_protocol": "official"
        if official
        else f"lesion-grouped stratified 70/15/15, split seed {cfg.split_seed}",
        "splits": {
            name: {
                "n": len(s),
                "fingerprint": split_fingerprint(s.frame, np.arange(len(s.frame))),
                "class_counts": dict(
                    zip(task.classes, np.bincount(s.y, minlength=task.num_classes).tolist(), strict=True)
                ),
            }
            for name, s in splits.items()
        },
    }
    return PreparedData(splits=splits, info=info, synthetic=synthetic)


def _split(name: str, frame: pd.DataFrame, images: np.ndarray, pos: np.ndarray) -> SplitData:
    sub = frame.iloc[pos].reset_index(drop=True)
    return SplitData(
        name=name,
        images=torch.from_numpy(np.ascontiguousarray(images[pos])),
        y=sub["y"].to_numpy().astype(np.int64),
        frame=sub,
    )


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


def run_dir_for(cfg: RunConfig) -> Path:
    return Path(cfg.out) / cfg.task / cfg.method / cfg.run_id


def execute(
    cfg: RunConfig,
    plugins: Plugins,
    *,
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
    log: Any = print,
) -> tuple[dict, Path]:
    """Run ``cfg`` and return its record and run dir. A complete run with the same config is reused."""
    reg = plugins.registries
    task = resolve_task(cfg.task, reg.tasks)
    method = reg.methods.get(cfg.method)
    run_dir = run_dir_for(cfg)
    record_path = run_dir / RECORD_NAME
    ckpt_dir = run_dir / "checkpoints"
    if record_path.exists() and not force:
        existing = read_record(record_path)
        if existing.get("status") == "complete":
            log(f"already complete with the same resolved config: {record_path} (use --force to run again)")
            return existing, run_dir
        if not resume and (ckpt_dir / "last.pt").exists():
            raise ConfigError(
                f"an unfinished run with the same config is in {run_dir}: add --resume to continue it, "
                f"or --force to start over"
            )
    if force and run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)

    data = prepare_data(cfg, task, reg, progress=progress)
    device = pick_device(cfg.device)
    record: dict[str, Any] = {
        "schema": "dermbench.run/1",
        "run_id": cfg.run_id,
        "status": "running",
        "created": now(),
        "finished": None,
        "seed": cfg.seed,
        "profile": cfg.profile,
        "protocol": cfg.profile,
        "task": task.to_dict(),
        "method": {
            "name": method.name,
            "summary": method.summary,
            "paper": method.paper,
            "plugin": method.plugin,
            "plugin_version": _plugin_version(plugins, method.plugin),
            "recipe": method.to_dict(),
        },
        "config": cfg.to_dict(),
        "environment": environment(_device_name(device), plugins.versions()),
        "data": data.info,
        "history": [],
        "best_epoch": None,
        "metrics": {},
        "overfitting_gap": None,
        "predictions": {},
        "artifacts": {},
    }
    write_json_atomic(record_path, record)
    plugins.run_start(record)

    resume_state = None
    if resume and (ckpt_dir / "last.pt").exists():
        resume_state = torch.load(ckpt_dir / "last.pt", map_location="cpu", weights_only=False)
        record["history"] = list(resume_state["history"])
        log(f"resuming {run_dir} after {resume_state['history'][-1]['stage']} epoch {resume_state['epoch']}")

    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed % (2**32))
    model_opts = cfg.component_options("model")
    from dermbench.builtin.models import build_model

    model = build_model(
        cfg.model,
        ModelContext(num_classes=task.num_classes, image_size=cfg.image_size, init=cfg.init),
        reg.models,
        model_opts,
    ).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)

    def on_epoch_end(row: dict) -> None:
        write_json_atomic(record_path, record)
        plugins.epoch_end(record, row)
        if progress:
            log(
                f"  {row['stage']} epoch {row['epoch']}: train loss {row['train_loss']:.4f} acc "
                f"{row['train_accuracy']:.3f} | val loss {row['val_loss']:.4f} acc {row['val_accuracy']:.3f} "
                f"macro-F1 {row['val_macro_f1']:.3f} ({row['seconds']:.1f}s)"
            )

    best_epoch = None
    for i, recipe in enumerate(method.stages):
        state = None
        if resume_state is not None:
            done_index = resume_state["stage_index"]
            if i < done_index or (i == done_index and resume_state["stage_done"]):
                if i == done_index:
                    model.load_state_dict(resume_state["model"])
                    best_epoch = resume_state["best_epoch"] or resume_state["epoch"]
                continue
            if i == done_index:
                state = resume_state
        runner = reg.stages.get(recipe.runner)
        ctx = StageContext(
            model=model,
            train=data.splits["train"],
            val=data.splits["val"],
            task=task,
            cfg=cfg,
            recipe=recipe,
            stage_index=i,
            registries=reg,
            device=device,
            history=record["history"],
            checkpoint_dir=ckpt_dir,
            on_epoch_end=on_epoch_end,
            resume_state=state,
            progress=progress,
        )
        runner.build({**recipe.options, **cfg.component_options("stage")}, ctx)
        best_epoch = ctx.extra.get("best_epoch")
    if resume_state is not None and resume_state.get("stage_done") and cfg.select != "last":
        best = ckpt_dir / f"best-{len(method.stages) - 1}.pt"
        if best.exists():
            model.load_state_dict(torch.load(best, map_location=device, weights_only=True)["model"])
    record["best_epoch"] = best_epoch

    scored = score(model, data, task, method, cfg, plugins, device, run_dir)
    record.update(scored)
    record["overfitting_gap"] = overfitting_gap(record["history"])
    record["status"] = "complete"
    record["finished"] = now()
    write_json_atomic(record_path, record)
    plugins.run_finished(record, str(run_dir))
    return record, run_dir


def score(
    model: torch.nn.Module,
    data: PreparedData,
    task: Task,
    method: Any,
    cfg: RunConfig,
    plugins: Plugins,
    device: torch.device,
    run_dir: Path,
) -> dict[str, Any]:
    """Predict every split, fit post-hoc steps on validation, score every split."""
    reg = plugins.registries
    probs = {
        name: torch.softmax(predict_logits(model, s.images, cfg.batch_size * 2, device), dim=1).numpy()
        for name, s in data.splits.items()
    }
    posthoc_refs = list(method.posthoc)
    if task.is_decision_task and not any(r.name == "recall_threshold" for r in posthoc_refs):
        from dermbench.components import Ref

        posthoc_refs.insert(0, Ref("recall_threshold"))
    steps = []
    for ref in posthoc_refs:
        comp = reg.posthoc.get(ref.name)
        step = comp.build({**ref.options, **cfg.component_options(f"posthoc.{ref.name}")}, _posthoc_ctx(task))
        val = data.splits["val"]
        step.fit(val.y, probs["val"], val.frame)
        steps.append((getattr(step, "key", ref.name), step))
    metrics: dict[str, Any] = {}
    predictions: dict[str, str] = {}
    pred_dir = run_dir / "predictions"
    pred_dir.mkdir(parents=True, exist_ok=True)
    for name, split in data.splits.items():
        m = classification_report(split.y, probs[name], list(task.classes))
        for key, step in steps:
            m[key] = step.apply(split.y, probs[name], split.frame)
        metrics[name] = m
        fname = name.replace(":", "-") + ".csv"
        tmp = pred_dir / (fname + ".tmp")
        predictions_frame(split, probs[name], task).to_csv(tmp, index=False)
        tmp.replace(pred_dir / fname)
        predictions[name] = f"predictions/{fname}"
    return {"metrics": metrics, "predictions": predictions}


def _posthoc_ctx(task: Task) -> Any:
    from dermbench.builtin.posthoc import PosthocContext

    return PosthocContext(
        classes=list(task.classes),
        positive_class=task.positive_class,
        recall_constraint=task.recall_constraint,
    )


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return "cpu"


def _plugin_version(plugins: Plugins, name: str) -> str | None:
    if name.startswith("dermbench."):
        return __version__
    for p in plugins.info:
        if p.name == name:
            return p.version
    return None
