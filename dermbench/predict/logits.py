"""Predictions of a trained model on a split: logits, and probabilities through a predictor.

A predictor component (e.g. test-time augmentation) takes normalised float batches on the device;
without one the probabilities are the softmax of the logits.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from dermbench.plugins.contract import PredictorContext
from dermbench.stages.device import input_stats, to_input
from dermbench.stages.host_heap import bound_host_heap
from dermbench.stages.precision import autocast


@torch.no_grad()
def predict_logits(
    model: nn.Module, images: torch.Tensor, batch_size: int, device: torch.device
) -> torch.Tensor:
    """Float logits on the host, in eval mode, one batch at a time; kept on the device until the
    last batch, so the loop never waits for a copy back."""
    bound_host_heap()
    model.eval()
    out, stats = [], input_stats(model)
    for start in range(0, len(images), batch_size):
        x = to_input(images[start : start + batch_size], device, stats)
        with autocast(device):
            out.append(model(x).float())
    return torch.cat(out).cpu() if out else torch.empty(0)


def predict_probs(
    model: nn.Module,
    images: torch.Tensor,
    batch_size: int,
    device: torch.device,
    predictor: Any | None = None,
) -> np.ndarray:
    """Class probabilities; ``predictor`` (a built predictor component) replaces the plain softmax."""
    if predictor is None:
        return torch.softmax(predict_logits(model, images, batch_size * 2, device), dim=1).numpy()
    model.eval()
    out, stats = [], input_stats(model)
    for start in range(0, len(images), batch_size):
        x = to_input(images[start : start + batch_size], device, stats)
        out.append(np.asarray(predictor(model, x, batch_size)))
    return np.concatenate(out) if out else np.zeros((0, 0))


def build_predictor(
    registries: Any, name: str, options: dict, classes: list[str], device: torch.device
) -> Any:
    """The named predictor component, built for this run's classes and device."""
    return registries.predictors.build(name, options, PredictorContext(classes=classes, device=str(device)))
