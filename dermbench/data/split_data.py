"""One split of a run's data, decoded: the unit every stage, predictor and metric works on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    import torch


@dataclass
class SplitData:
    """One split's decoded images, integer labels and records (one row per image).

    With mapped images (``--image-memory mapped``), ``images`` is a tensor over ``mapped``, a memory
    map of a cache file (``dermbench.data.mapped``); a subset or a union of such splits is mapped too.
    """

    name: str
    images: torch.Tensor  # uint8, (N, S, S, 3), on the host
    y: np.ndarray  # int64, (N,)
    frame: pd.DataFrame
    mapped: np.ndarray | None = field(default=None, repr=False)  # the memory map ``images`` reads

    def __len__(self) -> int:
        return len(self.y)


def with_images(name: str, images: np.ndarray, y: np.ndarray, frame: pd.DataFrame) -> SplitData:
    """A split over ``images``, keeping its memory map when it is one."""
    import torch

    from dermbench.data.mapped import is_mapped

    return SplitData(name, torch.from_numpy(images), y, frame, images if is_mapped(images) else None)


def subset(split: SplitData, pos: np.ndarray, name: str) -> SplitData:
    """The rows ``pos`` of ``split``, renamed (a cross-validation fold's train or held-out part)."""
    import torch

    from dermbench.data.mapped import gather

    frame = split.frame.iloc[pos].reset_index(drop=True)
    if split.mapped is not None:
        return with_images(name, gather(split.mapped, pos), split.y[pos], frame)
    return SplitData(name=name, images=split.images[torch.as_tensor(pos)], y=split.y[pos], frame=frame)


def concat_splits(name: str, *splits: SplitData) -> SplitData:
    """Several splits as one (train + validation, the pool of a cross-validation ensemble)."""
    import torch

    from dermbench.data.mapped import concatenate

    y = np.concatenate([s.y for s in splits])
    frame = pd.concat([s.frame for s in splits], ignore_index=True)
    if all(s.mapped is not None for s in splits):
        return with_images(name, concatenate([s.mapped for s in splits]), y, frame)
    return SplitData(name=name, images=torch.cat([s.images for s in splits]), y=y, frame=frame)
