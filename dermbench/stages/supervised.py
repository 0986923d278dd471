"""The supervised training stage: build, restore, train one epoch, validate, save; one screen each.

Images arrive decoded once (uint8, N x S x S x 3) and stay on the host as one tensor; each batch is
moved to the device, converted to float, augmented there and normalised. Every epoch writes a
checkpoint, so a killed run resumes from its last finished epoch with the same result: the batch
order and all randomness of an epoch derive from (seed, stage, epoch) alone.

Stage contract (``docs/plugins.md``): each history row is handed to ``ctx.on_epoch_end`` as it
is made; ``last.pt`` holds what ``resume_state`` gives back; the result names the epoch whose
weights the model holds when the stage returns.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score
from torch import nn

from dermbench.components import Ref
from dermbench.data.split_data import SplitData
from dermbench.errors import ConfigError, TrainingError
from dermbench.evaluation.weighted import macro_auc, ones
from dermbench.models.blocks import HEAD, Block, block_map, freeze_frozen_norms, set_trainable, trainable_at
from dermbench.models.parts import classifier_module, classifier_param_ids, trainable_last_stages
from dermbench.plugins.contract import BatchContext, LossContext, OptimContext, StageContext, StageResult
from dermbench.plugins.options import options_to_dict
from dermbench.predict.logits import predict_logits
from dermbench.stages import distributed
from dermbench.stages.augment import augment
from dermbench.stages.checkpoints import LAST, atomic_save, best_name, load_weights
from dermbench.stages.device import input_stats, normalise, to_float01, to_model_layout
from dermbench.stages.host_heap import bound_host_heap
from dermbench.stages.options import SupervisedOptions
from dermbench.stages.precision import autocast
from dermbench.stages.selection import Selection

FREEZE_MODES = ("none", "backbone")


@dataclass
class Trainables:
    """What one stage trains with, built from the recipe and the run's overrides."""

    loss_fn: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any | None
    sampler: Any | None
    batch_transform: Any | None
    resolved: dict = field(default_factory=dict)  # the values used, for the run record
    blocks: list[Block] | None = None  # the frozen-block schedule's map, head first; None: no schedule
    net: nn.Module | None = None  # the network the batches go through, when not the model (compiled)


def class_counts(y: np.ndarray, k: int) -> list[int]:
    return np.bincount(y, minlength=k).astype(int).tolist()


def epoch_seed(seed: int, stage: int, epoch: int) -> int:
    return (seed * 1_000_003 + stage * 10_007 + epoch) % (2**31)


# --- build ----------------------------------------------------------------------------------


def _lr_blocks(model: nn.Module, model_name: str) -> list[Block]:
    """The block map, or for a model that names no stages its top-level modules (the head apart)."""
    try:
        return block_map(model, model_name)
    except ConfigError:
        head = classifier_param_ids(model)
        blocks = [Block(HEAD, frozenset(n for n, p in model.named_parameters() if id(p) in head))]
        for child, module in model.named_children():
            names = frozenset(f"{child}.{n}" for n, p in module.named_parameters() if id(p) not in head)
            if names:
                blocks.insert(1, Block(child, names))  # top first, as block_map orders them
        return blocks


def layerwise_groups(model: nn.Module, model_name: str, opts: SupervisedOptions, lr: float) -> list[dict]:
    """Discriminative learning rates: the block map (``dermbench.models.blocks``) from the input up,
    the stem and whatever lies in no block joined to the lowest block, the rates geometric from
    ``lr x layer_lr_min_scale`` to ``lr`` at the head (``np.geomspace``, as fastai spreads
    ``slice(lo, hi)`` over layer groups). Each group records its ``block`` name."""
    if opts.backbone_lr_scale != 1.0 or opts.freeze != "none" or opts.unfreeze_every:
        raise ConfigError(
            "stage option layer_lr_min_scale replaces backbone_lr_scale, freeze and unfreeze_every: use one"
        )
    if not 0 < opts.layer_lr_min_scale <= 1:
        raise ConfigError(f"stage option layer_lr_min_scale must be in (0, 1], got {opts.layer_lr_min_scale}")
    blocks = list(reversed(_lr_blocks(model, model_name)))  # input to output, the head last
    named = dict(model.named_parameters())
    placed = set().union(*(b.params for b in blocks))
    rest = frozenset(n for n in named if n not in placed)
    groups = [(blocks[0].name, blocks[0].params | rest), *[(b.name, b.params) for b in blocks[1:]]]
    rates = np.geomspace(lr * opts.layer_lr_min_scale, lr, len(groups))
    for p in model.parameters():
        p.requires_grad_(True)
    return [{"params": [named[n] for n in sorted(names)], "lr": float(r), "block": name}
            for (name, names), r in zip(groups, rates, strict=True) if names]  # fmt: skip


