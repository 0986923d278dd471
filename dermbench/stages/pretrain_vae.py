"""The self-supervised pretraining stage: a ConvNeXt VAE trained on images without their labels,
whose encoder then becomes the run model's backbone.

It reads the training split's images (never validation or test images) and, when the run names
them (``--pretrain-data NAME=PATH``), extra unlabelled datasets, from which any image of the
run's validation or test lesions has already been removed. The encoder is stored once under
``<results>/pretrained/vae/<key>/`` (:mod:`dermbench.stages.encoder_store`), keyed by the images'
fingerprint, the model, the image size, every option, the epochs and the pretraining seed; every
run and training seed asking for the same encoder loads it instead of training it again. The
pretraining seed is an option (default 0), apart from the run's seed, so the seeds of a
classification study share one encoder; set ``pretrain_seed`` to vary it.

Every epoch writes ``last.pt`` in the encoder's folder, so a killed pretraining resumes there
and ends with the same encoder: the batch order, the augmentation and the latent noise of an
epoch come from (pretraining seed, epoch) alone.

This stage trains no classifier and hands no history row to the run: its per-epoch losses are
in the store's ``history.json`` and the plots; the run record gets the key, the folder and the
final losses through the stage's ``resolved`` settings.
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dermbench.data.split_data import SplitData, concat_splits
from dermbench.errors import ConfigError, TrainingError
from dermbench.models.build import literal_option
from dermbench.models.parts import split_head_options
from dermbench.models.vae import KL_SCHEDULES, ConvNeXtVAE, build_vae, elbo_terms, kl_weight
from dermbench.plugins.contract import OptimContext, StageContext, StageResult
from dermbench.plugins.options import options_to_dict
from dermbench.run.record import write_json_atomic
from dermbench.stages import encoder_store as store
from dermbench.stages.augment import POLICIES, augment
from dermbench.stages.checkpoints import LAST, atomic_save, load_state, run_dir_of
from dermbench.stages.device import input_stats, normalise, to_float01, to_model_layout
from dermbench.stages.options import VAEPretrainOptions
from dermbench.stages.precision import autocast
from dermbench.stages.pretrain_plots import CURVES, GRID, loss_curves, reconstruction_grid

KIND = "vae"
VERSION = "convnext-vae-v1"  # bump when the architecture or the objective changes
NOT_IN_KEY = ("encoder", "store", "grid")  # options that do not change the encoder


@dataclass
class PretrainData:
    images: torch.Tensor  # uint8 NHWC on the host
    ids: list[str]
    sources: dict[str, int]  # split or dataset -> images used


def check_options(o: VAEPretrainOptions) -> None:
    if o.kl_schedule not in KL_SCHEDULES:
        raise ConfigError(
            f"stage option kl_schedule must be one of {', '.join(KL_SCHEDULES)}, got {o.kl_schedule!r}"
        )
    if o.augment not in POLICIES:
        raise ConfigError(f"stage option augment must be one of {', '.join(POLICIES)}, got {o.augment!r}")
    if not (o.lr > 0 and 0 < o.warmup_fraction <= 1 and 0 < o.cycle_ratio <= 1 and o.cycles >= 1):
        raise ConfigError(
            "stage options: need lr > 0, 0 < warmup_fraction <= 1, 0 < cycle_ratio <= 1 and cycles >= 1"
        )


def pretraining_images(options: VAEPretrainOptions, ctx: StageContext) -> PretrainData:
    """The training split's images and/or the run's unlabelled ones; never validation or test."""
    parts: list[SplitData] = []
    if options.use_train:
        parts.append(ctx.train)
    if ctx.unlabelled is not None and len(ctx.unlabelled):
        parts.append(ctx.unlabelled)
    if not parts or sum(len(p) for p in parts) == 0:
        raise ConfigError(
            "pretraining has no images: use_train is off and no --pretrain-data was given"
            if not options.use_train
            else "pretraining has no images: the training split is empty"
        )
    pool = parts[0] if len(parts) == 1 else concat_splits("pretrain", *parts)
    ids = [str(i) for i in pool.frame["image_id"]]
    return PretrainData(pool.images, ids, {p.name: len(p) for p in parts})


def _timm_kwargs(cfg: Any) -> dict[str, Any]:
    rest, _ = split_head_options(cfg.component_options("model"))
    return {k: literal_option(v) for k, v in rest.items()}


def optimizer_name(options: VAEPretrainOptions, ctx: StageContext) -> str:
    if options.optimizer:
        return options.optimizer
    return ctx.recipe.optimizer.name if ctx.recipe.optimizer else ctx.registries.default_of("optimizers")


def key_inputs(options: VAEPretrainOptions, ctx: StageContext, data: PretrainData, epochs: int) -> dict:
    opts = {k: v for k, v in options_to_dict(options).items() if k not in NOT_IN_KEY}
    opts["batch_size"] = options.batch_size or ctx.cfg.batch_size
    opts["optimizer"] = optimizer_name(options, ctx)
    return {
        "kind": KIND,
        "version": VERSION,
        "model": ctx.cfg.model,
        "model_options": _timm_kwargs(ctx.cfg),
        "image_size": ctx.cfg.image_size,
        "images": store.images_fingerprint(data.images, data.ids),
        "n_images": len(data.ids),
        "epochs": epochs,
        "options": opts,
    }


# --- training -----------------------------------------------------------------------------------


@dataclass
class VAETraining:
    vae: ConvNeXtVAE
    optimizer: torch.optim.Optimizer
    batch_size: int
    steps_per_epoch: int
    epochs: int
    history: list[dict]


def build_training(options: VAEPretrainOptions, ctx: StageContext, n: int, epochs: int) -> VAETraining:
    cfg = ctx.cfg
    vae = build_vae(
        cfg.model, cfg.image_size, options.latent_dim, options.decoder_blocks, **_timm_kwargs(cfg)
    )
    vae = vae.to(ctx.device)
    bs = options.batch_size or cfg.batch_size
    steps = math.ceil(n / bs)
    octx = OptimContext(None, None, epochs, steps)
    values = {"lr": options.lr, "weight_decay": options.weight_decay}
    optimizer = ctx.registries.optimizers.build(
        optimizer_name(options, ctx), values, list(vae.parameters()), octx
    )
    return VAETraining(vae, optimizer, bs, steps, epochs, [])


def vae_epoch(
    options: VAEPretrainOptions, ctx: StageContext, t: VAETraining, data: PretrainData, epoch: int
) -> dict:
    """One pass over the pretraining images; the epoch's mean losses and its last beta."""
    seed = (options.pretrain_seed * 1_000_003 + epoch) % (2**31)
    gen = torch.Generator().manual_seed(seed)
    order = np.random.default_rng(seed).permutation(len(data.ids))
    t.vae.train()
    if hasattr(t.optimizer, "train"):
        t.optimizer.train()
    stats, sums, seen, beta = input_stats(t.vae.encoder), np.zeros(3), 0, 0.0
    for b, start in enumerate(_progress(range(0, len(order), t.batch_size), ctx.progress, epoch, t.epochs)):
        idx = torch.as_tensor(order[start : start + t.batch_size])
        step = (epoch - 1) * t.steps_per_epoch + b
        beta = kl_weight(step, t.epochs * t.steps_per_epoch, options.kl_schedule, options.warmup_fraction,
                         options.cycles, options.cycle_ratio, options.beta_max)  # fmt: skip
        x01 = augment(to_float01(data.images[idx], ctx.device), options.augment, gen)
        noise = torch.randn(len(idx), options.latent_dim, generator=gen).to(ctx.device)
        with autocast(ctx.device):
            x_hat, mu, logvar = t.vae(to_model_layout(normalise(x01, stats)), noise)
        recon, kl = elbo_terms(x_hat, x01, mu.float(), logvar.float())
        loss = recon + beta * kl
        t.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        t.optimizer.step()
        sums += np.array([loss.item(), recon.item(), kl.item()]) * len(idx)
        seen += len(idx)
    if hasattr(t.optimizer, "eval"):
        t.optimizer.eval()
    loss, recon, kl = (sums / max(seen, 1)).tolist()
    if not math.isfinite(loss):
        raise TrainingError(f"VAE pretraining loss is {loss} in epoch {epoch}: lower the stage option lr")
    return {"epoch": epoch, "loss": loss, "reconstruction": recon, "kl": kl, "beta": beta}


