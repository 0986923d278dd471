"""TensorBoard scalars of a run (``DERMBENCH_TENSORBOARD``), through ``torch.utils.tensorboard``.

Each history row's numbers at the row's step (``train_loss``, ``val_macro_f1``, ``lr``...), and at
the end the final numbers of the record under ``final/`` (``final/test.macro_f1``), at step 0. A
resumed run appends to the same folder: the steps carry on where the record's history stopped.
Needs the ``tensorboard`` package (``pip install 'dermbench-mlflow[tensorboard]'``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dermbench_mlflow.flatten import final_metrics, row_metrics


class TensorBoardRun:
    def __init__(self, folder: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise RuntimeError(
                f"DERMBENCH_TENSORBOARD is set but TensorBoard is not installed ({exc}): "
                "pip install 'dermbench-mlflow[tensorboard]'"
            ) from None
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.writer: Any = SummaryWriter(log_dir=str(folder))

    def log_row(self, row: dict, step: int) -> None:
        for k, v in row_metrics(row).items():
            self.writer.add_scalar(k, v, step)
        self.writer.flush()

    def finish(self, record: dict) -> None:
        for k, v in final_metrics(record).items():
            self.writer.add_scalar(f"final/{k}", v, 0)
        self.writer.close()
