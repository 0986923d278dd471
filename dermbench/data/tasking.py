"""Maps a dataset's raw labels into a task's classes.

Adapters keep labels as their source spells them, so one adapter serves every task; the task
file says how each source's labels map into its classes. A label with no mapping is dropped
and counted (the counts go into the run record), never silently.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dermbench.data.records import DatasetRecords
from dermbench.tasks import Task


def apply_task(records: DatasetRecords, task: Task) -> tuple[pd.DataFrame, dict[str, int]]:
    """The rows the task can use, with ``y`` (index into ``task.classes``) and ``row`` (the
    position in ``records``, for ``read_image`` and the cache), plus dropped counts per raw label."""
    mapping = task.mapping(records.label_source)  # ConfigError when the task has no such source
    index = {cls: i for i, cls in enumerate(task.classes)}
    labels = records.frame["label"].astype(str)
    y = labels.map(lambda raw: index[mapping[raw]] if raw in mapping else -1).to_numpy(dtype=np.int64)
    keep = y >= 0
    dropped = labels[~keep].value_counts()
    frame = records.frame.loc[keep].copy()
    frame["row"] = np.flatnonzero(keep).astype(np.int64)
    frame["y"] = y[keep]
    frame = frame.reset_index(drop=True)
    return frame, {str(k): int(v) for k, v in sorted(dropped.items())}