def param_groups(model: nn.Module, opts: SupervisedOptions, lr: float, model_name: str = "") -> list[dict]:
    """The optimiser's parameter groups; with ``freeze=backbone`` everything else stops training."""
    if opts.layer_lr_min_scale != 1.0:
        return layerwise_groups(model, model_name, opts, lr)
    if opts.freeze not in FREEZE_MODES:
        raise ConfigError(
            f"stage option freeze must be one of {', '.join(FREEZE_MODES)}, got {opts.freeze!r}"
        )
    if opts.train_last_stages and opts.freeze != "backbone":
        raise ConfigError("stage option train_last_stages needs freeze=backbone (it unfreezes stages of it)")
    if opts.unfreeze_every and (opts.freeze != "none" or opts.train_last_stages):
        raise ConfigError(
            "stage option unfreeze_every sets what trains itself: leave freeze=none, train_last_stages=0"
        )
    if opts.freeze == "none":  # a frozen earlier stage must not leave its freeze behind
        for p in model.parameters():
            p.requires_grad_(True)
    if opts.backbone_lr_scale == 1.0 and opts.freeze == "none":
        return [{"params": list(model.parameters())}]
    head_ids = classifier_param_ids(model)
    head = [p for p in model.parameters() if id(p) in head_ids]
    body = [p for p in model.parameters() if id(p) not in head_ids]
    if opts.freeze == "backbone":
        top = trainable_last_stages(model, opts.train_last_stages)
        top_ids = {id(p) for p in top}
        for p in body:
            p.requires_grad_(id(p) in top_ids)
        for p in head:
            p.requires_grad_(True)
        if not top:
            return [{"params": head}]
        return [{"params": top, "lr": lr * opts.backbone_lr_scale}, {"params": head, "lr": lr}]
    return [{"params": body, "lr": lr * opts.backbone_lr_scale}, {"params": head, "lr": lr}]


def _slot(ref: Ref, cfg: Any, slot: str) -> dict[str, Any]:
    """A component's option values: the recipe's, then the run's ``--opt SLOT.NAME=...``."""
    return {**ref.options, **cfg.component_options(slot)}


def build_trainables(options: SupervisedOptions, ctx: StageContext) -> Trainables:
    cfg, recipe, reg, task = ctx.cfg, ctx.recipe, ctx.registries, ctx.task
    counts = class_counts(ctx.train.y, task.num_classes)
    lctx = LossContext(task.num_classes, counts, list(task.classes), str(ctx.device))
    loss_ref = recipe.loss or Ref(reg.default_of("losses"))
    loss_opts = reg.losses.get(loss_ref.name).make_options(_slot(loss_ref, cfg, "loss"))
    loss_fn = reg.losses.call(loss_ref.name, loss_opts, lctx).to(ctx.device)
    steps = math.ceil(len(ctx.train) / cfg.batch_size)
    octx = OptimContext(cfg.lr, cfg.weight_decay, recipe.epochs or cfg.epochs, steps, cfg.batch_size)
    opt_ref = recipe.optimizer or Ref(reg.default_of("optimizers"))
    opt_opts = reg.optimizers.get(opt_ref.name).make_options(_slot(opt_ref, cfg, "optimizer"))
    groups = param_groups(ctx.model, options, cfg.lr if cfg.lr is not None else opt_opts.lr, cfg.model)
    optimizer = reg.optimizers.call(opt_ref.name, opt_opts, groups, octx)
    scheduler, schedule = None, None
    if recipe.scheduler is not None:
        values = _slot(recipe.scheduler, cfg, "scheduler")
        scheduler = reg.schedulers.build(recipe.scheduler.name, values, optimizer, octx)
        schedule = {"name": recipe.scheduler.name, "options": dict(values), "epochs": octx.epochs}
    sampler_ref = Ref(cfg.sampler) if cfg.sampler else recipe.sampler
    sampler = None
    blocks = block_map(ctx.model, cfg.model, options.blocks) if options.unfreeze_every else None
    if sampler_ref is not None:
        sampler = reg.samplers.build(sampler_ref.name, _slot(sampler_ref, cfg, "sampler"), ctx.train.y, octx)
    mixer = None
    if options.batch_transform:
        values = cfg.component_options("batch_transform")
        mixer = reg.batch_transforms.build(options.batch_transform, values, BatchContext(task.num_classes))
    resolved = {
        "stage": recipe.name,
        "epochs": octx.epochs,
        "lr": cfg.lr if cfg.lr is not None else opt_opts.lr,
        "loss": {"name": loss_ref.name, "options": options_to_dict(loss_opts)},
        "optimizer": {"name": opt_ref.name, "options": options_to_dict(opt_opts)},
        "scheduler": schedule,  # its length is the stage's epochs as run: --epochs, else the profile's
        "batch_transform": options.batch_transform or None,
    }
    if blocks is not None:
        resolved["blocks"] = {"unfreeze_every": options.unfreeze_every, "top_first": [b.name for b in blocks]}
    if any("block" in g for g in groups):  # layer-wise rates: each block's, from the input up
        resolved["lr_groups"] = {g["block"]: g["lr"] for g in groups}
    net = compiled(distributed.training_module(ctx.model), options.compile) if options.compile else None
    if net is not None:
        resolved["compile"] = options.compile
    return Trainables(loss_fn, optimizer, scheduler, sampler, mixer, resolved, blocks, net)


