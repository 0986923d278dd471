"""Training a run's model(s): the method's stages in order, resumable, and the cross-validation
ensemble (``--ensemble cvK``): K models over folds of the training split, their mean scored on every split.

Each fold trains from its own seed and checkpoint folder; every history row reaches the run
record as it is made, through ``on_row``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dermbench.components import Method
from dermbench.data.prepare import PreparedData
from dermbench.data.split_data import SplitData, subset
from dermbench.data.splits import kfold_splits
from dermbench.errors import ConfigError
from dermbench.models.build import build_run_model
from dermbench.plugins.contract import StageContext, StageResult
from dermbench.predict.logits import build_predictor, predict_probs
from dermbench.predict.tta import make_tta_predictor
from dermbench.run.config import RunConfig
from dermbench.run.stage_plan import PlannedStage, plan_stages, stage_summary, uses_chain
from dermbench.stages.checkpoints import (
    FINAL,
    LAST,
    atomic_save,
    best_name,
    fold_dir,
    load_state,
    load_weights,
)
from dermbench.tasks import Task


@dataclass(frozen=True)
class FitContext:
    """Everything fitting needs that does not change between folds."""

    cfg: RunConfig
    task: Task
    method: Method
    registries: Any
    device: torch.device
    checkpoint_dir: Path
    resume: bool = False
    progress: bool = True
    log: Callable[..., Any] = print
    on_row: Callable[[dict], None] = lambda row: None
    unlabelled: SplitData | None = None  # --pretrain-data images, for pretraining stages
    sources: list[SplitData] = field(default_factory=list)  # --chain datasets, in order
    histories: list[list[dict]] = field(default_factory=list)  # one per fold, live: the record reads it
    resolved: list[dict] = field(default_factory=list)  # each stage's settings as used (first fold)
    earlier_resolved: list[dict] = field(default_factory=list)  # from the interrupted run, on resume


@dataclass
class Fitted:
    """The trained models, their predictions on every split and the best epoch of each."""

    models: list[torch.nn.Module]
    probs: dict[str, np.ndarray]
    best_epoch: Any
    histories: list[list[dict]] = field(default_factory=list)

    @property
    def history(self) -> list[dict]:
        return [row for h in self.histories for row in h]


def ensemble_folds(spec: str) -> int | None:
    """``none`` -> None; ``cv3`` -> 3 (k-fold cross-validation ensemble over the training split)."""
    if spec == "none":
        return None
    if spec.startswith("cv") and spec[2:].isdigit() and int(spec[2:]) >= 2:
        return int(spec[2:])
    raise ConfigError(f"--ensemble must be none or cvK with K >= 2 (e.g. cv3), got {spec!r}")


def _resume_state(fc: FitContext, ckpt: Path, history: list[dict]) -> dict | None:
    if not (fc.resume and (ckpt / LAST).exists()):
        return None
    state = load_state(ckpt / LAST)
    history.extend(state["history"])
    last = state["history"][-1]
    fc.log(f"resuming {ckpt} after {last['stage']} epoch {last['epoch']}")
    return state


def _label_rows(rows: list[dict], plan: list[PlannedStage]) -> None:
    """Each history row says which dataset its stage trained on."""
    by_stage = {p.recipe.name: p.dataset for p in plan}
    for row in rows:
        if row.get("stage") in by_stage:
            row.setdefault("dataset", by_stage[row["stage"]])


def _skip_stage(i: int, state: dict | None) -> bool:
    """A stage already finished before the run was killed is not run again."""
    return state is not None and (
        i < state["stage_index"] or (i == state["stage_index"] and state["stage_done"])
    )


def fit_one(
    fc: FitContext, train: SplitData, val: SplitData, fold: int | None, history: list[dict]
) -> tuple[torch.nn.Module, Any]:
    """Build a model and run the method's stages on it, resuming from its checkpoints if asked."""
    ckpt = fold_dir(fc.checkpoint_dir, fold)
    plan = plan_stages(fc.method, train, fc.sources)
    fc.histories.append(history)
    state = _resume_state(fc, ckpt, history)
    _label_rows(history, plan)
    seed = fc.cfg.seed if fold is None else fc.cfg.seed * 100 + fold
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))
    model = build_run_model(fc.cfg, fc.task, fc.registries).to(fc.device)
    if fc.device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)

    def on_epoch_end(row: dict) -> None:
        if fold is not None:
            row["fold"] = fold
        _label_rows([row], plan)
        history.append(row)
        fc.on_row(row)

    fold_ctx = StageContext(
        model=model, train=train, val=val, task=fc.task, cfg=fc.cfg, recipe=None, stage_index=0,
        registries=fc.registries, device=fc.device, checkpoint_dir=ckpt, seed=seed,
        on_epoch_end=on_epoch_end, progress=fc.progress, unlabelled=fc.unlabelled,
    )  # fmt: skip
    best_epoch = None
    for i, stage in enumerate(plan):
        recipe = stage.recipe
        if _skip_stage(i, state):
            _carry_resolved(fc, stage, fold, state if i == state["stage_index"] else None)
            if i == state["stage_index"]:
                model.load_state_dict(state["model"])
                best_epoch = state["best_epoch"] or state["epoch"]
            continue
        own = state if state is not None and i == state["stage_index"] else None
        ctx = replace(
            fold_ctx,
            recipe=recipe,
            stage_index=i,
            train=stage.train,
            history=tuple(history),
            resume_state=own,
        )
        result = run_stage(fc, ctx)
        best_epoch = result.best_epoch
        if fold in (None, 0):
            fc.resolved.append({**stage_summary(stage, fc.task), **dict(result.resolved)})
    for row in history:
        if fold is not None:
            row["fold"] = fold
    _load_selected_after_resume(fc, model, ckpt, state, len(plan) - 1)
    return model, best_epoch


