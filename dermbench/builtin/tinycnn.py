"""The tiny CNN (torch), apart from its registration so that listing models imports no torch."""

from __future__ import annotations

import torch
from torch import nn


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
