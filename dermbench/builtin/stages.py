"""Built-in training stages."""

from dermbench.components import Component
from dermbench.hookspecs import hookimpl
from dermbench.training import SupervisedOptions, run_supervised


@hookimpl
def dermbench_register_stages(register):
    register(
        Component(
            "supervised",
            run_supervised,
            "Supervised training with per-epoch validation, checkpoints and early stopping",
            options=SupervisedOptions,
        )
    )
