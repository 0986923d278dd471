"""Class-imbalance losses: weighted cross-entropy, BWCCE, focal, LDAM and LMF.

These are the five losses compared by Sadi et al., "LMFLOSS: A hybrid loss for imbalanced medical
image classification" (arXiv:2212.12741), built from:

- Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017 (focal loss);
- Cao et al., "Learning Imbalanced Datasets with Label-Distribution-Aware Margin Loss",
  NeurIPS 2019 (LDAM);
- Roy et al., "SVD-CLAHE boosting and balanced loss function for Covid-19 detection from an
  imbalanced Chest X-Ray dataset", Comput. Biol. Med. 150 (2022) (BWCCE).

Every constant follows the paper's official code where the paper and the code disagree (see the
plugin README). Each class-dependent tensor is indexed in the order of ``class_counts``, which
must be the order of the logits' columns: the official code counted classes in directory-listing
order while its data loader sorted them, so its margins could land on the wrong classes. Here the
counts come from the task's class order, the same order the model's outputs follow.

The modules depend on torch only (plus :class:`dermbench.errors.ConfigError` for bad counts), so
they can be used outside dermbench's registries.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dermbench.errors import ConfigError

REDUCTIONS = ("weighted_mean", "mean")


def check_counts(
    class_counts: Sequence[int], classes: Sequence[str] | None = None, where: str = "loss"
) -> None:
    """Refuse counts a count-based weight cannot be computed from, naming the class at fault.

    A class with no training image has no defined margin (n^-1/4) or inverse frequency; silently
    clamping it would train with a weight the paper never defines, so it is an error.
    """
    names = list(classes) if classes is not None else [f"#{i}" for i in range(len(class_counts))]
    if len(names) != len(class_counts):
        raise ConfigError(f"{where}: {len(class_counts)} class counts for {len(names)} classes {names}")
    if len(class_counts) < 2:
        raise ConfigError(f"{where}: needs at least two classes, got {len(class_counts)}")
    for name, n in zip(names, class_counts, strict=True):
        if int(n) != n or n < 0:
            raise ConfigError(f"{where}: class {name!r} has an invalid training count {n!r}")
        if n == 0:
            raise ConfigError(
                f"{where}: class {name!r} has no training images (counts {list(class_counts)}), so its "
                "class weight / margin is undefined; use more data, another split, or a loss without "
                "count-based weights (ce)"
            )


def _counts(class_counts: Sequence[int]) -> torch.Tensor:
    check_counts(class_counts)
    return torch.tensor([float(n) for n in class_counts], dtype=torch.float64)


def inverse_frequency_weights(class_counts: Sequence[int]) -> torch.Tensor:
    """w_c = N / (K n_c): a balanced split gets all ones, and sum_c n_c w_c = N.

    With that normalisation the training images' mean weight is 1, so the unweighted-mean
    reduction stays on plain cross-entropy's scale; the weighted mean is scale-free anyway.
    """
    n = _counts(class_counts)
    return (n.sum() / (len(n) * n)).float()


def balanced_weights(class_counts: Sequence[int]) -> torch.Tensor:
    """BWCCE weights w_c = (1 - n_c / N) / (K - 1) (Sadi et al. Eq. 3): they sum to 1 and stay bounded."""
    n = _counts(class_counts)
    return ((1.0 - n / n.sum()) / (len(n) - 1)).float()


def ldam_margins(class_counts: Sequence[int], max_m: float = 0.5) -> torch.Tensor:
    """m_c = max_m * n_c^(-1/4) / max_j n_j^(-1/4): the rarest class gets ``max_m``."""
    if not max_m > 0:
        raise ConfigError(f"ldam margins: max_m must be > 0, got {max_m}")
    inv = _counts(class_counts) ** -0.25
    return (max_m * inv / inv.max()).float()


class WeightedCrossEntropy(nn.Module):
    """Cross-entropy with per-class weights (WCCE, BWCCE).

    ``reduction="weighted_mean"`` divides by the batch's summed weights, as
    ``F.cross_entropy(weight=...)`` and the official code do; ``"mean"`` divides by the batch size,
    as Eq. 2 of the paper writes it.
    """

    def __init__(self, weight: torch.Tensor, reduction: str = "weighted_mean") -> None:
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ConfigError(f"reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
        self.register_buffer("weight", weight)
        self.reduction = reduction

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.reduction == "weighted_mean":
            return F.cross_entropy(logits, targets, weight=self.weight.to(logits.dtype))
        return (F.cross_entropy(logits, targets, reduction="none") * self.weight[targets]).mean()


class FocalLoss(nn.Module):
    """Alpha-balanced multi-class focal loss: mean_i of -alpha_{y_i} (1 - p_t)^gamma log p_t.

    p_t comes from the raw logits' softmax and the batch mean is plain (not divided by the summed
    alphas), as in the focal-loss implementation the official code loads.
    """

    def __init__(self, alpha: torch.Tensor | None = None, gamma: float = 1.5) -> None:
        super().__init__()
        if gamma < 0:
            raise ConfigError(f"focal: gamma must be >= 0, got {gamma}")
        self.register_buffer("alpha", alpha)
        self.gamma = gamma

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        log_pt = F.log_softmax(logits, dim=1).gather(1, targets[:, None]).squeeze(1)
        focus = (1.0 - log_pt.exp()).clamp(min=0.0) ** self.gamma
        loss = -focus * log_pt
        if self.alpha is not None:
            loss = loss * self.alpha[targets]
        return loss.mean()


class LDAMLoss(nn.Module):
    """Label-distribution-aware margin loss: CE(s * (z - m_y e_y), y), optionally margin-weighted.

    The margin is subtracted from the target logit only, then all logits are scaled by ``s``.
    With ``weighted`` the cross-entropy is weighted per class by the margins themselves (a
    weighted mean over the batch), as the official LMF code does; without it this is Cao et al.'s
    plain LDAM.
    """

    def __init__(self, margins: torch.Tensor, s: float = 30.0, weighted: bool = True) -> None:
        super().__init__()
        if not s > 0:
            raise ConfigError(f"ldam: s must be > 0, got {s}")
        self.register_buffer("margins", margins)
        self.s = s
        self.weighted = weighted

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        margins = self.margins.to(logits.dtype)
        shift = torch.zeros_like(logits).scatter_(1, targets[:, None], margins[targets][:, None])
        weight = margins if self.weighted else None
        return F.cross_entropy(self.s * (logits - shift), targets, weight=weight)


class LMFLoss(nn.Module):
    """Large-margin-aware focal loss: alpha * LDAM + beta * focal, both on the same logits."""

    def __init__(self, ldam: LDAMLoss, focal: FocalLoss, alpha: float = 1.5, beta: float = 1.0) -> None:
        super().__init__()
        self.ldam = ldam
        self.focal = focal
        self.alpha = alpha
        self.beta = beta

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.alpha * self.ldam(logits, targets) + self.beta * self.focal(logits, targets)
