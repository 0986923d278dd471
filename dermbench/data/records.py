"""The records table every dataset adapter produces.

An adapter reads a dataset in its published layout and returns :class:`DatasetRecords`: one row
per image, the raw label as the source spells it, and the lesion or patient group that a split
must keep together. Mapping raw labels into a task's classes happens later, in
:func:`dermbench.data.tasking.apply_task`, so one adapter serves every task.

Columns of ``frame`` (a pandas DataFrame with a default RangeIndex):
- ``image_id`` (str, unique): the image's id (file stem, or ``<split>_<n>`` for arrays);
- ``label`` (str): the raw label in the namespace ``label_source``;
- ``group`` (str): lesion or patient id; equal to ``image_id`` when the source has none;
- ``split`` (str, optional): ``train``/``val``/``test`` when the source has an official split;
- ``skin_type`` (float, optional): Fitzpatrick type 1-6, NaN when unknown;
- ``path`` (str, optional): the image file, for sources stored as files;
- any other metadata column (``age``, ``sex``, ``localization``, ...), kept as is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
from PIL import Image

REQUIRED_COLUMNS = ("image_id", "label", "group")


@dataclass
class DatasetRecords:
    name: str  # the adapter's registered name, e.g. "ham10000"
    path: str | None  # what the user named; None for generated data
    frame: pd.DataFrame
    label_source: str  # the namespace task mappings are keyed by, e.g. "ham10000_dx"
    read_image: Callable[
        [int], Image.Image
    ]  # row position -> RGB PIL image; raises DataError naming the file
    identity: str  # changes whenever the images could have changed; part of the cache key
    synthetic: bool = False
    excluded: dict | None = None  # rows the adapter left out on purpose: {"n", "images", "why"}

    def __len__(self) -> int:
        return len(self.frame)
