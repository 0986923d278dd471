"""Train/val/test splits that keep a lesion's images together and every class's proportions.

HAM10000 holds up to six images of one lesion; a split that scatters them lets a model score by
recognising the lesion instead of the disease, inflating every metric. Splits here are:

- grouped: all rows sharing ``group`` (lesion or patient) land in one split;
- stratified: each class is divided by ``fractions`` as closely as whole groups allow;
- seeded: the same seed gives the same split on any machine; another seed, another split;
- official when the source has one (``split`` column complete), as published.

The grouped assignment is greedy: groups are visited rarest-class first (ties in a seeded random
order), and each goes to the part whose class counts it brings closest to their targets, after
every part has received one group of each class that has enough groups to go round. Unlike
fold-based splitters this honours any fractions exactly up to one group, also on tiny sets.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import pandas as pd

from dermbench.errors import ConfigError

SPLITS = ("train", "val", "test")


def _group_codes(frame: pd.DataFrame) -> np.ndarray:
    groups = frame["group"] if "group" in frame.columns else frame["image_id"]
    return pd.factorize(groups.astype(str))[0]


def grouped_assignment(
    y: np.ndarray, groups: np.ndarray, fractions: Sequence[float], seed: int
) -> np.ndarray:
    """The part (0..len(fractions)-1) of every row; rows of one group share a part."""
    y = np.asarray(y, dtype=np.int64)
    frac = np.asarray(fractions, dtype=float)
    if len(y) == 0:
        return np.zeros(0, dtype=np.int64)
    if (frac < 0).any() or not np.isclose(frac.sum(), 1.0):
        raise ConfigError(f"split fractions {tuple(fractions)} must be non-negative and sum to 1")
    codes, ginv = np.unique(groups, return_inverse=True)
    n_classes = int(y.max()) + 1
    counts = np.zeros((len(codes), n_classes))
    np.add.at(counts, (ginv, y), 1)
    total = counts.sum(axis=0)
    weight = 1.0 / np.maximum(total, 1) ** 2  # each class's fraction error counts alike
    target = frac[:, None] * total[None, :]
    size_target = frac * len(y)
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(len(codes))
    rarest = np.where(counts > 0, total[None, :], np.inf).min(axis=1)
    # rare classes first, and otherwise a random order: never by group size, or the big lesions
    # (several images each, often from one source) would pile up in the largest part
    order = shuffled[np.argsort(rarest[shuffled], kind="stable")]
    # a class with a group for every part first gets one group in each (then an empty split
    # cannot come from the greedy preferring the big part for a class of a few lesions)
    spread = (counts > 0).sum(axis=0) >= (frac > 0).sum()
    current = np.zeros_like(target)
    size = np.zeros(len(frac))
    part_of_group = np.empty(len(codes), dtype=np.int64)
    for g in order:
        gc = counts[g]
        n = gc.sum()
        cost = ((2 * (current - target) + gc) * gc * weight).sum(axis=1)
        cost += 0.1 * n * (2 * (size - size_target) + n) / len(y) ** 2
        cost -= 1e6 * (current[:, (gc > 0) & spread] == 0).sum(axis=1)
        cost[frac == 0] = np.inf
        p = int(np.argmin(cost))
        part_of_group[g] = p
        current[p] += gc
        size[p] += n
    return part_of_group[ginv]


def _official(frame: pd.DataFrame) -> pd.Series | None:
    if "split" not in frame.columns or frame["split"].isna().any():
        return None
    split = frame["split"].astype(str)
    return split if split.isin(SPLITS).all() else None


def make_splits(
    frame: pd.DataFrame, seed: int, fractions: Sequence[float] = (0.7, 0.15, 0.15), official: bool = True
) -> dict[str, np.ndarray]:
    """Positions into ``frame`` (which needs ``y`` and ``group``) for train, val and test.

    A complete official ``split`` column is used as published (with ``official``); if it has no
    val part, val is carved out of train, grouped and stratified, at ``fractions``' ratio.
    """
    if len(fractions) != 3:
        raise ConfigError(f"split fractions need three parts (train, val, test), got {tuple(fractions)}")
    y = frame["y"].to_numpy()
    split = _official(frame) if official else None
    if split is not None and {"train", "test"} <= set(split):
        out = {name: np.flatnonzero(split.to_numpy() == name) for name in SPLITS}
        if len(out["val"]) == 0:
            train = out["train"]
            share = fractions[1] / (fractions[0] + fractions[1])
            part = grouped_assignment(y[train], _group_codes(frame)[train], (1 - share, share), seed)
            out["train"], out["val"] = train[part == 0], train[part == 1]
        return {k: v.astype(np.int64) for k, v in out.items()}
    part = grouped_assignment(y, _group_codes(frame), fractions, seed)
    return {name: np.flatnonzero(part == i).astype(np.int64) for i, name in enumerate(SPLITS)}


def kfold_splits(frame: pd.DataFrame, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``k`` (train, held-out) pairs of positions; held-out parts are grouped, stratified, disjoint."""
    if k < 2:
        raise ConfigError(f"k-fold needs k >= 2, got {k}")
    part = grouped_assignment(frame["y"].to_numpy(), _group_codes(frame), [1.0 / k] * k, seed)
    return [(np.flatnonzero(part != i), np.flatnonzero(part == i)) for i in range(k)]


def split_fingerprint(frame: pd.DataFrame, idx: np.ndarray) -> str:
    """sha256 over the sorted (image_id, label, y) of the rows: equal iff the same images and labels."""
    sub = frame.iloc[np.asarray(idx, dtype=np.int64)]
    cols = [c for c in ("image_id", "label", "y") if c in sub.columns]
    lines = sorted("\t".join(map(str, t)) for t in zip(*(sub[c].tolist() for c in cols), strict=True))
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def check_splits(
    frame: pd.DataFrame, splits: dict[str, np.ndarray], classes: Sequence[str], allow_empty: bool = False
) -> dict[str, dict[str, int]]:
    """Per-split class counts; a class with no images in some split is an error unless allowed,
    since its recall and F1 there would be undefined and macro averages silently change meaning."""
    y = frame["y"].to_numpy()
    counts = {
        name: dict(zip(classes, np.bincount(y[idx], minlength=len(classes)).tolist(), strict=False))
        for name, idx in splits.items()
    }
    for name, idx in splits.items():
        if len(idx) == 0 and not allow_empty:
            raise ConfigError(f"the {name} split has no images: use more data or other split fractions")
    if not allow_empty:
        for cls in classes:
            for name in splits:
                if counts[name][cls] == 0:
                    spread = ", ".join(f"{n} {counts[n][cls]}" for n in splits)
                    raise ConfigError(
                        f"class {cls!r} has no images in the {name} split ({spread}): use more data, "
                        "another split seed, or --allow-empty-classes"
                    )
    return counts
