"""Cross-entropy with label smoothing and class weights (torch), apart from its registration."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


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