def stage_values(cfg: RunConfig, method: Method, recipe: Any) -> tuple[dict[str, Any], int | None]:
    """One stage's option values and epochs: the recipe's, then ``--opt stage.NAME=...`` (every
    stage), then ``--opt stage.STAGE.NAME=...`` (the stage named STAGE only; ``epochs`` there
    replaces the recipe's)."""
    given = cfg.component_options("stage")
    names = [r.name for r in method.stages]
    for key in given:
        head = key.split(".", 1)[0]
        if "." in key and head not in names:
            raise ConfigError(
                f"option stage.{key}: method {method.name!r} has no stage {head!r} (its stages: {', '.join(names)})"
            )
    values = {**recipe.options, **{k: v for k, v in given.items() if "." not in k}}
    values.update(cfg.component_options(f"stage.{recipe.name.split(':', 1)[0]}"))  # source:ham10000 -> source
    epochs = values.pop("epochs", None)
    if epochs is None:
        return values, recipe.epochs
    try:
        epochs = int(epochs)
    except ValueError:
        raise ConfigError(f"option stage.{recipe.name}.epochs: expected an integer, got {epochs!r}") from None
    if epochs < 1:
        raise ConfigError(f"option stage.{recipe.name}.epochs must be >= 1, got {epochs}")
    return values, epochs


def _carry_resolved(fc: FitContext, stage: PlannedStage, fold: int | None, state: dict | None) -> None:
    """A stage that finished before the run was killed keeps its recorded settings: from the record,
    or, when the run died at that stage's last epoch (before the record had them), its checkpoint."""
    if fold not in (None, 0):
        return
    earlier = [r for r in fc.earlier_resolved if r.get("stage") == stage.recipe.name]
    if not earlier and state is not None and state.get("resolved"):
        earlier = [{**stage_summary(stage, fc.task), **state["resolved"]}]
    fc.resolved.extend(earlier)


def run_stage(fc: FitContext, ctx: StageContext) -> StageResult:
    """The stage's runner (the default one when the recipe names none), with the run's options."""
    runner = ctx.recipe.runner or fc.registries.default_of("stages")
    values, epochs = stage_values(fc.cfg, fc.method, ctx.recipe)
    if epochs != ctx.recipe.epochs:
        ctx = replace(ctx, recipe=replace(ctx.recipe, epochs=epochs))
    return fc.registries.stages.build(runner, values, ctx)


def _load_selected_after_resume(
    fc: FitContext, model: torch.nn.Module, ckpt: Path, state: dict | None, last: int
) -> None:
    """A run resumed after its last stage finished still scores the selected epoch."""
    if state is None or state["stage_index"] != last or not state["stage_done"] or fc.cfg.select == "last":
        return
    best = ckpt / best_name(last)
    if best.exists():
        model.load_state_dict(load_weights(best, fc.device))


