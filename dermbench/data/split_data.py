"""One split of a run's data, decoded: the unit every stage, predictor and metric works on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    import torch


@dataclass
class SplitData:
    """One split's decoded images, integer labels and records (one row per image)."""

    name: str
    images: torch.Tensor  # uint8, (N, S, S, 3), on the host
    y: np.ndarray  # int64, (N,)
    frame: pd.DataFrame

    def __len__(self) -> int:
        return len(self.y)


def subset(split: SplitData, pos: np.ndarray, name: str) -> SplitData:
    """The rows ``pos`` of ``split``, renamed (a cross-validation fold's train or held-out part)."""
    import torch

    return SplitData(
        name=name,
        images=split.images[torch.as_tensor(pos)],
        y=split.y[pos],
        frame=split.frame.iloc[pos].reset_index(drop=True),
    )


def concat_splits(name: str, *splits: SplitData) -> SplitData:
    """Several splits as one (train + validation, the pool of a cross-validation ensemble)."""
    import torch

    return SplitData(
        name=name,
        images=torch.cat([s.images for s in splits]),
        y=np.concatenate([s.y for s in splits]),
        frame=pd.concat([s.frame for s in splits], ignore_index=True),
    )
