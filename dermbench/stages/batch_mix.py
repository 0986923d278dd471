"""Batch transforms that mix images and their labels: Mixup and CutMix.

- Mixup (Zhang et al., "mixup: Beyond Empirical Risk Minimization", ICLR 2018): one
  ``lam ~ Beta(alpha, alpha)`` per batch, ``x = lam * x + (1 - lam) * x[perm]``;
- CutMix (Yun et al., "CutMix: Regularization Strategy to Train Strong Classifiers with
  Localizable Features", ICCV 2019): a box of area ``1 - lam`` (centre uniform, clipped to the
  image) is pasted from ``x[perm]``, and ``lam`` is corrected to the area actually kept.

Both return a :class:`~dermbench.plugins.contract.MixedBatch` whose targets are ``(y, lam)`` and
``(y[perm], 1 - lam)``; the training loop interpolates the loss, as both papers' reference code
does, so any loss that takes class indices works unchanged. Randomness comes from the epoch's
generator alone, so a resumed run mixes the same pairs. Mixing is linear, so it commutes with
the per-channel normalisation that precedes it.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from dermbench.errors import ConfigError
from dermbench.plugins.contract import BatchContext, MixedBatch
from dermbench.stages.options import CutMixOptions, MixupOptions


def _rng(gen: torch.Generator) -> np.random.Generator:
    return np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))


def _permutation(n: int, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.randperm(n, generator=gen).to(device)


class PairMix:
    """What Mixup and CutMix share: a Beta(alpha, alpha) weight, a probability, a partner per image."""

    name = ""

    def __init__(self, alpha: float, p: float) -> None:
        if alpha <= 0:
            raise ConfigError(f"batch transform {self.name}: alpha must be > 0, got {alpha}")
        if not 0.0 <= p <= 1.0:
            raise ConfigError(f"batch transform {self.name}: p must lie in [0, 1], got {p}")
        self.alpha, self.p = alpha, p

    def __call__(self, images: torch.Tensor, targets: torch.Tensor, gen: torch.Generator) -> MixedBatch:
        rng = _rng(gen)
        perm = _permutation(len(images), gen, images.device)
        if rng.random() >= self.p:
            return MixedBatch(images, ((targets, 1.0),))
        mixed, kept = self.mix(images, perm, float(rng.beta(self.alpha, self.alpha)), rng)
        return MixedBatch(mixed, ((targets, kept), (targets[perm], 1.0 - kept)))

    def mix(self, images: torch.Tensor, perm: torch.Tensor, lam: float, rng: np.random.Generator) -> tuple:
        raise NotImplementedError


class Mixup(PairMix):
    name = "mixup"

    def mix(self, images: torch.Tensor, perm: torch.Tensor, lam: float, rng: np.random.Generator) -> tuple:
        return lam * images + (1 - lam) * images[perm], lam


def cut_box(h: int, w: int, lam: float, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """``(top, bottom, left, right)`` of a box of area about ``(1 - lam) h w``, clipped to the image."""
    ratio = math.sqrt(1.0 - lam)
    ch, cw = int(h * ratio), int(w * ratio)
    cy, cx = int(rng.integers(h)), int(rng.integers(w))
    return max(cy - ch // 2, 0), min(cy + ch // 2, h), max(cx - cw // 2, 0), min(cx + cw // 2, w)


class CutMix(PairMix):
    name = "cutmix"

    def mix(self, images: torch.Tensor, perm: torch.Tensor, lam: float, rng: np.random.Generator) -> tuple:
        h, w = images.shape[2], images.shape[3]
        top, bottom, left, right = cut_box(h, w, lam, rng)
        mixed = images.clone()
        mixed[:, :, top:bottom, left:right] = images[perm, :, top:bottom, left:right]
        return mixed, 1.0 - (bottom - top) * (right - left) / (h * w)  # the area actually kept


def make_mixup(options: MixupOptions, ctx: BatchContext) -> Mixup:
    return Mixup(options.alpha, options.p)


def make_cutmix(options: CutMixOptions, ctx: BatchContext) -> CutMix:
    return CutMix(options.alpha, options.p)