def run_predictor(fc: FitContext) -> Any | None:
    """The method's predictor component, else test-time augmentation when ``cfg.tta`` asks, else None."""
    ref = fc.method.predictor
    if ref is None:
        return make_tta_predictor(fc.cfg.tta)
    if fc.cfg.tta != "none":
        raise ConfigError(f"method {fc.method.name!r} predicts with {ref.name!r}; --tta does not apply to it")
    values = {**ref.options, **fc.cfg.component_options("predictor")}
    return build_predictor(fc.registries, ref.name, values, list(fc.task.classes), fc.device)


def predict_split(fc: FitContext, model: torch.nn.Module, images: torch.Tensor, predictor: Any) -> np.ndarray:
    """Class probabilities of one split through the run's predictor (None: plain softmax)."""
    return predict_probs(model, images, fc.cfg.batch_size, fc.device, predictor)


def warn_unused_chain(fc: FitContext) -> None:
    """``--chain`` datasets that no stage of the method trains on are said, not silently dropped."""
    if fc.sources and not uses_chain(fc.method):
        fc.log(f"warning: --chain was given but method {fc.method.name!r} trains on the target's data alone")


def warn_unused_unlabelled(fc: FitContext) -> None:
    """``--pretrain-data`` that no stage read is said, not silently dropped."""
    if fc.unlabelled is None:
        return
    if not any(fc.unlabelled.name in (r.get("sources") or {}) for r in fc.resolved):
        fc.log(f"warning: --pretrain-data was given but no stage of method {fc.method.name!r} used it")


def fit_and_predict(fc: FitContext, data: PreparedData) -> Fitted:
    """One model on train (scored on val), or a K-fold ensemble over train (its mean scored on val)."""
    k = ensemble_folds(fc.cfg.ensemble)
    predictor = run_predictor(fc)  # built once, and before training: a bad one fails at once
    warn_unused_chain(fc)
    fitted = _fit(fc, data, k, predictor)
    warn_unused_unlabelled(fc)
    return fitted


def _fit(fc: FitContext, data: PreparedData, k: int | None, predictor: Any) -> Fitted:
    if k is None:
        history: list[dict] = []
        model, best_epoch = fit_one(fc, data.splits["train"], data.splits["val"], None, history)
        probs = {name: predict_split(fc, model, s.images, predictor) for name, s in data.splits.items()}
        return Fitted([model], probs, best_epoch, fc.histories)
    return _fit_cv_ensemble(fc, data, k, predictor)


def _fit_cv_ensemble(fc: FitContext, data: PreparedData, k: int, predictor: Any) -> Fitted:
    """K models, each trained on K-1 folds of the training split and early-stopped on the K-th; the
    mean of their probabilities predicts every split.

    The validation split is in no fold, so what is fitted on it (the recall-constrained threshold,
    post-hoc steps) is fitted on ensemble means of images no model trained on: predictions of the
    kind it is applied to on test. (Fitting on single-model out-of-fold predictions and applying the
    result to a K-model mean, whose probabilities are less extreme, would move the operating point.)
    """
    train = data.splits["train"]
    fitted = Fitted([], {}, [], fc.histories)
    for i, (rest, held_out) in enumerate(kfold_splits(train.frame, k, seed=fc.cfg.split_seed)):
        history: list[dict] = []
        model, best = fit_one(fc, subset(train, rest, "train"), subset(train, held_out, "val"), i, history)
        fitted.models.append(model)
        fitted.best_epoch.append(best)
    for name, s in data.splits.items():
        fitted.probs[name] = np.mean(
            [predict_split(fc, m, s.images, predictor) for m in fitted.models], axis=0
        )
    data.info["ensemble"] = {"folds": k, "folds_of": "train", "predictions": "mean of the fold models",
                             "threshold_fitted_on": "val (held out of every fold)"}  # fmt: skip
    return fitted


def save_final_models(fitted: Fitted, checkpoint_dir: Path, ensemble: bool) -> list[Path]:
    """The scored weights, ``final.pt`` (one per fold for an ensemble)."""
    paths = []
    for i, model in enumerate(fitted.models):
        path = fold_dir(checkpoint_dir, i if ensemble else None) / FINAL
        atomic_save({"model": model.state_dict()}, path)
        paths.append(path)
    return paths
