"""The extension points of dermbench.

Every hook is a plain function whose body is its documentation. Registration hooks receive a
``register`` callback and hand it component specs; the core collects them into registries
(see :mod:`dermbench.registry`). Lifecycle hooks only observe a run. Built-in components are
registered through these same hooks by the plugins in :mod:`dermbench.builtin`.
"""

from __future__ import annotations

from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("dermbench")
hookimpl = pluggy.HookimplMarker("dermbench")


# --- registration hooks: one per component kind -------------------------------------------


@hookspec
def dermbench_register_datasets(register: Any) -> None:
    """Register dataset adapters: ``register(Component(name, factory, ...))``.

    ``factory(options, path) -> dermbench.data.records.DatasetRecords`` reads a dataset in its
    published layout. ``path`` is ``None`` for generated data.
    """


@hookspec
def dermbench_register_tasks(register: Any) -> None:
    """Register tasks: ``register(dermbench.tasks.Task(...))`` (label space, mappings, metrics)."""


@hookspec
def dermbench_register_models(register: Any) -> None:
    """Register model architectures beyond timm's.

    ``factory(options, ctx: dermbench.components.ModelContext) -> torch.nn.Module`` returning
    logits of shape ``(batch, num_classes)``. Names not registered are looked up in timm.
    """


@hookspec
def dermbench_register_losses(register: Any) -> None:
    """Register losses.

    ``factory(options, ctx: dermbench.components.LossContext) -> torch.nn.Module`` whose
    ``forward(logits, targets)`` returns a scalar. ``ctx.class_counts`` are the training-split
    counts in the task's class order.
    """


@hookspec
def dermbench_register_optimizers(register: Any) -> None:
    """Register optimizers: ``factory(options, param_groups, ctx) -> torch.optim.Optimizer``."""


@hookspec
def dermbench_register_schedulers(register: Any) -> None:
    """Register learning-rate schedules: ``factory(options, optimizer, ctx) -> scheduler``.

    The scheduler is stepped once per epoch.
    """


@hookspec
def dermbench_register_samplers(register: Any) -> None:
    """Register batch samplers: ``factory(options, labels, ctx) -> object``.

    The object's ``epoch_indices(seed) -> np.ndarray`` gives the order of training images for
    one epoch; it must depend on ``seed`` alone so that a resumed run repeats it exactly.
    """


@hookspec
def dermbench_register_stages(register: Any) -> None:
    """Register training stages (pretrain, train, finetune).

    ``factory(options, ctx: dermbench.components.StageContext) -> None`` trains
    ``ctx.model`` in place and appends per-epoch rows to ``ctx.history``.
    """


@hookspec
def dermbench_register_posthoc(register: Any) -> None:
    """Register post-hoc steps, fit on validation and applied unchanged to test.

    ``factory(options, ctx: dermbench.builtin.posthoc.PosthocContext) -> object`` with
    ``fit(val_y, val_probs, val_frame)`` and ``apply(y, probs, frame) -> dict``; the dict is stored
    in each split's metrics under the object's ``key`` (default: the component's name).
    """


@hookspec
def dermbench_register_predictors(register: Any) -> None:
    """Register predictors (ensembles, test-time augmentation).

    ``factory(options, ctx) -> callable(model, images_uint8) -> probabilities``.
    """


@hookspec
def dermbench_register_explainers(register: Any) -> None:
    """Register explainers: ``factory(options, ctx) -> callable(model, images) -> heatmaps``."""


@hookspec
def dermbench_register_metrics(register: Any) -> None:
    """Register extra metrics: ``factory(options, task) -> callable(y_true, probs, frame) -> value``.

    Every registered metric is computed on every scored split and stored under
    ``metrics.<split>.extra.<name>``; one that raises is recorded as undefined with the error.
    """


@hookspec
def dermbench_register_methods(register: Any) -> None:
    """Register methods: ``register(dermbench.components.Method(...))``, a recipe of components."""


@hookspec
def dermbench_register_sweeps(register: Any) -> None:
    """Register sweep presets: ``register(dermbench.components.SweepPreset(...))``."""


# --- lifecycle hooks: observe only ---------------------------------------------------------


@hookspec
def dermbench_run_start(record: dict) -> None:
    """Called once a run's config is resolved and its data split, before training."""


@hookspec
def dermbench_epoch_end(record: dict, row: dict) -> None:
    """Called after each epoch with the history row just appended."""


@hookspec
def dermbench_run_finished(record: dict, run_dir: str) -> None:
    """Called after the run record is written."""
