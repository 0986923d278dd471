"""Built-in optimizers and learning-rate schedules."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

from dermbench.components import Component
from dermbench.errors import ConfigError
from dermbench.hookspecs import hookimpl
from dermbench.plugins.contract import OptimContext
from dermbench.plugins.options import option


@dataclass(frozen=True)
class AdamOptions:
    lr: float = 1e-3
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999


@dataclass(frozen=True)
class SGDOptions:
    lr: float = 1e-2
    weight_decay: float = 0.0
    momentum: float = 0.9
    nesterov: bool = False


def _groups(params: Any, lr: float, weight_decay: float) -> list[dict]:
    """Accept a model's parameters or ready param groups (differential learning rates)."""
    params = list(params)
    if params and isinstance(params[0], dict):
        return [{"lr": lr, "weight_decay": weight_decay, **g} for g in params]
    return [{"params": params, "lr": lr, "weight_decay": weight_decay}]


def _lr(options: Any, ctx: OptimContext) -> tuple[float, float]:
    """The run's --lr / --weight-decay win over the component's defaults when they are set."""
    lr = ctx.lr if ctx.lr is not None else options.lr
    wd = ctx.weight_decay if ctx.weight_decay is not None else options.weight_decay
    return lr, wd


def make_adam(options: AdamOptions, params: Any, ctx: OptimContext) -> torch.optim.Optimizer:
    import torch

    lr, wd = _lr(options, ctx)
    return torch.optim.Adam(_groups(params, lr, wd), lr=lr, betas=(options.beta1, options.beta2))


def make_adamw(options: AdamOptions, params: Any, ctx: OptimContext) -> torch.optim.Optimizer:
    import torch

    lr, wd = _lr(options, ctx)
    return torch.optim.AdamW(_groups(params, lr, wd), lr=lr, betas=(options.beta1, options.beta2))


def make_sgd(options: SGDOptions, params: Any, ctx: OptimContext) -> torch.optim.Optimizer:
    import torch

    lr, wd = _lr(options, ctx)
    return torch.optim.SGD(
        _groups(params, lr, wd), lr=lr, momentum=options.momentum, nesterov=options.nesterov
    )


@dataclass(frozen=True)
class ScheduleFreeOptions:
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 0
    beta1: float = 0.9


def make_adamw_schedulefree(options: ScheduleFreeOptions, params: Any, ctx: OptimContext) -> Any:
    """AdamW Schedule-Free (Defazio et al., "The Road Less Scheduled", 2024).

    Needs ``optimizer.train()`` / ``optimizer.eval()`` around training and evaluation, which the
    supervised stage calls when the optimizer has them.
    """
    import schedulefree

    lr, wd = _lr(options, ctx)
    return schedulefree.AdamWScheduleFree(
        _groups(params, lr, wd),
        lr=lr,
        weight_decay=wd,
        warmup_steps=options.warmup_steps,
        betas=(options.beta1, 0.999),
    )


@dataclass(frozen=True)
class StepOptions:
    step_size: int = 30
    gamma: float = 0.1


@dataclass(frozen=True)
class CosineOptions:
    eta_min: float = 0.0
    t_max: int | None = None  # None: the stage's epochs


def make_step(options: StepOptions, optimizer: torch.optim.Optimizer, ctx: OptimContext) -> Any:
    import torch

    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=options.step_size, gamma=options.gamma)


def make_cosine(options: CosineOptions, optimizer: torch.optim.Optimizer, ctx: OptimContext) -> Any:
    import torch

    t_max = options.t_max or max(ctx.epochs, 1)
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=t_max, eta_min=options.eta_min)


@dataclass(frozen=True)
class MultiStepOptions:
    milestones: tuple[float, ...] = option(
        (0.5, 0.75), "fractions of the stage's epochs at which lr is multiplied by gamma"
    )
    gamma: float = option(0.1, "the factor at each milestone")


