"""The plugin contract as code: every context a factory receives, and every factory's signature.

Each component kind has a factory ``Protocol`` (what the core calls the registered factory with)
and, where the factory returns something the core calls in turn, a ``Protocol`` of that product
(a loss, a sampler, a predictor...). ``CONTRACTS`` maps each kind to both. The core builds
components only through :meth:`dermbench.plugins.registry.Registry.build`, which checks the
arguments against the kind's factory protocol before calling, so a core that drifts from this
module fails at once; ``tests/test_contract.py`` also checks every product call by calling real
spies through a real run, and ``docs/plugins.md`` is checked against ``CONTRACTS``.

Contexts are frozen: a factory reads them and returns what it made; nothing is passed back by
writing into a context.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # what annotations name is imported when a signature is first checked, not with
    import numpy as np  # the module: `dermbench --help`, `list` and `show` need no torch, numpy or pandas
    import pandas as pd
    import torch
    from torch import nn

    from dermbench.data.records import DatasetRecords
    from dermbench.data.split_data import SplitData
    from dermbench.tasks import Task

# --- contexts ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelContext:
    """What a model factory knows: the output size, the input size and how to initialise."""

    num_classes: int
    image_size: int
    init: str  # "imagenet" | "random" | a weights file path
    in_chans: int = 3


@dataclass(frozen=True)
class LossContext:
    """``class_counts`` are the training split's counts in the task's class order."""

    num_classes: int
    class_counts: list[int]
    classes: list[str]
    device: str = "cpu"


@dataclass(frozen=True)
class OptimContext:
    """The run's learning rate and weight decay (``None``: the component's default) and the budget."""

    lr: float | None
    weight_decay: float | None
    epochs: int
    steps_per_epoch: int
    batch_size: int = 0  # images per batch (0: unknown); a sampler that builds batches needs it


@dataclass(frozen=True)
class PosthocContext:
    """What a post-hoc step knows of the task: its classes and its decision point, if any."""

    classes: list[str]
    positive_class: str | None = None
    recall_constraint: float | None = None


@dataclass(frozen=True)
class PredictorContext:
    """A predictor runs on ``device``; it returns probabilities over ``classes``."""

    classes: list[str]
    device: str = "cpu"


@dataclass(frozen=True)
class ExplainerContext:
    """An explainer writes its overlays for a model trained on ``classes`` at ``image_size``."""

    classes: list[str]
    image_size: int


@dataclass(frozen=True)
class LaunchContext:
    """Where a sweep's records land (``out``, on the driver), how loudly to say what happens, and
    the driver's ``plugins`` (for a launcher that runs the jobs in the driver's own process)."""

    out: str
    quiet: bool = False
    log: Callable[[str], Any] = print
    plugins: Any = None


@dataclass(frozen=True)
class RunJob:
    """One run of a sweep, as a launcher ships it to a worker (picklable).

    ``cfg`` is the run's resolved ``RunConfig``; ``plugin_extra`` and ``plugin_autoload`` rebuild on
    the worker the plugins the driver had (``load_plugins(plugin_extra, plugin_autoload)``).
    ``workdir`` is the driver's working folder: the worker runs there, so relative paths (``--out``,
    ``--data``) name what they name on the driver. ``sweep_token`` names the marker the driver left in
    its results folder: a worker that cannot see it does not share that folder and refuses the job.
    ``force``: the run starts over, its folder cleared by the worker's first attempt, never earlier.
    """

    index: int
    label: str
    cfg: Any
    plugin_extra: tuple = ()
    plugin_autoload: bool = True
    quiet: bool = True
    workdir: str = ""
    sweep_token: str = ""
    force: bool = False


@dataclass(frozen=True)
class JobOutcome:
    """What came back from a run: its record (None when it failed), the error, and the run
    folder's files (relative path -> bytes, checkpoints left on the worker) so that the record
    lands in the driver's results folder whether or not the workers share its filesystem."""

    index: int
    label: str
    record: dict | None
    error: str | None = None
    files: Mapping[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class BatchContext:
    """A batch transform mixes images of a task with ``num_classes`` classes."""

    num_classes: int


@dataclass(frozen=True)
class StageContext:
    """What a stage runner gets: the model to train in place and everything around it.

    ``history`` holds the rows of earlier stages (and of this one, when resumed); the stage hands
    each new row to ``on_epoch_end`` and returns a :class:`StageResult`. ``resume_state`` is the
    stage's own last checkpoint when the run resumes inside this stage, else ``None``.
    """

    model: nn.Module
    train: SplitData
    val: SplitData
    task: Task
    cfg: Any  # dermbench.run.config.RunConfig
    recipe: Any  # dermbench.components.StageRecipe
    stage_index: int
    registries: Any  # dermbench.plugins.registry.Registries
    device: torch.device
    checkpoint_dir: Path
    seed: int
    history: tuple[dict, ...] = ()
    on_epoch_end: Callable[[dict], None] = lambda row: None
    resume_state: Mapping[str, Any] | None = None
    progress: bool = True
    unlabelled: SplitData | None = None  # images named by --pretrain-data, none from val or test


@dataclass(frozen=True)
class StageResult:
    """What a stage hands back: the epoch whose weights the model now holds, and its new rows."""

    best_epoch: int | None
    history: tuple[dict, ...] = ()
    stopped_early: bool = False
    resolved: Mapping[str, Any] = field(default_factory=dict)  # settings used: lr, loss options...


@dataclass(frozen=True)
class MixedBatch:
    """A batch after a batch transform: the loss is ``sum(w * loss(logits, y) for y, w in targets)``.

    Mixup and CutMix mix each image with another of the batch, so the target is a convex
    combination of two labels; interpolating the loss (as the reference implementations do)
    works with any loss that takes class indices, LDAM and LMF included.
    """

    images: torch.Tensor
    targets: tuple[tuple[torch.Tensor, float], ...]


# --- factory and product signatures ----------------------------------------------------------


class DatasetFactory(Protocol):
    def __call__(self, options: Any, path: str | None, /) -> DatasetRecords: ...


class ModelFactory(Protocol):
    def __call__(self, options: Any, ctx: ModelContext, /) -> nn.Module: ...


class LossFactory(Protocol):
    def __call__(self, options: Any, ctx: LossContext, /) -> nn.Module: ...


class Loss(Protocol):
    def __call__(self, logits: torch.Tensor, targets: torch.Tensor, /) -> torch.Tensor: ...


class OptimizerFactory(Protocol):
    def __call__(self, options: Any, param_groups: list, ctx: OptimContext, /) -> torch.optim.Optimizer: ...


class SchedulerFactory(Protocol):
    def __call__(self, options: Any, optimizer: torch.optim.Optimizer, ctx: OptimContext, /) -> Any: ...


class SamplerFactory(Protocol):
    def __call__(self, options: Any, labels: np.ndarray, ctx: OptimContext, /) -> Sampler: ...


class Sampler(Protocol):
    def epoch_indices(self, seed: int, /) -> np.ndarray: ...


class BatchTransformFactory(Protocol):
    def __call__(self, options: Any, ctx: BatchContext, /) -> BatchTransform: ...


class BatchTransform(Protocol):
    def __call__(
        self, images: torch.Tensor, targets: torch.Tensor, gen: torch.Generator, /
    ) -> MixedBatch: ...


class StageFactory(Protocol):
    def __call__(self, options: Any, ctx: StageContext, /) -> StageResult: ...


class PosthocFactory(Protocol):
    def __call__(self, options: Any, ctx: PosthocContext, /) -> PosthocStep: ...


class PosthocStep(Protocol):
    key: str

    def fit(self, y: np.ndarray, probs: np.ndarray, frame: pd.DataFrame, /) -> Any: ...

    def apply(self, y: np.ndarray, probs: np.ndarray, frame: pd.DataFrame, /) -> dict: ...


class PredictorFactory(Protocol):
    def __call__(self, options: Any, ctx: PredictorContext, /) -> Predictor: ...


class Predictor(Protocol):
    def __call__(self, model: nn.Module, images: torch.Tensor, batch_size: int, /) -> np.ndarray: ...


class ExplainerFactory(Protocol):
    def __call__(self, options: Any, ctx: ExplainerContext, /) -> Explainer: ...


class Explainer(Protocol):
    def __call__(
        self, model: nn.Module, images: np.ndarray, targets: list, out_dir: Path, names: list, /
    ) -> list: ...


class LauncherFactory(Protocol):
    def __call__(self, options: Any, ctx: LaunchContext, /) -> Launcher: ...


class Launcher(Protocol):
    """Runs a sweep's jobs wherever it runs them; ``progress.started(n)`` when jobs leave,
    ``progress.finished(outcome)`` as each comes back; one outcome per job, any order."""

    def launch(self, jobs: Sequence[RunJob], progress: Any, /) -> list[JobOutcome]: ...


@dataclass(frozen=True)
class SegmentContext:
    """What a segmenter knows of its run: the image size, the training budget, the init, the device,
    and where to keep its per-epoch checkpoint so that a killed run resumes."""

    image_size: int
    epochs: int | None  # None: the segmenter's own default
    batch_size: int
    lr: float | None  # None: the segmenter's default
    seed: int
    init: str  # "random" or a weights file
    device: str
    checkpoint: str = ""  # a file to save the state to after each epoch and resume from when present


class SegmenterFactory(Protocol):
    def __call__(self, options: Any, ctx: SegmentContext, /) -> Segmenter: ...


class Segmenter(Protocol):
    """Trained on uint8 images and bool masks; predicts bool masks of the input's size."""

    def fit(self, images: np.ndarray, masks: np.ndarray, /) -> list[dict]: ...

    def predict(self, images: np.ndarray, /) -> np.ndarray: ...


class MetricFactory(Protocol):
    def __call__(self, options: Any, task: Task, /) -> Metric: ...


class Metric(Protocol):
    def __call__(self, y: np.ndarray, probs: np.ndarray, frame: pd.DataFrame, /) -> Any: ...


@dataclass(frozen=True)
class Contract:
    """One component kind: what is registered, how its factory is called, what the core calls."""

    kind: str
    registers: str  # the class handed to ``register``
    factory: type | None = None
    product: type | None = None
    product_method: str = "__call__"
    summary: str = ""


CONTRACTS: dict[str, Contract] = {
    c.kind: c
    for c in (
        Contract("datasets", "Component", DatasetFactory, summary="read a dataset's published layout"),
        Contract("tasks", "Task", summary="label spaces and mappings (or a tasks/*.toml file)"),
        Contract("models", "Component", ModelFactory, summary="architectures beyond timm"),
        Contract("losses", "Component", LossFactory, Loss, summary="training objectives"),
        Contract("optimizers", "Component", OptimizerFactory, summary="optimisers over parameter groups"),
        Contract(
            "schedulers",
            "Component",
            SchedulerFactory,
            summary="lr schedules, stepped once per epoch (with `monitor`: after validation, on that row value)",
        ),
        Contract("samplers", "Component", SamplerFactory, Sampler, "epoch_indices", "the order of an epoch"),
        Contract(
            "batch_transforms", "Component", BatchTransformFactory, BatchTransform, summary="mixing batches"
        ),
        Contract("stages", "Component", StageFactory, summary="a training stage (pretrain, train, finetune)"),
        Contract("posthoc", "Component", PosthocFactory, PosthocStep, "apply", "fit on val, applied to all"),
        Contract("predictors", "Component", PredictorFactory, Predictor, summary="test-time augmentation"),
        Contract("explainers", "Component", ExplainerFactory, Explainer, summary="saliency overlays"),
        Contract("metrics", "Component", MetricFactory, Metric, summary="extra metrics on every split"),
        Contract(
            "launchers", "Component", LauncherFactory, Launcher, "launch", "where a sweep's runs execute"
        ),
        Contract("segmenters", "Component", SegmenterFactory, Segmenter, "predict", "lesion-mask models"),
        Contract("methods", "Method", summary="a recipe naming components and their defaults"),
        Contract("sweeps", "SweepPreset", summary="a named grid of runs"),
    )
}


# --- checking a call against a signature ------------------------------------------------------


class ContractError(AssertionError):
    """The core called a factory or product with arguments its documented signature does not take."""


def signature_of(protocol: type, method: str = "__call__") -> inspect.Signature:
    """The documented signature (without ``self``), with annotations resolved to objects."""
    import numpy as np
    import pandas as pd
    import torch
    from torch import nn

    from dermbench.data.records import DatasetRecords
    from dermbench.data.split_data import SplitData
    from dermbench.tasks import Task

    fn = getattr(protocol, method)
    names = {"torch": torch, "nn": nn, "np": np, "pd": pd, "DatasetRecords": DatasetRecords,
             "SplitData": SplitData, "Task": Task}  # fmt: skip
    hints = typing.get_type_hints(fn, globalns={**getattr(fn, "__globals__", globals()), **names})
    sig = inspect.signature(fn)
    params = [p.replace(annotation=hints.get(p.name, Any)) for p in list(sig.parameters.values())[1:]]
    return sig.replace(parameters=params, return_annotation=hints.get("return", Any))


def describe(protocol: type, method: str = "__call__") -> str:
    """``factory(options, ctx: LossContext) -> Module``: the form ``docs/plugins.md`` shows."""
    sig = signature_of(protocol, method)
    args = [
        p.name if p.annotation is Any else f"{p.name}: {_name(p.annotation)}" for p in sig.parameters.values()
    ]
    return f"({', '.join(args)}) -> {_name(sig.return_annotation)}"


def _name(hint: Any) -> str:
    if hint is Any:
        return "Any"
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " | ".join(_name(a) for a in typing.get_args(hint))
    if hint is type(None):
        return "None"
    return getattr(hint, "__name__", str(hint))


def matches(value: Any, hint: Any) -> bool:
    """Whether ``value`` is of the annotated type (generics by their origin, Protocols by shape)."""
    if hint is Any:
        return True
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(matches(value, a) for a in typing.get_args(hint))
    if hint is type(None):
        return value is None
    origin = typing.get_origin(hint) or hint
    if getattr(origin, "_is_protocol", False):
        return True  # a protocol argument is checked where it is called
    return isinstance(value, origin) if isinstance(origin, type) else True


def check_call(protocol: type, args: Sequence[Any], method: str = "__call__") -> list[str]:
    """What is wrong with calling ``protocol.method(*args)``: an empty list when nothing is."""
    sig = signature_of(protocol, method)
    try:
        bound = sig.bind(*args)
    except TypeError as exc:
        return [f"{protocol.__name__}{describe(protocol, method)} cannot take {len(args)} argument(s): {exc}"]
    problems = []
    for name, value in bound.arguments.items():
        hint = sig.parameters[name].annotation
        if not matches(value, hint):
            problems.append(
                f"{protocol.__name__}: argument {name} should be {_name(hint)}, got {type(value).__name__}"
            )
    return problems


def check_factory_call(kind: str, args: Sequence[Any]) -> None:
    """Raise :class:`ContractError` when the core calls a ``kind`` factory against its contract."""
    contract = CONTRACTS[kind]
    if contract.factory is None:
        raise ContractError(f"{kind} are registered as {contract.registers} objects, not built")
    problems = check_call(contract.factory, args)
    if problems:
        raise ContractError(f"core call of a {kind} factory breaks its contract: {'; '.join(problems)}")
