"""Built-in samplers: the order of training images in an epoch."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dermbench.components import Component
from dermbench.errors import ConfigError
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


@dataclass(frozen=True)
class StratifiedOptions:
    max_epoch_images: int = 0  # images per epoch at most (0: as many as the stage's training set)


class ClassStratifiedSampler:
    """Batches that each hold every class of the training set (Nedelcu et al., Section III-D: the
    batch size equals the number of classes, one image of each; a larger batch holds
    ``batch // K`` of each class, the remainder drawn from classes picked at random).

    An epoch has ``ceil(N / batch)`` full batches, N the images (or ``max_epoch_images``), so a rare
    class is oversampled and a common one undersampled. Within a class, images are taken in a fresh
    random order and start over only when all were used.
    """

    def __init__(self, labels: np.ndarray, batch_size: int, max_epoch_images: int = 0) -> None:
        self.labels = np.asarray(labels)
        self.classes = np.flatnonzero(np.bincount(self.labels))
        if batch_size < len(self.classes):
            raise ConfigError(
                f"sampler class_stratified: a batch of {batch_size} cannot hold all {len(self.classes)} classes "
                f"of the training set; set --batch-size to at least {len(self.classes)}"
            )
        self.batch = batch_size
        n = len(self.labels) if max_epoch_images <= 0 else min(len(self.labels), max_epoch_images)
        self.batches = -(-n // batch_size)

    def epoch_indices(self, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        k = len(self.classes)
        per_class = np.zeros((self.batches, k), dtype=np.int64) + self.batch // k
        for row in per_class:  # the remainder of each batch: distinct classes picked at random
            row[rng.choice(k, size=self.batch % k, replace=False)] += 1
        draws = [self._draw(rng, c, int(per_class[:, j].sum())) for j, c in enumerate(self.classes)]
        used = np.zeros(k, dtype=np.int64)
        order = []
        for row in per_class:
            batch = []
            for j, m in enumerate(row):
                batch.extend(draws[j][used[j] : used[j] + m])
                used[j] += m
            order.extend(rng.permutation(batch))
        return np.asarray(order, dtype=np.int64)

    def _draw(self, rng: np.random.Generator, cls: int, m: int) -> np.ndarray:
        members = np.flatnonzero(self.labels == cls)
        rounds = -(-m // len(members))
        return np.concatenate([rng.permutation(members) for _ in range(rounds)])[:m]


def make_stratified(
    options: StratifiedOptions, labels: np.ndarray, ctx: OptimContext
) -> ClassStratifiedSampler:
    if ctx.batch_size < 1:
        raise ConfigError(
            "sampler class_stratified needs the batch size, which this stage runner did not give"
        )
    return ClassStratifiedSampler(labels, ctx.batch_size, options.max_epoch_images)


@dataclass(frozen=True)
class SmoteOptions:
    k_neighbors: int = 5  # imbalanced-learn's default (fewer when a class has fewer images)


class SmoteSampler:
    """SMOTE: the stage's training set gains synthetic minority images (``dermbench.data.smote``)
    until every class has the majority's count; an epoch then shuffles the enlarged set once."""

    def __init__(self, options: SmoteOptions) -> None:
        self.k_neighbors = options.k_neighbors
        self.n = 0

    def resample(self, split, classes: list[str], seed: int):
        from dermbench.data.smote import smote_split

        out, info = smote_split(split, classes, self.k_neighbors, seed)
        self.n = len(out)
        return out, info

    def epoch_indices(self, seed: int) -> np.ndarray:
        return np.random.default_rng(seed).permutation(self.n)


def make_smote(options: SmoteOptions, labels: np.ndarray, ctx: OptimContext) -> SmoteSampler:
    sampler = SmoteSampler(options)
    sampler.n = len(labels)
    return sampler


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
    register(
        Component(
            "class_stratified",
            make_stratified,
            "Batches that each hold every class (batch >= K), rare classes oversampled",
            options=StratifiedOptions,
            paper="Nedelcu et al., Challenges on Real-World Skin Lesion Classification (Section III-D)",
        )
    )
    register(
        Component(
            "smote",
            make_smote,
            "SMOTE: synthetic minority images from flattened pixels until the classes are even (imbalanced-learn)",
            options=SmoteOptions,
            paper="Chawla et al., JAIR 16 (2002); as Bilyk et al. apply it",
        )
    )