def compiled(net: nn.Module, backend: str) -> nn.Module:
    """``torch.compile(net, backend=backend)``; its parameters stay ``net``'s, so the optimiser,
    checkpoints and DDP see no change."""
    try:
        return torch.compile(net, backend=backend)
    except Exception as exc:  # torch's InvalidBackend and the like: name the option
        raise ConfigError(
            f"option compile={backend!r}: {type(exc).__name__}: {exc} (e.g. inductor, eager, aot_eager)"
        ) from None


# --- restore, train, validate, save -----------------------------------------------------------


def restore(ctx: StageContext, parts: Trainables, selection: Selection) -> int:
    """Load the stage's resume state, if any; the first epoch still to run."""
    st = ctx.resume_state
    if st is None:
        return 1
    ctx.model.load_state_dict(st["model"])
    parts.optimizer.load_state_dict(st["optimizer"])
    if parts.scheduler is not None and st.get("scheduler"):
        parts.scheduler.load_state_dict(st["scheduler"])
    selection.load(st)
    return int(st["epoch"]) + 1


def _epoch_order(parts: Trainables, n: int, seed: int) -> np.ndarray:
    if parts.sampler is not None:
        return parts.sampler.epoch_indices(seed)
    return np.random.default_rng(seed).permutation(n)


def mixed_loss(loss_fn: nn.Module, logits: torch.Tensor, targets: Any) -> torch.Tensor:
    """The loss on class indices, or on a mixed batch's ``(labels, weight)`` pairs, weighted."""
    if isinstance(targets, torch.Tensor):
        return loss_fn(logits, targets)
    return sum(w * loss_fn(logits, y) for y, w in targets)


def train_one_epoch(
    options: SupervisedOptions, ctx: StageContext, parts: Trainables, seed: int, desc: str
) -> dict:
    """One pass over the training split; the epoch's loss, accuracy and macro-F1."""
    cfg, model, device = ctx.cfg, ctx.model, ctx.device
    bound_host_heap()  # without it the heap creeps by a batch's size every few steps
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    order = _epoch_order(parts, len(ctx.train), seed)
    model.train()
    if parts.blocks is not None:
        freeze_frozen_norms(model)
    if hasattr(parts.optimizer, "train"):
        parts.optimizer.train()
    tot_loss, preds, targets = torch.zeros((), device=device), [], []  # summed on the device: no host sync
    stats = input_stats(model)
    net, world = (
        parts.net if parts.net is not None else distributed.training_module(model),
        distributed.current().world,
    )  # DDP under torchrun
    for start in _progress(range(0, len(order), cfg.batch_size), ctx.progress, desc):
        batch = order[start : start + cfg.batch_size]
        if len(batch) < 2 * world and len(order) > 1:
            continue  # a batch of one (per rank) breaks batch norm; its image is seen again next epoch
        idx = torch.as_tensor(distributed.shard(batch))
        x = normalise(augment(to_float01(ctx.train.images[idx], device), cfg.augment, gen), stats)
        y = torch.as_tensor(ctx.train.y[idx.numpy()], device=device)
        loss_target: Any = y
        if parts.batch_transform is not None:
            mixed = parts.batch_transform(x, y, gen)
            x, loss_target = mixed.images, mixed.targets
        with autocast(device):
            logits = net(to_model_layout(x))
        loss = mixed_loss(parts.loss_fn, logits.float(), loss_target)
        parts.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if options.grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), options.grad_clip)
        parts.optimizer.step()
        tot_loss += loss.detach() * len(idx)
        preds.append(logits.detach().argmax(1))
        targets.append(y)
    return _epoch_scores(*distributed.gather_epoch(tot_loss, preds, targets))


