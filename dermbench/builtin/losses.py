"""Built-in loss: plain cross-entropy (with optional label smoothing and class weights)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dermbench.components import Component
from dermbench.hookspecs import hookimpl
from dermbench.plugins.contract import LossContext


@dataclass(frozen=True)
class CEOptions:
    label_smoothing: float = 0.0
    class_weights: str = "none"  # none | inverse (w_c = N / (K n_c))


class CrossEntropy(nn.Module):
    def __init__(self, weight: torch.Tensor | None, label_smoothing: float) -> None:
        super().__init__()
        self.register_buffer("weight", weight)
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, targets, weight=self.weight, label_smoothing=self.label_smoothing)


def inverse_frequency_weights(class_counts: list[int]) -> torch.Tensor:
    counts = torch.tensor(class_counts, dtype=torch.float32).clamp(min=1)
    return counts.sum() / (len(class_counts) * counts)


def make_ce(options: CEOptions, ctx: LossContext) -> nn.Module:
    if options.class_weights not in ("none", "inverse"):
        raise ValueError(f"ce: class_weights must be none or inverse, got {options.class_weights!r}")
    weight = inverse_frequency_weights(ctx.class_counts) if options.class_weights == "inverse" else None
    return CrossEntropy(weight, options.label_smoothing)


@hookimpl
def dermbench_register_losses(register):
    register(
        Component(
            "ce",
            make_ce,
            "Cross-entropy, optionally label-smoothed and class-weighted",
            options=CEOptions,
        )
    )
