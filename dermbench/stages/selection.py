"""Checkpoint selection and early stopping: which epoch of a stage is scored.

The selection metrics are named here and nowhere else (config validation imports ``MODES``):
``last`` scores the last epoch; the others keep the best epoch by a validation score, and
``early_stopping`` (patience in epochs) stops a stage that has not improved for that long.
"""

from __future__ import annotations

from typing import Any

MODES = {
    "last": None,
    "val_macro_f1": "max",
    "val_accuracy": "max",
    "val_loss": "min",
    "val_macro_auc": "max",
}


class Selection:
    """The best score so far, its epoch and the epochs since; saved in and restored from ``last.pt``."""

    def __init__(self, metric: str, patience: int | None) -> None:
        self.metric = metric
        self.mode = MODES.get(metric)
        self.patience = patience
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.bad_epochs = 0

    @property
    def active(self) -> bool:
        return self.mode is not None

    def update(self, row: dict, epoch: int) -> bool:
        """Take one epoch's history row; True when it is the new best (its weights should be kept)."""
        if not self.active:
            return False
        score = row.get(self.metric)
        if score is None:  # undefined this epoch (an AUC with one class in validation): no improvement
            self.bad_epochs += 1
            return False
        improved = self.best is None or (score > self.best if self.mode == "max" else score < self.best)
        if improved:
            self.best, self.best_epoch, self.bad_epochs = score, epoch, 0
        else:
            self.bad_epochs += 1
        return improved

    def should_stop(self) -> bool:
        return self.patience is not None and self.active and self.bad_epochs >= self.patience

    def state(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs}

    def load(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch, self.bad_epochs = state["best"], state["best_epoch"], state["bad_epochs"]