def _epoch_scores(tot_loss: torch.Tensor, preds: list, targets: list) -> dict:
    p, t = torch.cat(preds).cpu().numpy(), torch.cat(targets).cpu().numpy()
    return {
        "loss": float(tot_loss) / max(len(t), 1),
        "accuracy": float((p == t).mean()),
        "macro_f1": float(f1_score(t, p, average="macro", zero_division=0)),
        "images": int(len(t)),  # under torchrun, over every rank: each image once, not once a rank
    }


def validate(
    model: nn.Module, split: SplitData, loss_fn: nn.Module, batch_size: int, device: torch.device
) -> dict:
    logits = predict_logits(model, split.images, batch_size, device)
    y = torch.as_tensor(split.y)
    with torch.no_grad():
        loss = float(loss_fn(logits.to(device), y.to(device)).item())
    pred = logits.argmax(1).numpy()
    probs = F.softmax(logits, dim=1).numpy()
    auc = (
        float(macro_auc(np.asarray(split.y), probs, ones(len(split.y)))[0]) if len(split.y) else float("nan")
    )
    return {
        "loss": loss,
        "accuracy": float((pred == split.y).mean()),
        "macro_f1": float(f1_score(split.y, pred, average="macro", zero_division=0)),
        "macro_auc": auc if np.isfinite(auc) else None,  # mean one-vs-rest AUC (None: < 2 classes)
        "probs": probs,
    }


def save_last(
    ctx: StageContext, parts: Trainables, epoch: int, done: bool, selection: Selection, history: list
) -> None:
    state = {
        "stage_index": ctx.stage_index,
        "epoch": epoch,
        "stage_done": done,
        "model": ctx.model.state_dict(),
        "optimizer": parts.optimizer.state_dict(),
        "scheduler": parts.scheduler.state_dict() if parts.scheduler is not None else None,
        **selection.state(),
        "history": history,
        "resolved": parts.resolved,  # a run killed at the stage's last epoch still records its settings
    }
    atomic_save(state, ctx.checkpoint_dir / LAST)


# --- the driver ---------------------------------------------------------------------------------


def run_supervised(options: SupervisedOptions, ctx: StageContext) -> StageResult:
    """Train ``ctx.model`` on ``ctx.train`` for the stage's epochs, validating every epoch."""
    cfg, recipe = ctx.cfg, ctx.recipe
    epochs = recipe.epochs or cfg.epochs
    if options.reset_head and ctx.resume_state is None:
        reset_classifier(ctx.model, epoch_seed(ctx.seed, ctx.stage_index, 0))
    ctx, resampled = resample_training_set(ctx)
    parts = build_trainables(options, ctx)
    if resampled:
        parts.resolved["sampler"] = resampled
    selection = Selection(cfg.select, cfg.early_stopping)
    start = restore(ctx, parts, selection)
    history, new_rows = list(ctx.history), []
    for epoch in range(start, epochs + 1):
        t0 = time.time()
        seed = epoch_seed(ctx.seed, ctx.stage_index, epoch)
        schedule = apply_schedule(ctx.model, parts, options, epoch)
        train = train_one_epoch(options, ctx, parts, seed, f"{recipe.name} epoch {epoch}/{epochs}")
        if hasattr(parts.optimizer, "eval"):
            parts.optimizer.eval()
        if not math.isfinite(train["loss"]):
            raise TrainingError(f"training loss is {train['loss']} in epoch {epoch}: lower the learning rate")
        val = validate(ctx.model, ctx.val, parts.loss_fn, cfg.batch_size * 2, ctx.device)
        row = {**_history_row(recipe.name, epoch, train, val, parts.optimizer, t0), **schedule}
        step_scheduler(parts.scheduler, row)  # after the row, which keeps the rate this epoch ran at
        if selection.update(row, epoch):
            atomic_save(
                {"model": ctx.model.state_dict(), "epoch": epoch},
                ctx.checkpoint_dir / best_name(ctx.stage_index),
            )
        history.append(row)
        new_rows.append(row)
        stop = selection.should_stop()
        save_last(ctx, parts, epoch, stop or epoch == epochs, selection, history)
        ctx.on_epoch_end(row)
        if stop:
            break
    result = _finish(ctx, selection, history, new_rows, stopped_early=epoch < epochs if new_rows else False)
    return replace(result, resolved=parts.resolved)


