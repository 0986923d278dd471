"""The supervised training stage: one screen per idea.

Images arrive decoded once (uint8, N x S x S x 3) and stay on the host as one tensor; each batch is
moved to the device, converted to float, augmented there and normalised. Every epoch writes a
checkpoint, so a killed run resumes from its last finished epoch with the same result: the batch
order and all randomness of an epoch derive from (seed, stage, epoch) alone.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score
from torch import nn

from dermbench.components import LossContext, OptimContext, Ref, StageRecipe
from dermbench.config import RunConfig
from dermbench.errors import ConfigError, TrainingError
from dermbench.tasks import Task

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class SplitData:
    """One split's decoded images, integer labels and records."""

    name: str
    images: torch.Tensor  # uint8, (N, S, S, 3), on the host
    y: np.ndarray  # int64, (N,)
    frame: pd.DataFrame

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class StageContext:
    """What a stage runner gets: the model to train in place and everything around it."""

    model: nn.Module
    train: SplitData
    val: SplitData
    task: Task
    cfg: RunConfig
    recipe: StageRecipe
    stage_index: int
    registries: Any
    device: torch.device
    history: list[dict]
    checkpoint_dir: Path
    on_epoch_end: Callable[[dict], None] = lambda row: None
    resume_state: dict | None = None
    progress: bool = True
    extra: dict = field(default_factory=dict)


