"""Maps a dataset's raw labels into a task's classes.

Adapters keep labels as their source spells them, so one adapter serves every task; the task
file says how each source's labels map into its classes. A label with no mapping is dropped
and counted (the counts go into the run record), never silently.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dermbench.data.adapters import line
from dermbench.data.records import DatasetRecords
from dermbench.errors import DataError
from dermbench.tasks import SOURCE_TASK, Task


def apply_task(records: DatasetRecords, task: Task) -> tuple[pd.DataFrame, dict[str, int]]:
    """The rows the task can use, with ``y`` (index into ``task.classes``) and ``row`` (the
    position in ``records``, for ``read_image`` and the cache), plus dropped counts per raw label."""
    mapping = task.mapping(records.label_source)  # ConfigError when the task has no such source
    index = {cls: i for i, cls in enumerate(task.classes)}
    labels = records.frame["label"].astype(str)
    if records.label_source in (SOURCE_TASK, task.name):
        # labels claim to be the task's own classes: one that is not is a typo, not a drop
        unknown = np.flatnonzero(~labels.isin(task.classes).to_numpy())
        if len(unknown):
            i = unknown[0]
            raise DataError(
                f"{records.path or records.name}: {line(i)}: unknown label {labels.iloc[i]!r} for task "
                f"{task.name!r} (classes: {', '.join(task.classes)}; {len(unknown)} such row(s))"
            )
    y = labels.map(lambda raw: index[mapping[raw]] if raw in mapping else -1).to_numpy(dtype=np.int64)
    keep = y >= 0
    dropped = labels[~keep].value_counts()
    frame = records.frame.loc[keep].copy()
    frame["row"] = np.flatnonzero(keep).astype(np.int64)
    frame["y"] = y[keep]
    frame = frame.reset_index(drop=True)
    return frame, {str(k): int(v) for k, v in sorted(dropped.items())}
