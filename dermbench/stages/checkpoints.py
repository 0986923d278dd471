"""Checkpoint files of a run: their names are defined here and nowhere else.

- ``last.pt``: written after every epoch (model, optimiser, scheduler, selection state and the
  history so far), what ``--resume`` continues from;
- ``best-<stage>.pt``: the weights of a stage's best epoch under the run's selection metric;
- ``final.pt`` (``fold<i>/final.pt`` for an ensemble): the weights that were scored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from dermbench.models.weights_io import load_tensors

CHECKPOINTS = "checkpoints"  # the folder of a run's checkpoints: <run>/checkpoints[/fold<i>]
LAST = "last.pt"
FINAL = "final.pt"


def best_name(stage_index: int) -> str:
    return f"best-{stage_index}.pt"


def fold_dir(checkpoint_dir: Path, fold: int | None) -> Path:
    return checkpoint_dir if fold is None else checkpoint_dir / f"fold{fold}"


def run_dir_of(checkpoint_dir: Path) -> Path:
    """The run folder a stage's checkpoint folder belongs to (the inverse of ``fold_dir``)."""
    folder = Path(checkpoint_dir)
    return folder.parent if folder.name == CHECKPOINTS else folder.parent.parent


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary name, then rename: a kill never leaves half a checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def load_weights(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    return load_tensors(path, "checkpoint", map_location=device)["model"]


def load_state(path: Path) -> dict[str, Any]:
    """A full ``last.pt`` (with the history and optimiser state). Like every checkpoint dermbench
    reads, it is loaded with ``weights_only=True``: tensors and plain Python values only, never
    arbitrary objects, so a checkpoint cannot run code."""
    return load_tensors(path, "checkpoint")
