"""Built-in method: empirical risk minimisation, the baseline every method is compared with."""

from dermbench.components import Method, Ref, StageRecipe
from dermbench.hookspecs import hookimpl

ERM = Method(
    name="erm",
    summary="Cross-entropy and Adam: the plain supervised baseline",
    stages=(
        StageRecipe(name="train", runner="supervised", loss=Ref("ce"), optimizer=Ref("adam", {"lr": 1e-3})),
    ),
    notes="Adam lr 1e-3 (1e-4 under the uniform protocol's pretrained backbones), no schedule.",
    profiles={"uniform": {"select": "val_macro_f1"}},
)


@hookimpl
def dermbench_register_methods(register):
    register(ERM)