def _progress(it: Any, enabled: bool, epoch: int, epochs: int) -> Any:
    if not enabled:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, desc=f"VAE pretraining epoch {epoch}/{epochs}", leave=False, unit="batch", disable=None)


def train_vae(
    options: VAEPretrainOptions, ctx: StageContext, data: PretrainData, inputs: dict, folder: Path
) -> None:
    """Train (or resume) the VAE in ``folder`` and store its encoder, history, plots and meta."""
    t = build_training(options, ctx, len(data.ids), inputs["epochs"])
    start = 1
    if (folder / LAST).exists():
        state = load_state(folder / LAST)
        t.vae.load_state_dict(state["model"])
        t.optimizer.load_state_dict(state["optimizer"])
        t.history, start = list(state["history"]), int(state["epoch"]) + 1
        print(f"resuming VAE pretraining in {folder} after epoch {state['epoch']}")
    for epoch in range(start, t.epochs + 1):
        t0 = time.time()
        row = {**vae_epoch(options, ctx, t, data, epoch), "seconds": round(time.time() - t0, 2)}
        t.history.append(row)
        atomic_save({"model": t.vae.state_dict(), "optimizer": t.optimizer.state_dict(), "epoch": epoch,
                     "history": t.history}, folder / LAST)  # fmt: skip
        if ctx.progress:
            print(f"  pretrain epoch {epoch}/{t.epochs}: ELBO {row['loss']:.1f} = reconstruction "
                  f"{row['reconstruction']:.1f} + {row['beta']:.3f} x KL {row['kl']:.2f} ({row['seconds']:.1f}s)")  # fmt: skip
    finish_store(options, ctx, t, data, inputs, folder)


