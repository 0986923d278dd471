"""Test-time augmentation as a predictor: class probabilities averaged over fixed views of each image.

Dermoscopic and clinical images have no canonical orientation, so a lesion flipped or turned is
the same lesion; averaging the softmax over such views removes orientation noise from the score.
Rumale et al., "Recall-Oriented Deep Learning Framework for Skin Cancer Detection with
Explainability and Fairness Analysis", average their ensemble's predictions over augmented views
of each test image; the views here are the deterministic ones, so a run is reproducible:

- ``none``: the image as it is;
- ``flips``: identity, horizontal flip, vertical flip (3 views);
- ``flips_rot90``: those plus rotations by 90, 180 and 270 degrees (6 views).

Every view is weighted equally. A 90-degree rotation swaps height and width, which any CNN with
global pooling accepts.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from dermbench.errors import ConfigError, DataError
from dermbench.stages.device import to_model_layout
from dermbench.stages.precision import autocast

View = Callable[[torch.Tensor], torch.Tensor]

VIEWS: dict[str, dict[str, View]] = {
    "none": {"identity": lambda x: x},
    "flips": {
        "identity": lambda x: x,
        "hflip": lambda x: x.flip(-1),
        "vflip": lambda x: x.flip(-2),
    },
    "flips_rot90": {
        "identity": lambda x: x,
        "hflip": lambda x: x.flip(-1),
        "vflip": lambda x: x.flip(-2),
        "rot90": lambda x: torch.rot90(x, 1, dims=(-2, -1)),
        "rot180": lambda x: torch.rot90(x, 2, dims=(-2, -1)),
        "rot270": lambda x: torch.rot90(x, 3, dims=(-2, -1)),
    },
}


def tta_views(mode: str) -> dict[str, View]:
    """The named views a mode averages over; a ConfigError names the modes on offer."""
    if mode not in VIEWS:
        raise ConfigError(f"tta mode must be one of {', '.join(VIEWS)}, got {mode!r}")
    return VIEWS[mode]


def _device(model: torch.nn.Module, fallback: torch.device) -> torch.device:
    for p in model.parameters():
        return p.device
    return fallback


def tta_predict(
    model: torch.nn.Module, images: torch.Tensor, mode: str = "flips", batch_size: int = 64
) -> np.ndarray:
    """Softmax probabilities (N, classes), float32 on the CPU, averaged over the mode's views.

    The model is evaluated in eval mode (dropout off, batch-norm running statistics) and put back
    in the mode it was in; batches go to the model's device, so ``images`` may stay on the CPU.
    """
    views = tta_views(mode)
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or not images.is_floating_point():
        shape = tuple(images.shape) if hasattr(images, "shape") else type(images).__name__
        raise DataError(f"tta_predict needs a float tensor of images (N, C, H, W), got {shape}")
    if batch_size < 1:
        raise ConfigError(f"tta batch_size must be >= 1, got {batch_size}")
    device = _device(model, images.device)
    was_training = model.training
    model.eval()
    out: list[np.ndarray] = []
    try:
        with torch.inference_mode():
            for start in range(0, len(images), batch_size):
                x = images[start : start + batch_size].to(device)
                total = None
                for view in views.values():  # in the run's precision and layout, as plain prediction
                    with autocast(device):
                        logits = model(to_model_layout(view(x)))
                    p = torch.softmax(logits.float(), dim=1)
                    total = p if total is None else total + p
                out.append((total / len(views)).cpu().numpy())
    finally:
        model.train(was_training)
    if not out:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(out).astype(np.float32, copy=False)


def make_tta_predictor(mode: str) -> Callable[[torch.nn.Module, torch.Tensor, int], np.ndarray] | None:
    """A predictor averaging over ``mode``'s views, or ``None`` for ``none`` (plain softmax)."""
    tta_views(mode)  # refuse an unknown mode now, not at prediction time
    if mode == "none":
        return None

    def predict(model: torch.nn.Module, images: torch.Tensor, batch_size: int) -> np.ndarray:
        return tta_predict(model, images, mode=mode, batch_size=batch_size)

    return predict