# --- device and tensors ---------------------------------------------------------------------


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: CUDA is not available on this machine")
    return torch.device(name)


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_float01(batch_uint8: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 NHWC on the host -> float NCHW in [0, 1] on the device."""
    return batch_uint8.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255)


def to_model_layout(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if x.device.type == "cuda" else x


def to_input(batch_uint8: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 NHWC on the host -> normalised float NCHW on the device (channels_last on CUDA)."""
    return to_model_layout(normalise(to_float01(batch_uint8, device)))


def augment(x: torch.Tensor, policy: str, gen: torch.Generator) -> torch.Tensor:
    """Batch augmentation on float NCHW in [0, 1] before normalisation.

    ``flips``: horizontal and vertical flips and right-angle rotations (a lesion has no up);
    ``standard``: flips plus a random rotation of up to +-30 degrees (reflection padding),
    brightness/contrast/saturation jitter of +-20% and random erasing of one rectangle with
    probability 0.25.
    """
    if policy == "none":
        return x
    n = x.shape[0]
    rnd = torch.rand(n, 6, generator=gen).to(x.device)
    hflip = (rnd[:, 0] < 0.5).view(n, 1, 1, 1)
    vflip = (rnd[:, 1] < 0.5).view(n, 1, 1, 1)
    x = torch.where(hflip, x.flip(3), x)
    x = torch.where(vflip, x.flip(2), x)
    if x.shape[2] == x.shape[3]:
        x = torch.where((rnd[:, 2] < 0.5).view(n, 1, 1, 1), x.transpose(2, 3), x)
    if policy == "standard":
        x = random_rotate(x, gen, max_degrees=30.0)
        b = (1 + (rnd[:, 3] - 0.5) * 0.4).view(n, 1, 1, 1)
        c = (1 + (rnd[:, 4] - 0.5) * 0.4).view(n, 1, 1, 1)
        s = (1 + (rnd[:, 5] - 0.5) * 0.4).view(n, 1, 1, 1)
        x = x * b
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * c + mean
        gray = x.mean(dim=1, keepdim=True)
        x = ((x - gray) * s + gray).clamp(0, 1)
        x = random_erase(x, gen, p=0.25)
    return x


def random_rotate(x: torch.Tensor, gen: torch.Generator, max_degrees: float) -> torch.Tensor:
    n = x.shape[0]
    angle = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(max_degrees)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack(
        [torch.stack([cos, -sin, torch.zeros(n)], 1), torch.stack([sin, cos, torch.zeros(n)], 1)], 1
    )
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def random_erase(x: torch.Tensor, gen: torch.Generator, p: float) -> torch.Tensor:
    n, _, h, w = x.shape
    r = torch.rand(n, 5, generator=gen)
    out = x.clone()
    for i in torch.nonzero(r[:, 0] < p).flatten().tolist():
        eh, ew = max(1, int(h * (0.1 + 0.3 * r[i, 1]))), max(1, int(w * (0.1 + 0.3 * r[i, 2])))
        top, left = int((h - eh) * r[i, 3]), int((w - ew) * r[i, 4])
        out[i, :, top : top + eh, left : left + ew] = 0.5
    return out


@functools.cache
def _mean_std(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """ImageNet statistics on ``device``, made once rather than copied over for every batch."""
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    return mean, std


def normalise(x01: torch.Tensor) -> torch.Tensor:
    mean, std = _mean_std(x01.device)
    return (x01 - mean) / std


def epoch_seed(seed: int, stage: int, epoch: int) -> int:
    return (seed * 1_000_003 + stage * 10_007 + epoch) % (2**31)


# --- prediction -----------------------------------------------------------------------------


@torch.no_grad()
def predict_logits(
    model: nn.Module, images: torch.Tensor, batch_size: int, device: torch.device
) -> torch.Tensor:
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = to_input(images[start : start + batch_size], device)
        with autocast(device):
            out.append(model(x).float().cpu())
    return torch.cat(out) if out else torch.empty(0)


def evaluate(
    model: nn.Module, split: SplitData, loss_fn: nn.Module, batch_size: int, device: torch.device
) -> dict:
    logits = predict_logits(model, split.images, batch_size, device)
    y = torch.as_tensor(split.y)
    with torch.no_grad():
        loss = float(loss_fn(logits.to(device), y.to(device)).item())
    pred = logits.argmax(1).numpy()
    return {
        "loss": loss,
        "accuracy": float((pred == split.y).mean()),
        "macro_f1": float(f1_score(split.y, pred, average="macro", zero_division=0)),
        "probs": F.softmax(logits, dim=1).numpy(),
    }


# --- the stage ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SupervisedOptions:
    backbone_lr_scale: float = 1.0  # lr of everything but the classifier = lr x this
    freeze: str = "none"  # none | backbone (train the classifier only)
    grad_clip: float | None = None


def class_counts(y: np.ndarray, k: int) -> list[int]:
    return np.bincount(y, minlength=k).astype(int).tolist()


def _classifier_params(model: nn.Module) -> set[int]:
    head = model.get_classifier() if hasattr(model, "get_classifier") else getattr(model, "head", None)
    if not isinstance(head, nn.Module):
        raise ConfigError(f"model {type(model).__name__} exposes no classifier for backbone_lr_scale/freeze")
    return {id(p) for p in head.parameters()}


def param_groups(model: nn.Module, opts: SupervisedOptions, lr: float) -> list[dict]:
    if opts.freeze not in ("none", "backbone"):
        raise ConfigError(f"stage option freeze must be none or backbone, got {opts.freeze!r}")
    if opts.backbone_lr_scale == 1.0 and opts.freeze == "none":
        return [{"params": [p for p in model.parameters() if p.requires_grad]}]
    head_ids = _classifier_params(model)
    head = [p for p in model.parameters() if id(p) in head_ids]
    body = [p for p in model.parameters() if id(p) not in head_ids]
    if opts.freeze == "backbone":
        for p in body:
            p.requires_grad_(False)
        return [{"params": head}]
    return [{"params": body, "lr": lr * opts.backbone_lr_scale}, {"params": head, "lr": lr}]


SELECT_MODE = {"val_macro_f1": "max", "val_accuracy": "max", "val_loss": "min"}


def run_supervised(options: SupervisedOptions, ctx: StageContext) -> None:
    """Train ``ctx.model`` on ``ctx.train`` for the stage's epochs, validating every epoch."""
    cfg, recipe, reg, device = ctx.cfg, ctx.recipe, ctx.registries, ctx.device
    model = ctx.model
    k = ctx.task.num_classes
    epochs = recipe.epochs or cfg.epochs
    counts = class_counts(ctx.train.y, k)
    loss_fn = reg.losses.get(recipe.loss.name).build(
        {**recipe.loss.options, **cfg.component_options("loss")},
        LossContext(num_classes=k, class_counts=counts, classes=list(ctx.task.classes), device=str(device)),
    )
    loss_fn = loss_fn.to(device)
    steps = math.ceil(len(ctx.train) / cfg.batch_size)
    octx = OptimContext(lr=cfg.lr, weight_decay=cfg.weight_decay, epochs=epochs, steps_per_epoch=steps)
    opt_comp = reg.optimizers.get(recipe.optimizer.name)
    opt_opts = opt_comp.make_options({**recipe.optimizer.options, **cfg.component_options("optimizer")})
    base_lr = cfg.lr if cfg.lr is not None else opt_opts.lr
    groups = param_groups(model, options, base_lr)
    optimizer = opt_comp.factory(opt_opts, groups, octx)
    scheduler = None
    if recipe.scheduler is not None:
        scheduler = reg.schedulers.get(recipe.scheduler.name).build(
            {**recipe.scheduler.options, **cfg.component_options("scheduler")}, optimizer, octx
        )
    sampler = None
    sampler_ref = Ref(cfg.sampler) if cfg.sampler else recipe.sampler
    if sampler_ref is not None:
        sampler = reg.samplers.get(sampler_ref.name).build(
            {**sampler_ref.options, **cfg.component_options("sampler")}, ctx.train.y, octx
        )

    start_epoch, best, best_epoch, bad_epochs = 1, None, None, 0
    if ctx.resume_state is not None:
        st = ctx.resume_state
        model.load_state_dict(st["model"])
        optimizer.load_state_dict(st["optimizer"])
        if scheduler is not None and st.get("scheduler"):
            scheduler.load_state_dict(st["scheduler"])
        start_epoch = st["epoch"] + 1
        best, best_epoch, bad_epochs = st["best"], st["best_epoch"], st["bad_epochs"]

    mode = SELECT_MODE.get(cfg.select)
    for epoch in range(start_epoch, epochs + 1):
        t0 = time.time()
        es = epoch_seed(ctx.extra.get("seed", cfg.seed), ctx.stage_index, epoch)
        torch.manual_seed(es)
        gen = torch.Generator().manual_seed(es)
        order = (
            sampler.epoch_indices(es)
            if sampler is not None
            else np.random.default_rng(es).permutation(len(ctx.train))
        )
        model.train()
        if hasattr(optimizer, "train"):
            optimizer.train()
        # running sums stay on the device: no host sync inside the batch loop
        tot_loss, preds, targets = torch.zeros((), device=device), [], []
        batches = range(0, len(order), cfg.batch_size)
        for start in _progress(batches, ctx.progress, f"{recipe.name} epoch {epoch}/{epochs}"):
            idx = torch.as_tensor(order[start : start + cfg.batch_size])
            if len(idx) < 2 and len(order) > 1:
                continue  # a batch of one breaks batch norm; its image is seen again next epoch
            x = to_model_layout(
                normalise(augment(to_float01(ctx.train.images[idx], device), cfg.augment, gen))
            )
            y = torch.as_tensor(ctx.train.y[idx.numpy()], device=device)
            with autocast(device):
                logits = model(x)
            loss = loss_fn(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if options.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), options.grad_clip)
            optimizer.step()
            tot_loss += loss.detach() * len(idx)
            preds.append(logits.detach().argmax(1))
            targets.append(y)
        if scheduler is not None:
            scheduler.step()
        if hasattr(optimizer, "eval"):
            optimizer.eval()
        p, t = torch.cat(preds).cpu().numpy(), torch.cat(targets).cpu().numpy()
        train_loss = float(tot_loss) / max(len(t), 1)
        if not math.isfinite(train_loss):
            raise TrainingError(f"training loss is {train_loss} in epoch {epoch}: lower the learning rate")
        val = evaluate(model, ctx.val, loss_fn, cfg.batch_size * 2, device)
        row = {
            "stage": recipe.name,
            "epoch": epoch,
            "train_loss": train_loss,
            "train_accuracy": float((p == t).mean()),
            "train_macro_f1": float(f1_score(t, p, average="macro", zero_division=0)),
            "val_loss": val["loss"],
            "val_accuracy": val["accuracy"],
            "val_macro_f1": val["macro_f1"],
            "lr": float(optimizer.param_groups[-1]["lr"]),
            "seconds": round(time.time() - t0, 2),
        }
        improved = False
        if mode is not None:
            score = row[cfg.select]
            improved = best is None or (score > best if mode == "max" else score < best)
            if improved:
                best, best_epoch, bad_epochs = score, epoch, 0
                _atomic_save(
                    {"model": model.state_dict(), "epoch": epoch},
                    ctx.checkpoint_dir / f"best-{ctx.stage_index}.pt",
                )
            else:
                bad_epochs += 1
        ctx.history.append(row)
        stop = cfg.early_stopping is not None and mode is not None and bad_epochs >= cfg.early_stopping
        _atomic_save(
            {
                "stage_index": ctx.stage_index,
                "epoch": epoch,
                "stage_done": stop or epoch == epochs,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "best": best,
                "best_epoch": best_epoch,
                "bad_epochs": bad_epochs,
                "history": ctx.history,
            },
            ctx.checkpoint_dir / "last.pt",
        )
        ctx.on_epoch_end(row)
        if stop:
            break
    if mode is not None and best_epoch is not None:
        state = torch.load(
            ctx.checkpoint_dir / f"best-{ctx.stage_index}.pt", map_location=device, weights_only=True
        )
        model.load_state_dict(state["model"])
        ctx.extra["best_epoch"] = best_epoch
    else:
        ctx.extra["best_epoch"] = ctx.history[-1]["epoch"] if ctx.history else None


def _atomic_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def _progress(it: Any, enabled: bool, desc: str) -> Any:
    if not enabled:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, desc=desc, leave=False, unit="batch", disable=None)  # None: off when not a terminal
