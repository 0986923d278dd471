"""Built-in model: a tiny CNN for fast tests and smoke runs (any timm name works as well)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from dermbench.components import Component
from dermbench.errors import ConfigError
from dermbench.hookspecs import hookimpl
from dermbench.plugins.contract import ModelContext


@dataclass(frozen=True)
class TinyCNNOptions:
    width: int = 16
    dropout: float = 0.0


class TinyCNN(nn.Module):
    """Three conv blocks and a linear head: a model that trains in seconds on a CPU."""

    def __init__(self, num_classes: int, width: int = 16, dropout: float = 0.0, in_chans: int = 3) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * w, 4 * w, 3, padding=1), nn.BatchNorm2d(4 * w), nn.ReLU(),
        )  # fmt: skip
        self.num_features = 4 * w
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(4 * w, num_classes))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x).mean(dim=(2, 3)))


def make_tinycnn(options: TinyCNNOptions, ctx: ModelContext) -> nn.Module:
    if ctx.init not in ("random",):
        raise ConfigError(f"model tinycnn has no pretrained weights; use --init random (got {ctx.init!r})")
    return TinyCNN(ctx.num_classes, options.width, options.dropout, ctx.in_chans)


@hookimpl
def dermbench_register_models(register: Any) -> None:
    register(
        Component("tinycnn", make_tinycnn, "Three-block CNN for tests and smoke runs", options=TinyCNNOptions)
    )
