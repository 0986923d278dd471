"""One run on several processes (``torchrun``): DistributedDataParallel over the supervised stage.

``torchrun --nproc-per-node N -m dermbench.cli run ...`` starts N copies of the run. Each process
(rank) prepares the same data and builds the same model; in the supervised stage every global
batch of ``--batch-size`` images is split between the ranks (rank r takes every N-th image of it),
DistributedDataParallel averages the gradients, so each optimiser step is the step one process
would take on the whole batch, and the epoch's training loss and accuracy are gathered over all
ranks. Every rank validates on the whole validation split with the same weights, so checkpoint
selection, early stopping and plateau schedules decide the same on every rank without messages.

Only rank 0 writes: the other ranks run with their results in a scratch folder that is removed at
the end, so there is one record, one set of checkpoints and predictions, and lifecycle hooks that
write (a tracker) see rank 0's run. Rank 0 alone opens the results folder and tells the others
whether to train (:func:`agree_on_start`), so a finished or refused run ends on every rank alike.

What differs from one process, and why results agree within a tolerance rather than bitwise:
batch-norm statistics are computed per rank, over its share of the batch; random augmentation
draws are made per shard; each rank's loss is the mean over its share, so shares of unequal size
weigh slightly differently; float sums are ordered differently. Other stages (VAE pretraining,
feature fitting) and the gate run in full on every rank. ``--resume`` is refused under torchrun
(every rank would have to restore the same optimiser state), as is ``sweep``.
"""

from __future__ import annotations

import os
import tempfile
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dermbench.errors import ConfigError


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


_STATE: dict[str, Any] = {"dist": Distributed(), "wrapped": weakref.WeakKeyDictionary()}


def launched_by_torchrun(env: dict[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    return int(env.get("WORLD_SIZE", "1") or 1) > 1


def init_from_env() -> Distributed:
    """Join the process group torchrun set up (gloo on CPU, nccl on CUDA); a no-op without torchrun."""
    if not launched_by_torchrun():
        return _STATE["dist"]
    import torch
    import torch.distributed as dist

    local = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend)
    _STATE["dist"] = Distributed(dist.get_rank(), dist.get_world_size(), local)
    return _STATE["dist"]


def current() -> Distributed:
    return _STATE["dist"]


def cfg_for_rank(cfg: Any, resume: bool) -> Any:
    """Rank 0's config unchanged; another rank's with its results in a scratch folder."""
    d = current()
    if not d.active:
        return cfg
    if resume:
        raise ConfigError("--resume is not supported under torchrun: start the run again without it")
    if d.main:
        return cfg
    from dataclasses import replace

    scratch = tempfile.mkdtemp(prefix=f"dermbench-rank{d.rank}-")
    return replace(cfg, out=scratch)


def agree_on_start(open_folder: Callable[[], tuple[Any, dict | None]]) -> tuple[Any, dict | None]:
    """Open the run's folder (``open_folder``: its path, and the record of a complete run there) with
    rank 0 deciding for every rank: only rank 0 sees the real results folder, so a finished run (or
    a refusal, such as an unfinished run without ``--resume``) there ends the run on every rank
    before any of them trains, instead of leaving the others to train alone."""
    d = current()
    if not d.active:
        return open_folder()
    import torch.distributed as dist

    verdict: Any
    own_error = None
    try:
        run_dir, done = open_folder()
        verdict = ("done", done) if done is not None else ("train", None)
    except Exception as exc:  # rank 0's is raised on every rank below, not on rank 0 alone
        verdict, own_error = ("refused", exc), exc
    decided = [verdict]
    dist.broadcast_object_list(decided, src=0)
    kind, value = decided[0]
    if kind == "refused":
        raise value
    if own_error is not None:
        raise own_error
    return run_dir, value  # rank 0's record of the finished run, or None: train


def shard(indices: Any) -> Any:
    """This rank's share of a global batch: every ``world``-th index, from ``rank``."""
    d = current()
    return indices[d.rank :: d.world] if d.active else indices


def training_module(model: Any) -> Any:
    """The module to call in training: ``model`` itself, or its DDP wrapper (one per set of
    trainable parameters, rebuilt when blocks are unfrozen)."""
    d = current()
    if not d.active:
        return model
    from torch.nn.parallel import DistributedDataParallel

    trainable = tuple(p.requires_grad for p in model.parameters())
    cached = _STATE["wrapped"].get(model)
    if cached is None or cached[0] != trainable:
        device = next(model.parameters()).device
        ids = [device.index] if device.type == "cuda" else None
        cached = (trainable, DistributedDataParallel(model, device_ids=ids, find_unused_parameters=False))
        _STATE["wrapped"][model] = cached
    return cached[1]


def gather_epoch(tot_loss: Any, preds: list, targets: list) -> tuple[Any, list, list]:
    """The epoch's summed loss and every rank's predictions and targets (all ranks get all)."""
    d = current()
    if not d.active:
        return tot_loss, preds, targets
    import torch
    import torch.distributed as dist

    loss = tot_loss.detach().clone()
    dist.all_reduce(loss)
    mine = [
        torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long),
        torch.cat(targets) if targets else torch.zeros(0, dtype=torch.long),
    ]
    gathered: list[Any] = [None] * d.world
    dist.all_gather_object(gathered, [t.cpu() for t in mine])
    return loss, [g[0] for g in gathered], [g[1] for g in gathered]
