"""The extension points of dermbench: the contract a plugin is written against.

Every hook is a plain function whose body is its documentation. Registration hooks receive a
``register`` callback and hand it specs; the core collects them into registries (see
:mod:`dermbench.plugins.registry`). The signature each registered factory is called with, and
the context it receives, are :class:`typing.Protocol` classes and frozen dataclasses in
:mod:`dermbench.plugins.contract` (``CONTRACTS`` maps each kind to them). Lifecycle hooks only
observe a run. Built-in components are registered through these same hooks by the plugins in
:mod:`dermbench.builtin`, loaded first.

A ``dermbench_*`` function in a plugin that is none of these hooks makes the plugin fail to load,
naming it: a misspelt hook must never load silently and register nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from dermbench.components import Component, Method, SweepPreset
    from dermbench.tasks import Task

hookspec = pluggy.HookspecMarker("dermbench")
hookimpl = pluggy.HookimplMarker("dermbench")


# --- registration hooks: one per component kind -------------------------------------------


@hookspec
def dermbench_register_datasets(register: Callable[[Component | list[Component]], None]) -> None:
    """Register dataset adapters, read in their published layout.

    :param register: call with one item or a list of them: a ``Component`` whose factory is a ``DatasetFactory``:
        ``factory(options, path) -> DatasetRecords`` (``path`` is ``None`` for generated data).
    """


@hookspec
def dermbench_register_tasks(register: Callable[[Task | list[Task]], None]) -> None:
    """Register tasks: a label space, mappings from each source's labels, how it is scored.

    :param register: call with one item or a list of them: a ``dermbench.tasks.Task`` (or keep it as a ``tasks/*.toml`` file).
    """


@hookspec
def dermbench_register_models(register: Callable[[Component | list[Component]], None]) -> None:
    """Register model architectures beyond timm's (names not registered are looked up in timm).

    :param register: call with one item or a list of them: a ``Component`` whose factory is a ``ModelFactory``:
        ``factory(options, ctx: ModelContext) -> nn.Module`` returning ``(batch, classes)`` logits.
    """


@hookspec
def dermbench_register_losses(register: Callable[[Component | list[Component]], None]) -> None:
    """Register losses.

    :param register: call with one item or a list of them: a ``Component`` whose factory is a ``LossFactory``:
        ``factory(options, ctx: LossContext) -> nn.Module``; the module is a ``Loss``,
        ``loss(logits, targets) -> scalar`` with ``targets`` class indices (a batch transform's
        mixed targets are handled by weighting the loss, so a loss never sees soft labels).
    """


@hookspec
def dermbench_register_optimizers(register: Callable[[Component | list[Component]], None]) -> None:
    """Register optimisers.

    :param register: call with one item or a list of them: a ``Component`` whose factory is an ``OptimizerFactory``:
        ``factory(options, param_groups, ctx: OptimContext) -> torch.optim.Optimizer``.
    """


@hookspec
def dermbench_register_schedulers(register: Callable[[Component | list[Component]], None]) -> None:
    """Register learning-rate schedules, stepped once per epoch.

    :param register: call with one item or a list of them: a ``Component`` whose factory is a ``SchedulerFactory``:
        ``factory(options, optimizer, ctx: OptimContext) -> scheduler``.
    """


@hookspec
def dermbench_register_samplers(register: Callable[[Component | list[Component]], None]) -> None:
    """Register training samplers: the order of training images in an epoch.

    :param register: call with one item or a list of them: a ``Component`` whose factory is a ``SamplerFactory``:
        ``factory(options, labels, ctx: OptimContext) -> Sampler``; ``epoch_indices(seed)`` must
        depend on ``seed`` alone, so that a resumed run repeats it exactly.
    """


@hookspec
def dermbench_register_batch_transforms(register: Callable[[Component | list[Component]], None]) -> None:
    """Register batch transforms, applied between a training batch and the model (Mixup, CutMix).

    :param register: call with one item or a list of them: a ``Component`` whose factory is a ``BatchTransformFactory``:
        ``factory(options, ctx: BatchContext) -> BatchTransform``;
        ``transform(images, targets, gen) -> MixedBatch`` with normalised float NCHW images, class
        indices and the epoch's generator (the only source of randomness allowed).
    """


@hookspec
def dermbench_register_stages(register: Callable[[Component | list[Component]], None]) -> None:
    """Register training stage runners (pretrain, train, finetune).

    :param register: call with one item or a list of them: a ``Component`` whose factory is a ``StageFactory``:
        ``factory(options, ctx: StageContext) -> StageResult``; it trains ``ctx.model`` in place,
        hands each history row to ``ctx.on_epoch_end`` and writes ``checkpoints/last.pt``.
    """


@hookspec
def dermbench_register_posthoc(register: Callable[[Component | list[Component]], None]) -> None:
    """Register post-hoc steps, fit on validation and applied unchanged to every split.

    :param register: call with one item or a list of them: a ``Component`` whose factory is a ``PosthocFactory``:
        ``factory(options, ctx: PosthocContext) -> PosthocStep`` with ``fit(y, probs, frame)`` and
        ``apply(y, probs, frame) -> dict``, stored under ``metrics.<split>.<step.key>``.
    """


@hookspec
def dermbench_register_predictors(register: Callable[[Component | list[Component]], None]) -> None:
    """Register predictors, which turn a model and a batch into probabilities (e.g. TTA).

    :param register: call with one item or a list of them: a ``Component`` whose factory is a ``PredictorFactory``:
        ``factory(options, ctx: PredictorContext) -> Predictor``;
        ``predict(model, images, batch_size) -> np.ndarray`` with normalised float NCHW images
        already on the model's device.
    """


@hookspec
def dermbench_register_explainers(register: Callable[[Component | list[Component]], None]) -> None:
    """Register explainers (saliency overlays).

    :param register: call with one item or a list of them: a ``Component`` whose factory is an ``ExplainerFactory``:
        ``factory(options, ctx: ExplainerContext) -> Explainer``;
        ``explain(model, images_uint8, targets, out_dir, names) -> list[Path]``.
    """


@hookspec
def dermbench_register_segmenters(register: Callable[[Component | list[Component]], None]) -> None:
    """Register lesion segmenters (``dermbench segment --method NAME``; docs/segmentation.md).

    :param register: call with one item or a list of them: a ``Component`` whose factory is a ``SegmenterFactory``:
        ``factory(options, ctx: SegmentContext) -> Segmenter``; ``fit(images, masks) -> history``
        (uint8 ``(N, S, S, 3)``, bool ``(N, S, S)``; one row per epoch) and
        ``predict(images) -> masks`` (bool ``(N, S, S)``, the input's size); ``resolved`` (a dict
        for the record) and ``model`` (what ``--save-model`` writes the state dict of).
    """


@hookspec
def dermbench_register_metrics(register: Callable[[Component | list[Component]], None]) -> None:
    """Register extra metrics, computed on every scored split under ``metrics.<split>.extra``.

    :param register: call with one item or a list of them: a ``Component`` whose factory is a ``MetricFactory``:
        ``factory(options, task: Task) -> Metric``; ``metric(y, probs, frame) -> value``. One that
        raises is recorded as undefined with the error, and the run goes on.
    """


@hookspec
def dermbench_register_launchers(register: Callable[[Component | list[Component]], None]) -> None:
    """Register launchers: where and how a sweep's runs execute (``dermbench sweep --launcher NAME``).

    :param register: call with one item or a list of them: a ``Component`` whose factory is a ``LauncherFactory``:
        ``factory(options, ctx: LaunchContext) -> Launcher``; ``launcher.launch(jobs, progress) ->
        list[JobOutcome]``. A worker runs each ``RunJob`` with ``dermbench.launch.jobs.run_job``.
    """


@hookspec
def dermbench_register_methods(register: Callable[[Method | list[Method]], None]) -> None:
    """Register methods: recipes of named components, their defaults and protocol profiles.

    :param register: call with one item or a list of them: a ``dermbench.components.Method``.
    """


@hookspec
def dermbench_register_sweeps(register: Callable[[SweepPreset | list[SweepPreset]], None]) -> None:
    """Register sweep presets, run by ``dermbench sweep --preset NAME``.

    :param register: call with one item or a list of them: a ``dermbench.components.SweepPreset``.
    """


# --- defaults a plugin may replace ---------------------------------------------------------


@hookspec(firstresult=True)
def dermbench_default_component(kind: str) -> str | None:
    """The name of the ``kind`` component used where a run or recipe names none.

    The built-ins answer for tasks, methods, datasets, stages, losses, optimizers and explainers;
    a plugin loaded later answers first, and so replaces the default.

    :param kind: a component kind, e.g. ``"methods"``; return ``None`` to leave it to others.
    """


# --- lifecycle hooks: observe only ---------------------------------------------------------


@hookspec
def dermbench_run_start(record: dict, run_dir: str, resumed: bool) -> None:
    """Called once a run's config is resolved and its data split, before training.

    :param record: the run record as first written (status ``running``); do not modify it.
    :param run_dir: the run's folder (``record.json`` is already there; files may be added beside it).
    :param resumed: True when this run continues one that was interrupted (the same ``run_id``).
    """


@hookspec
def dermbench_epoch_end(record: dict, row: dict, step: int) -> None:
    """Called after each epoch with the history row just appended.

    :param record: the run record so far; do not modify it.
    :param row: the epoch's history row (stage, epoch, train and validation scores, lr, seconds,
        and ``dataset``; ``fold`` in cross-validation).
    :param step: the row's index in ``record["history"]``, counting over stages and folds (an epoch
        number restarts with each stage; the step does not).
    """


@hookspec
def dermbench_run_finished(record: dict, run_dir: str) -> None:
    """Called after the run record is written.

    :param record: the complete run record.
    :param run_dir: the run's folder, holding ``record.json`` and the files it names.
    """


@hookspec
def dermbench_sweep_start(sweep: dict) -> None:
    """Called before the first run of a sweep; every run of the sweep then runs in this process.

    :param sweep: ``sweep_id`` (a hash of the planned runs and their settings: the same command
        gives the same id, so a relaunched sweep is recognised), ``preset``, ``tasks``, ``methods``,
        ``seeds``, ``grid``, ``n_runs`` and ``out`` (the results folder).
    """


@hookspec
def dermbench_sweep_finished(sweep: dict, records: list[dict], failures: list[dict]) -> None:
    """Called after the last run of a sweep (not when the sweep itself is killed).

    :param sweep: the same dict as :func:`dermbench_sweep_start` got.
    :param records: the record of every run that completed or was already complete.
    :param failures: ``{"run": label, "error": message}`` for each run that failed.
    """
