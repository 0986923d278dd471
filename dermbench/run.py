"""One run, end to end: data -> split -> stages -> predictions -> post-hoc -> metrics -> record.

Every arrow is a plain call. The record is written when the run starts (status "running"), after
every epoch, and when it ends (status "complete"), always atomically, so a killed run loses at
most the epoch in progress and ``--resume`` picks up from the last checkpoint.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from dermbench import __version__
from dermbench.audit import audit_run, check_groups, group_values
from dermbench.components import ModelContext
from dermbench.config import RunConfig
from dermbench.data.prepare import PreparedData, describe_split, prepare_data
from dermbench.data.splits import kfold_splits
from dermbench.errors import ConfigError
from dermbench.metrics import classification_report, overfitting_gap
from dermbench.plugins import Plugins
from dermbench.record import RECORD_NAME, SCHEMA, environment, now, read_record, write_json_atomic
from dermbench.tasks import Task, resolve_task
from dermbench.training import SplitData, StageContext, pick_device, predict_logits, to_input

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

    device = pick_device(cfg.device)
    _build_model(cfg, task, reg)  # fail on a bad model, option or weights before decoding any image
    if cfg.groups:
        check_groups(task, cfg.groups)
    data = prepare_data(cfg, task, reg, progress=progress)
    for name in cfg.groups:  # a grouping the data lacks fails now, not after training
        group_values(data.splits["test"].frame, name)
    record: dict[str, Any] = {
        "schema": SCHEMA,
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

    histories: list[list[dict]] = []

    def on_epoch_end(row: dict) -> None:
        record["history"] = [r for h in histories for r in h]
        write_json_atomic(record_path, record)
        plugins.epoch_end(record, row)
        if progress:
            fold = f" fold {row['fold']}" if "fold" in row else ""
            log(
                f"  {row['stage']}{fold} epoch {row['epoch']}: train loss {row['train_loss']:.4f} acc "
                f"{row['train_accuracy']:.3f} | val loss {row['val_loss']:.4f} acc {row['val_accuracy']:.3f} "
                f"macro-F1 {row['val_macro_f1']:.3f} ({row['seconds']:.1f}s)"
            )

    def fit(train: SplitData, val: SplitData, ckpt: Path, fold: int | None) -> tuple[torch.nn.Module, Any]:
        history: list[dict] = []
        histories.append(history)
        return train_model(
            cfg,
            task,
            method,
            reg,
            device,
            train,
            val,
            ckpt,
            history,
            resume,
            progress,
            log,
            on_epoch_end,
            fold,
        )

    k = ensemble_folds(cfg.ensemble)
    if k is None:
        model, best_epoch = fit(data.splits["train"], data.splits["val"], ckpt_dir, None)
        models = [model]
        probs = {name: predict_probs(model, s.images, cfg, device, reg) for name, s in data.splits.items()}
    else:
        pool = concat_splits("val", data.splits["train"], data.splits["val"])
        folds = kfold_splits(pool.frame, k, seed=cfg.split_seed)
        oof = np.zeros((len(pool), task.num_classes))
        models, best_epoch = [], []
        for i, (rest, held_out) in enumerate(folds):
            model, be = fit(
                subset(pool, rest, "train"), subset(pool, held_out, "val"), ckpt_dir / f"fold{i}", i
            )
            oof[held_out] = predict_probs(model, pool.images[torch.as_tensor(held_out)], cfg, device, reg)
            models.append(model)
            best_epoch.append(be)
        data.splits["val"] = pool  # scored on out-of-fold predictions
        data.info["splits"]["val"] = describe_split(pool, task)
        data.info["splits"]["val"]["out_of_fold"] = True
        probs = {"val": oof}
        for name, s in data.splits.items():
            if name != "val":
                probs[name] = np.mean([predict_probs(m, s.images, cfg, device, reg) for m in models], axis=0)
    for i, m in enumerate(models):
        final = ckpt_dir / (f"fold{i}/final.pt" if k is not None else "final.pt")
        final.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"model": m.state_dict()}, final.with_suffix(".tmp"))
        final.with_suffix(".tmp").replace(final)
    record["artifacts"]["models"] = [str(p.relative_to(run_dir)) for p in sorted(ckpt_dir.rglob("final.pt"))]
    record["best_epoch"] = best_epoch
    record["history"] = [r for h in histories for r in h]

    scored = score(probs, data, task, method, cfg, plugins, run_dir)
    record.update(scored)
    if cfg.groups:
        op = record["metrics"]["val"].get("operating_point") or {}
        record["fairness"] = audit_run(
            task,
            tuple(cfg.groups),
            {n: s.frame for n, s in data.splits.items()},
            {n: s.y for n, s in data.splits.items()},
            probs,
            op.get("threshold"),
            cfg.seed,
        )
    record["overfitting_gap"] = overfitting_gap(record["history"])
    record["status"] = "complete"
    record["finished"] = now()
    write_json_atomic(record_path, record)
    plugins.run_finished(record, str(run_dir))
    return record, run_dir


def ensemble_folds(spec: str) -> int | None:
    """``none`` -> None; ``cv3`` -> 3 (k-fold cross-validation ensemble over train + val)."""
    if spec == "none":
        return None
    if spec.startswith("cv") and spec[2:].isdigit() and int(spec[2:]) >= 2:
        return int(spec[2:])
    raise ConfigError(f"--ensemble must be none or cvK with K >= 2 (e.g. cv3), got {spec!r}")


def subset(split: SplitData, pos: np.ndarray, name: str) -> SplitData:
    return SplitData(
        name=name,
        images=split.images[torch.as_tensor(pos)],
        y=split.y[pos],
        frame=split.frame.iloc[pos].reset_index(drop=True),
    )


def concat_splits(name: str, *splits: SplitData) -> SplitData:
    return SplitData(
        name=name,
        images=torch.cat([s.images for s in splits]),
        y=np.concatenate([s.y for s in splits]),
        frame=pd.concat([s.frame for s in splits], ignore_index=True),
    )


def train_model(
    cfg: RunConfig,
    task: Task,
    method: Any,
    reg: Any,
    device: torch.device,
    train: SplitData,
    val: SplitData,
    ckpt_dir: Path,
    history: list[dict],
    resume: bool,
    progress: bool,
    log: Any,
    on_epoch_end: Any,
    fold: int | None = None,
) -> tuple[torch.nn.Module, int | None]:
    """Build a model and run the method's stages on it, resuming from ``ckpt_dir`` if asked."""
    resume_state = None
    if resume and (ckpt_dir / "last.pt").exists():
        resume_state = torch.load(ckpt_dir / "last.pt", map_location="cpu", weights_only=False)
        history.extend(resume_state["history"])
        last = resume_state["history"][-1]
        log(f"resuming {ckpt_dir} after {last['stage']} epoch {last['epoch']}")
    for row in history:
        if fold is not None:
            row["fold"] = fold

    seed = cfg.seed if fold is None else cfg.seed * 100 + fold
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))
    model = _build_model(cfg, task, reg).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)

    def tagged(row: dict) -> None:
        if fold is not None:
            row["fold"] = fold
        on_epoch_end(row)

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
        ctx = StageContext(
            model=model,
            train=train,
            val=val,
            task=task,
            cfg=cfg,
            recipe=recipe,
            stage_index=i,
            registries=reg,
            device=device,
            history=history,
            checkpoint_dir=ckpt_dir,
            on_epoch_end=tagged,
            resume_state=state,
            progress=progress,
            extra={"seed": seed},
        )
        reg.stages.get(recipe.runner).build({**recipe.options, **cfg.component_options("stage")}, ctx)
        best_epoch = ctx.extra.get("best_epoch")
    last_stage_done = resume_state is not None and resume_state["stage_index"] == len(method.stages) - 1
    if last_stage_done and resume_state["stage_done"] and cfg.select != "last":
        best = ckpt_dir / f"best-{len(method.stages) - 1}.pt"
        if best.exists():
            model.load_state_dict(torch.load(best, map_location=device, weights_only=True)["model"])
    return model, best_epoch