def step_scheduler(scheduler: Any, row: dict) -> None:
    """Once per epoch: a plateau schedule on the row's watched value, any other without one; the
    next epoch runs at the new rate."""
    if scheduler is None:
        return
    monitor = getattr(scheduler, "monitor", None)
    if monitor is None:
        scheduler.step()
    else:
        scheduler.step(row[monitor])


def resample_training_set(ctx: StageContext) -> tuple[StageContext, dict]:
    """A sampler that makes new training images (SMOTE) gets the stage's training split first; the
    stage then trains on the enlarged split, the same on resume (the same seed)."""
    ref = Ref(ctx.cfg.sampler) if ctx.cfg.sampler else ctx.recipe.sampler
    if ref is None:
        return ctx, {}
    octx = OptimContext(
        ctx.cfg.lr, ctx.cfg.weight_decay, ctx.recipe.epochs or ctx.cfg.epochs, 1, ctx.cfg.batch_size
    )
    sampler = ctx.registries.samplers.build(ref.name, _slot(ref, ctx.cfg, "sampler"), ctx.train.y, octx)
    if not hasattr(sampler, "resample"):
        return ctx, {}
    train, info = sampler.resample(
        ctx.train, list(ctx.task.classes), epoch_seed(ctx.seed, ctx.stage_index, 0)
    )
    return replace(ctx, train=train), {"name": ref.name, **info}


def reset_classifier(model: nn.Module, seed: int) -> None:
    """Fresh classifier weights (each layer's own initialisation), from ``seed``."""
    torch.manual_seed(seed)
    for module in classifier_module(model).modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()


def apply_schedule(model: nn.Module, parts: Trainables, options: SupervisedOptions, epoch: int) -> dict:
    """Under a frozen-block schedule, what trains in ``epoch``, set on the model and said in the row."""
    if parts.blocks is None:
        return {}
    blocks = trainable_at(parts.blocks, epoch, options.unfreeze_every)
    return {"trainable_blocks": [b.name for b in blocks], "trainable_params": set_trainable(model, blocks)}


def _history_row(stage: str, epoch: int, train: dict, val: dict, optimizer: Any, t0: float) -> dict:
    return {
        "stage": stage,
        "epoch": epoch,
        **{f"train_{k}": train[k] for k in ("loss", "accuracy", "macro_f1", "images")},
        **{f"val_{k}": val[k] for k in ("loss", "accuracy", "macro_f1", "macro_auc")},
        "lr": float(optimizer.param_groups[-1]["lr"]),
        "seconds": round(time.time() - t0, 2),
    }


def _finish(
    ctx: StageContext, selection: Selection, history: list, new_rows: list, stopped_early: bool
) -> StageResult:
    """Load the selected epoch's weights and say which epoch that is."""
    if selection.active and selection.best_epoch is not None:
        ctx.model.load_state_dict(load_weights(ctx.checkpoint_dir / best_name(ctx.stage_index), ctx.device))
        best_epoch = selection.best_epoch
    else:
        best_epoch = history[-1]["epoch"] if history else None
    return StageResult(best_epoch=best_epoch, history=tuple(new_rows), stopped_early=stopped_early)


def _progress(it: Any, enabled: bool, desc: str) -> Any:
    if not enabled:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, desc=desc, leave=False, unit="batch", disable=None)  # None: off when not a terminal
