"""Built-in optimizers and learning-rate schedules."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

from dermbench.components import Component
from dermbench.hookspecs import hookimpl
from dermbench.plugins.contract import OptimContext


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