def multistep_milestones(fractions: tuple[float, ...], epochs: int) -> list[int]:
    """The epochs (counted from 0) at which the rate drops, as ``MultiStepLR(milestones=[f * epochs])``
    applies them: a milestone that is not a whole epoch (7.5 of 10) is never reached, so it drops
    nothing. This is how MedMNIST's experiments script (``milestones = [0.5 * num_epochs, 0.75 *
    num_epochs]``) behaves: at 10 epochs it decays once, at epoch 5; at 100, at 50 and 75."""
    return sorted({int(m) for f in fractions if float(m := f * epochs).is_integer()})


def make_multistep(options: MultiStepOptions, optimizer: torch.optim.Optimizer, ctx: OptimContext) -> Any:
    import torch

    if any(not 0 < f <= 1 for f in options.milestones):
        raise ConfigError(
            f"scheduler multistep: milestones must be fractions in (0, 1], got {options.milestones}"
        )
    milestones = multistep_milestones(tuple(options.milestones), max(ctx.epochs, 1))
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=options.gamma)


MONITORS = {"val_loss": "min", "val_macro_f1": "max", "val_accuracy": "max"}


@dataclass(frozen=True)
class PlateauOptions:
    monitor: str = "val_loss"  # the history row's value watched: val_loss | val_macro_f1 | val_accuracy
    factor: float = 0.1
    patience: int = 10  # epochs without improvement before the lr drops
    min_lr: float = 0.0
    threshold: float = 1e-4  # relative improvement that counts


class PlateauScheduler:
    """``torch.optim.lr_scheduler.ReduceLROnPlateau`` on one value of the epoch's history row.

    ``monitor`` tells the supervised stage to step it after validation with ``row[monitor]``
    instead of once per epoch without a value."""

    def __init__(self, optimizer: Any, options: PlateauOptions) -> None:
        import torch

        if options.monitor not in MONITORS:
            raise ConfigError(
                f"scheduler plateau: option monitor must be one of {', '.join(MONITORS)}, got {options.monitor!r}"
            )
        self.monitor = options.monitor
        self._inner = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode=MONITORS[options.monitor], factor=options.factor, patience=options.patience,
            threshold=options.threshold, min_lr=options.min_lr,
        )  # fmt: skip

    def step(self, value: float) -> None:
        self._inner.step(value)

    def state_dict(self) -> dict:
        return self._inner.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self._inner.load_state_dict(state)


def make_plateau(options: PlateauOptions, optimizer: Any, ctx: OptimContext) -> PlateauScheduler:
    return PlateauScheduler(optimizer, options)


@hookimpl
def dermbench_register_optimizers(register):
    register(Component("adam", make_adam, "Adam (Kingma & Ba, 2015)", options=AdamOptions))
    register(Component("adamw", make_adamw, "AdamW (Loshchilov & Hutter, 2019)", options=AdamOptions))
    register(Component("sgd", make_sgd, "SGD with momentum", options=SGDOptions))
    register(
        Component(
            "adamw_schedulefree",
            make_adamw_schedulefree,
            "AdamW Schedule-Free (Defazio et al., 2024)",
            options=ScheduleFreeOptions,
        )
    )


@hookimpl
def dermbench_register_schedulers(register):
    register(
        Component("step", make_step, "Step decay: lr x gamma every step_size epochs", options=StepOptions)
    )
    register(
        Component("cosine", make_cosine, "Cosine annealing over the stage's epochs", options=CosineOptions)
    )
    register(
        Component(
            "multistep",
            make_multistep,
            "Multi-step decay: lr x gamma at fractions of the epochs (MedMNIST's)",
            options=MultiStepOptions,
        )  # fmt: skip
    )
    register(
        Component(
            "plateau",
            make_plateau,
            "Reduce on plateau: lr x factor after patience epochs without improvement of a validation value",
            options=PlateauOptions,
        )
    )
