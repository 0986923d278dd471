"""Built-in samplers: the order of training images in an epoch."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dermbench.components import Component
from dermbench.hookspecs import hookimpl
from dermbench.plugins.contract import OptimContext


@dataclass(frozen=True)
class BalancedOptions:
    power: float = 1.0  # weight of class c is n_c^-power: 1 = class-balanced, 0 = plain shuffling


class ClassBalancedSampler:
    """Draw an epoch of N images with replacement, class c weighted n_c^-power per image.

    With power 1 every class is equally likely in a batch: class-stratified batches in
    expectation, the usual remedy when a class has a few dozen images among thousands.
    """

    def __init__(self, labels: np.ndarray, power: float) -> None:
        self.labels = np.asarray(labels)
        counts = np.bincount(self.labels)
        w = np.where(counts > 0, counts.astype(float), np.inf) ** -power
        self.p = w[self.labels] / w[self.labels].sum()

    def epoch_indices(self, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return rng.choice(len(self.labels), size=len(self.labels), replace=True, p=self.p)


def make_balanced(options: BalancedOptions, labels: np.ndarray, ctx: OptimContext) -> ClassBalancedSampler:
    return ClassBalancedSampler(labels, options.power)


@hookimpl
def dermbench_register_samplers(register):
    register(
        Component(
            "balanced",
            make_balanced,
            "Class-balanced sampling with replacement (weight n_c^-power)",
            options=BalancedOptions,
        )
    )
