"""Built-in batch transforms: Mixup and CutMix (``--opt stage.batch_transform=mixup``)."""

from __future__ import annotations

from typing import Any

from dermbench.components import Component
from dermbench.hookspecs import hookimpl
from dermbench.stages.batch_mix import CutMixOptions, MixupOptions, make_cutmix, make_mixup


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
