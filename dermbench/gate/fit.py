"""Training the gate once and storing it, like any pretrained component.

The autoencoder trains on the run's training split only (never a validation or test image),
MSE on [0, 1] pixels, Adam, flips as augmentation, from its own seed. It is stored under
``<store>/gate/<key>/`` (``model.pt``, ``meta.json``, ``history.json``), the key hashing the
training images' fingerprint, the image size and resize policy and every option that changes the
model, so every method, seed and run that asks for the same gate shares one. The threshold is not
part of the key: it is chosen per run.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dermbench.data.split_data import SplitData
from dermbench.errors import ConfigError
from dermbench.gate.autoencoder import GateOptions, build_gate_model, psnr
from dermbench.models.weights_io import load_tensors
from dermbench.run.record import write_json_atomic
from dermbench.stages.augment import augment
from dermbench.stages.device import to_float01
from dermbench.stages.encoder_store import encoder_dir, encoder_key, images_fingerprint, locked

KIND = "gate"
MODEL = "model.pt"
META = "meta.json"
NOT_IN_KEY = (
    "threshold_db",
    "accept_rate",
    "sharpness_reject_rate",
    "key",
)  # choices of the run, not of the model


def gate_key(train: SplitData, image_size: int, resize: str, options: GateOptions) -> tuple[str, dict]:
    opts = {k: v for k, v in dataclasses.asdict(options).items() if k not in NOT_IN_KEY}
    ids = train.frame["image_id"].astype(str).tolist()
    inputs = {"kind": "conv_autoencoder", "images": images_fingerprint(train.images, ids),
              "n_images": len(train), "image_size": image_size, "resize": resize, "options": opts}  # fmt: skip
    return encoder_key(inputs), inputs


def _epoch(
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    images: torch.Tensor,
    bs: int,
    seed: int,
    device: torch.device,
) -> float:
    model.train()
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(images), generator=gen)
    total = 0.0
    for start in range(0, len(order), bs):
        idx = order[start : start + bs]
        if len(idx) < 2:
            continue
        x = augment(to_float01(images[idx], device), "flips", gen)
        loss = torch.nn.functional.mse_loss(model(x), x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += float(loss.detach()) * len(idx)
    return total / max(len(order), 1)


@torch.no_grad()
def psnr_scores(
    model: torch.nn.Module, images: torch.Tensor, device: torch.device, batch: int = 128
) -> np.ndarray:
    """Each image's reconstruction PSNR in dB (higher: more like the training images)."""
    model.eval()
    out = [
        psnr(x := to_float01(images[i : i + batch], device), model(x)).cpu()
        for i in range(0, len(images), batch)
    ]
    return torch.cat(out).numpy() if out else np.zeros(0)


def train_gate(
    train: SplitData, val: SplitData, image_size: int, options: GateOptions, device: torch.device, log: Any
) -> tuple[torch.nn.Module, list[dict]]:
    torch.manual_seed(options.seed)
    model = build_gate_model(image_size, options).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=options.lr)
    history = []
    for epoch in range(1, options.epochs + 1):
        loss = _epoch(model, opt, train.images, options.batch_size, options.seed * 1000 + epoch, device)
        if not math.isfinite(loss):
            raise ConfigError(f"gate training loss is {loss} in epoch {epoch}: lower --opt gate.lr")
        val_psnr = psnr_scores(model, val.images, device)
        history.append({"epoch": epoch, "train_mse": loss, "val_psnr_mean": float(np.mean(val_psnr))})
        log(
            f"gate epoch {epoch}/{options.epochs}: train MSE {loss:.4f}, validation PSNR {history[-1]['val_psnr_mean']:.2f} dB"
        )
    return model, history


def fit_or_load_gate(
    train: SplitData, val: SplitData, image_size: int, resize: str, options: GateOptions,
    store: Path, device: torch.device, log: Any, task: str,
) -> tuple[torch.nn.Module, dict]:  # fmt: skip
    """The stored gate for these training images and options, trained first when absent."""
    key, inputs = gate_key(train, image_size, resize, options)
    if options.key:
        return _load_named(options.key, store, image_size, device, options, task)
    folder = encoder_dir(store, KIND, key)
    with locked(folder):
        if (folder / MODEL).is_file() and (folder / META).is_file():
            model = _load(folder, image_size, options, device)
            return model, {**json.loads((folder / META).read_text()), "trained_by_this_run": False}
        model, history = train_gate(train, val, image_size, options, device, log)
        torch.save(model.state_dict(), folder / MODEL)
        meta = {"key": key, **inputs, "task": task, "history": history, "store": str(folder)}
        write_json_atomic(folder / META, meta)
    return model, {**meta, "trained_by_this_run": True}


def _load(folder: Path, image_size: int, options: GateOptions, device: torch.device) -> torch.nn.Module:
    model = build_gate_model(image_size, options)
    try:
        model.load_state_dict(load_tensors(folder / MODEL, "stored gate"))
    except Exception as exc:
        raise ConfigError(
            f"stored gate {folder}: does not fit this run's gate ({type(exc).__name__}: {exc})"
        ) from None
    return model.to(device)


def _load_named(
    key: str, store: Path, image_size: int, device: torch.device, options: GateOptions, task: str
) -> tuple[torch.nn.Module, dict]:
    """A gate named by ``--opt gate.key``: it must exist, and have been made for this task and image size."""
    folder = encoder_dir(store, KIND, key)
    if not (folder / META).is_file():
        raise ConfigError(f"gate option key={key!r}: no stored gate under {folder.parent}")
    meta = json.loads((folder / META).read_text())
    if meta.get("image_size") != image_size:
        raise ConfigError(
            f"gate option key={key!r}: the stored gate was trained on {meta.get('image_size')} px images, "
            f"this run's are {image_size} px"
        )
    if meta.get("task") != task:
        raise ConfigError(
            f"gate option key={key!r}: the stored gate was trained for task {meta.get('task')!r}, not {task!r}"
        )
    stored = GateOptions(**{**dataclasses.asdict(options), **meta.get("options", {})})
    return _load(folder, image_size, stored, device), {**meta, "trained_by_this_run": False}
