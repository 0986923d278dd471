"""Built-in training stage: supervised training with validation, checkpoints and early stopping."""

from typing import Any

from dermbench.components import Component
from dermbench.hookspecs import hookimpl
from dermbench.stages.supervised import SupervisedOptions, run_supervised


@hookimpl
def dermbench_register_stages(register: Any) -> None:
    register(
        Component(
            "supervised",
            run_supervised,
            "Supervised training with per-epoch validation, checkpoints and early stopping",
            options=SupervisedOptions,
        )
    )
