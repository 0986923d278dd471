"""Training and predicting lesion masks: the U-Net and Mask R-CNN loops, seeded, on uint8 arrays.

Images are ``(N, S, S, 3)`` uint8 and masks ``(N, S, S)`` bool, as :mod:`.masks` and
:mod:`.composites` return them; inputs are scaled to [0, 1] (Mask R-CNN normalises them itself
with ImageNet statistics, the U-Net learns from them as they are).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from dermbench.segmentation.maskrcnn import instances, train_roi_heads_only, union_mask
from dermbench.segmentation.unet import UNet, dice_bce_loss


@dataclass(frozen=True)
class TrainSettings:
    epochs: int = 10
    batch_size: int = 16
    lr: float = 1e-3  # U-Net: Adam; Mask R-CNN: SGD with momentum 0.9, torchvision's detection recipe
    seed: int = 0
    device: str = "cpu"


def _tensor(images: np.ndarray, device: str) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).float() / 255.0


def _batches(n: int, batch_size: int, rng: np.random.Generator):
    order = rng.permutation(n)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def train_unet(
    model: UNet, images: np.ndarray, masks: np.ndarray, settings: TrainSettings, progress: bool = True
) -> list[dict[str, Any]]:
    """``model`` trained with Adam on BCE + soft Dice; one history row per epoch. Its initial
    weights are drawn again from the seed first, so a run is reproducible whoever built it."""
    torch.manual_seed(settings.seed)
    for module in model.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    rng = np.random.default_rng(settings.seed)
    model.to(settings.device)
    opt = torch.optim.Adam(model.parameters(), lr=settings.lr)
    history = []
    for epoch in tqdm(range(1, settings.epochs + 1), desc="U-Net", disable=not progress):
        t0, losses = time.time(), []
        model.train()
        for idx in _batches(len(images), settings.batch_size, rng):
            x = _tensor(images[idx], settings.device)
            y = torch.from_numpy(masks[idx]).to(settings.device).float()
            loss = dice_bce_loss(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        history.append(
            {"epoch": epoch, "train_loss": float(np.mean(losses)), "seconds": round(time.time() - t0, 2)}
        )
    return history


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
    """Fine-tune ``model``'s ROI heads only (paper 002), SGD; one history row per epoch."""
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    params = train_roi_heads_only(model)
    opt = torch.optim.SGD(params, lr=settings.lr, momentum=0.9, weight_decay=5e-4)
    model.to(settings.device)
    history = []
    for epoch in tqdm(range(1, settings.epochs + 1), desc="Mask R-CNN", disable=not progress):
        t0, losses = time.time(), []
        model.train()
        for idx in _batches(len(images), settings.batch_size, rng):
            x = list(_tensor(images[idx], settings.device))
            targets = [{k: v.to(settings.device) for k, v in instances(masks[i]).items()} for i in idx]
            loss = sum(model(x, targets).values())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.item()))
        history.append(
            {"epoch": epoch, "train_loss": float(np.mean(losses)), "seconds": round(time.time() - t0, 2)}
        )
    return history


@torch.no_grad()
def predict_maskrcnn(
    model: torch.nn.Module, images: np.ndarray, device: str = "cpu", score_threshold: float = 0.5
) -> np.ndarray:
    model.eval()
    shape = images.shape[1:3]
    if not len(images):
        return np.zeros((0, *shape), bool)
    return np.stack([union_mask(model([x])[0], shape, score_threshold) for x in _tensor(images, device)])