def finish_store(
    options: VAEPretrainOptions,
    ctx: StageContext,
    t: VAETraining,
    data: PretrainData,
    inputs: dict,
    folder: Path,
) -> None:
    t.vae.eval()
    write_json_atomic(folder / store.HISTORY, t.history)
    loss_curves(t.history, folder / CURVES, f"VAE pretraining of {ctx.cfg.model}, {len(data.ids)} images")
    draw_grid(t.vae, data.images[: max(options.grid, 1)], ctx.device, folder / GRID)
    atomic_save(t.vae.encoder.state_dict(), folder / store.ENCODER)
    atomic_save(t.vae.state_dict(), folder / store.FULL_MODEL)
    meta = {"inputs": inputs, "image_ids": data.ids, "sources": data.sources, "final": t.history[-1]}
    write_json_atomic(folder / store.META, meta)  # written last: its presence means complete
    (folder / LAST).unlink(missing_ok=True)


@torch.no_grad()
def draw_grid(vae: ConvNeXtVAE, images: torch.Tensor, device: torch.device, path: Path) -> None:
    x01 = to_float01(images, device)
    x_hat, _, _ = vae(normalise(x01, input_stats(vae.encoder)))  # the mean latent, no noise
    out = (x_hat.float().clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    reconstruction_grid(images.numpy(), out, path)


# --- the runner ---------------------------------------------------------------------------------


def run_vae_pretrain(options: VAEPretrainOptions, ctx: StageContext) -> StageResult:
    """Pretrain (or load) the VAE encoder and copy it into ``ctx.model``'s backbone."""
    check_options(options)
    root = Path(options.store) if options.store else store.default_store(ctx.cfg.out)
    epochs = ctx.recipe.epochs or ctx.cfg.epochs
    trained_here = False
    if options.encoder:
        folder = store.require_stored(root, KIND, options.encoder)
    else:
        data = pretraining_images(options, ctx)
        inputs = key_inputs(options, ctx, data, epochs)
        folder = store.encoder_dir(root, KIND, store.encoder_key(inputs))
        with store.locked(folder):
            if not store.is_complete(folder):
                train_vae(options, ctx, data, inputs, folder)
                trained_here = True
    store.load_encoder_into(ctx.model, folder)
    meta = store.read_meta(folder)
    _copy_plots(folder, ctx.checkpoint_dir)
    resolved = {
        "stage": ctx.recipe.name,
        "runner": "vae_pretrain",
        "encoder_key": folder.name,
        "store": str(folder),
        "trained_by_this_run": trained_here,
        "epochs": meta["inputs"]["epochs"],
        "n_images": meta["inputs"]["n_images"],
        "sources": meta.get("sources"),
        "final": meta["final"],
        "options": meta["inputs"]["options"],
    }
    return StageResult(best_epoch=None, history=(), resolved=resolved)


def _copy_plots(folder: Path, checkpoint_dir: Path) -> None:
    """The curves and the grid, beside the run's record (``<run>/pretraining/``)."""
    dest = run_dir_of(checkpoint_dir) / "pretraining"
    dest.mkdir(parents=True, exist_ok=True)
    for name in (CURVES, GRID, store.HISTORY):
        if (folder / name).exists():
            shutil.copyfile(folder / name, dest / name)