def _build_model(cfg: RunConfig, task: Task, reg: Any) -> torch.nn.Module:
    from dermbench.builtin.models import build_model

    ctx = ModelContext(num_classes=task.num_classes, image_size=cfg.image_size, init=cfg.init)
    return build_model(cfg.model, ctx, reg.models, cfg.component_options("model"))


def predict_probs(
    model: torch.nn.Module, images: torch.Tensor, cfg: RunConfig, device: torch.device, reg: Any
) -> np.ndarray:
    """Softmax probabilities, averaged over test-time augmentations when ``cfg.tta`` asks."""
    if cfg.tta == "none":
        return torch.softmax(predict_logits(model, images, cfg.batch_size * 2, device), dim=1).numpy()
    predict = reg.predictors.get("tta").build({"mode": cfg.tta})
    model.eval()
    out = []
    for start in range(0, len(images), cfg.batch_size):
        x = to_input(images[start : start + cfg.batch_size], device)
        out.append(np.asarray(predict(model, x, cfg.batch_size)))
    return np.concatenate(out) if out else np.zeros((0, 0))


def score(
    probs: dict[str, np.ndarray],
    data: PreparedData,
    task: Task,
    method: Any,
    cfg: RunConfig,
    plugins: Plugins,
    run_dir: Path,
) -> dict[str, Any]:
    """Fit post-hoc steps on validation predictions, apply them unchanged to every split, score."""
    reg = plugins.registries
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
    extra_metrics = [(c.name, c.build({}, task)) for c in reg.metrics]
    metrics: dict[str, Any] = {}
    predictions: dict[str, str] = {}
    pred_dir = run_dir / "predictions"
    pred_dir.mkdir(parents=True, exist_ok=True)
    for name, split in data.splits.items():
        m = classification_report(split.y, probs[name], list(task.classes))
        for key, step in steps:
            m[key] = step.apply(split.y, probs[name], split.frame)
            for metric, reason in ((m[key] or {}).get("undefined") or {}).items():
                m.setdefault("undefined", {})[f"{key}.{metric}"] = reason
        for metric_name, fn in extra_metrics:  # plugins' metrics, under "extra"
            try:
                m.setdefault("extra", {})[metric_name] = fn(split.y, probs[name], split.frame)
            except Exception as exc:  # a plugin's metric must not lose the run
                m.setdefault("extra", {})[metric_name] = None
                m.setdefault("undefined", {})[f"extra.{metric_name}"] = f"{type(exc).__name__}: {exc}"
        metrics[name] = m
        if name == "train":
            continue  # training-split metrics are kept; its predictions are not worth the disk
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
