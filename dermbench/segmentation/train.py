"""Training and predicting lesion masks: the U-Net and Mask R-CNN loops, seeded, on uint8 arrays.

Images are ``(N, S, S, 3)`` uint8 and masks ``(N, S, S)`` bool, as :mod:`.masks` and
:mod:`.composites` return them; inputs are scaled to [0, 1] (Mask R-CNN normalises them itself
with ImageNet statistics, the U-Net learns from them as they are).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from dermbench.models.weights_io import load_tensors
from dermbench.segmentation.maskrcnn import instances, train_roi_heads_only, union_mask
from dermbench.segmentation.unet import UNet, dice_bce_loss
from dermbench.stages.host_heap import bound_host_heap


@dataclass(frozen=True)
class TrainSettings:
    epochs: int = 10
    batch_size: int = 16
    lr: float = 1e-3  # U-Net: Adam; Mask R-CNN: SGD with momentum 0.9, torchvision's detection recipe
    seed: int = 0
    device: str = "cpu"
    checkpoint: str = ""  # a file saved after every epoch and resumed from when present


def _tensor(images: np.ndarray, device: str) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).float() / 255.0


def _batches(n: int, batch_size: int, seed: int, epoch: int):
    """Epoch ``epoch``'s batches: a permutation drawn from (seed, epoch), the same on resume."""
    order = np.random.default_rng([seed, epoch]).permutation(n)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def _train(model, opt, loss_of, n: int, settings: TrainSettings, desc: str, progress: bool) -> list[dict]:
    """The epochs of one segmenter: ``loss_of(model, batch_positions)`` per batch, one history row
    per epoch; with ``settings.checkpoint``, saved after every epoch and resumed from there."""
    bound_host_heap()
    ckpt = Path(settings.checkpoint) if settings.checkpoint else None
    history, start = [], 1
    if ckpt is not None and ckpt.is_file():
        state = load_tensors(ckpt, "segmentation checkpoint", map_location=settings.device)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        history, start = state["history"], state["epoch"] + 1
    for epoch in tqdm(range(start, settings.epochs + 1), desc=desc, disable=not progress):
        t0, losses = time.time(), []
        model.train()
        for idx in _batches(n, settings.batch_size, settings.seed, epoch):
            loss = loss_of(model, idx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.item()))
        history.append(
            {"epoch": epoch, "train_loss": float(np.mean(losses)), "seconds": round(time.time() - t0, 2)}
        )
        if ckpt is not None:
            state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch,
                     "history": history, "torch_rng": torch.get_rng_state()}  # fmt: skip
            tmp = ckpt.with_suffix(".tmp")
            torch.save(state, tmp)
            tmp.replace(ckpt)
    return history


def train_unet(
    model: UNet, images: np.ndarray, masks: np.ndarray, settings: TrainSettings, progress: bool = True
) -> list[dict[str, Any]]:
    """``model`` trained with Adam on BCE + soft Dice. Its initial weights are drawn again from the
    seed first, so a run is reproducible whoever built it."""
    torch.manual_seed(settings.seed)
    for module in model.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    model.to(settings.device)
    opt = torch.optim.Adam(model.parameters(), lr=settings.lr)

    def loss_of(net, idx):
        y = torch.from_numpy(masks[idx]).to(settings.device).float()
        return dice_bce_loss(net(_tensor(images[idx], settings.device)), y)

    return _train(model, opt, loss_of, len(images), settings, "U-Net", progress)


@torch.no_grad()
def predict_unet(model: UNet, images: np.ndarray, batch_size: int = 32, device: str = "cpu") -> np.ndarray:
    model.eval()
    out = [
        (torch.sigmoid(model(_tensor(images[i : i + batch_size], device))) >= 0.5).cpu().numpy()
        for i in range(0, len(images), batch_size)
    ]
    return np.concatenate(out) if out else np.zeros((0, *images.shape[1:3]), dtype=bool)


def train_maskrcnn(
    model: torch.nn.Module,
    images: np.ndarray,
    masks: np.ndarray,
    settings: TrainSettings,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Fine-tune ``model``'s ROI heads only (paper 002), SGD with momentum."""
    torch.manual_seed(settings.seed)
    params = train_roi_heads_only(model)
    opt = torch.optim.SGD(params, lr=settings.lr, momentum=0.9, weight_decay=5e-4)
    model.to(settings.device)

    def loss_of(net, idx):
        targets = [{k: v.to(settings.device) for k, v in instances(masks[i]).items()} for i in idx]
        return sum(net(list(_tensor(images[idx], settings.device)), targets).values())

    return _train(model, opt, loss_of, len(images), settings, "Mask R-CNN", progress)


@torch.no_grad()
def predict_maskrcnn(
    model: torch.nn.Module, images: np.ndarray, device: str = "cpu", score_threshold: float = 0.5
) -> np.ndarray:
    model.eval()
    shape = images.shape[1:3]
    if not len(images):
        return np.zeros((0, *shape), bool)
    return np.stack([union_mask(model([x])[0], shape, score_threshold) for x in _tensor(images, device)])
