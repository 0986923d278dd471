"""Built-in batch transforms: Mixup and CutMix (``--opt stage.batch_transform=mixup``)."""

from __future__ import annotations

from typing import Any

from dermbench.components import Component
from dermbench.hookspecs import hookimpl
from dermbench.stages.options import CutMixOptions, MixupOptions


def make_mixup(options: MixupOptions, ctx: Any) -> Any:
    from dermbench.stages.batch_mix import make_mixup as make  # torch, when a run needs it

    return make(options, ctx)


def make_cutmix(options: CutMixOptions, ctx: Any) -> Any:
    from dermbench.stages.batch_mix import make_cutmix as make

    return make(options, ctx)


@hookimpl
def dermbench_register_batch_transforms(register: Any) -> None:
    register(
        Component(
            "mixup",
            make_mixup,
            "Mixup: convex combinations of image pairs and of their losses",
            options=MixupOptions,
            paper="Zhang et al., mixup: Beyond Empirical Risk Minimization, ICLR 2018",
        )
    )
    register(
        Component(
            "cutmix",
            make_cutmix,
            "CutMix: a box pasted from another image, the losses weighted by area",
            options=CutMixOptions,
            paper="Yun et al., CutMix, ICCV 2019",
        )
    )
