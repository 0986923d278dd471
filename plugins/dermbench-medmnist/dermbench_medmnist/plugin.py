"""The MedMNIST benchmark protocol (Yang et al., "MedMNIST v2", Scientific Data 2023) as methods.

``medmnist_resnet18`` and ``medmnist_resnet50`` train as the official experiments script does
(``MedMNIST2D/train_and_eval_pytorch.py``): the network of ``models.py`` (see
``dermbench_medmnist.models``), cross-entropy, Adam at lr 1e-3, ``MultiStepLR`` x0.1 at 50% and 75%
of the epochs (stepped once per epoch; a milestone that is not a whole epoch is never reached, as
in the script: at 10 epochs it decays once, at 5), batch 128, no augmentation, inputs normalised
with mean = std = 0.5, 100 epochs, and the checkpoint of the best validation AUC (the first epoch
that reaches it). ACC and AUC are dermbench's ``accuracy`` and ``macro_auc``: the argmax accuracy
and the mean one-vs-rest AUC over the classes, which is what ``medmnist.Evaluator`` computes
(the tests check it on fixed arrays).

The ``paper`` profile is that protocol at 28 px on the official split, which is what the
``dermamnist`` adapter (``labels.csv`` with a ``split`` column) and the ``medmnist`` adapter
(``dermamnist.npz``, or ``dermamnist_64.npz`` etc. for MedMNIST+, then set ``--image-size``) give.
``--epochs`` changes the count and the milestones scale with it.
"""

from __future__ import annotations

from dermbench.components import Method, Ref, StageRecipe, SweepPreset
from dermbench.hookspecs import hookimpl
from dermbench_medmnist.models import MODELS

PAPER = (
    "Yang et al., MedMNIST v2 - A large-scale lightweight benchmark for 2D and 3D biomedical image "
    "classification, Scientific Data 10:41 (2023)"
)
NOTES = (
    "As the official experiments script (MedMNIST2D/train_and_eval_pytorch.py): ResNet-18/50 with the CIFAR stem at "
    "28 px (3x3 stride-1 conv, no max-pool), random init, cross-entropy, Adam lr 1e-3, MultiStepLR gamma 0.1 at "
    "[0.5, 0.75] x epochs stepped per epoch (a fractional milestone is never reached: 10 epochs decay once, at 5), "
    "batch 128, no augmentation, Normalize(mean=.5, std=.5), 100 epochs, the checkpoint of the highest validation AUC "
    "(strictly higher than the best so far), the official split. Chosen here: at 64 px and above the model option "
    "stem=auto uses torchvision's standard stem; the script keeps the CIFAR stem there unless it resizes to 224, "
    "which --opt model.stem=cifar reproduces. The script evaluates on the .npz arrays; the dermamnist adapter reads "
    "JPEG files of them, whose compression moves pixels by a few levels."
)
RECIPE = StageRecipe(
    loss=Ref("ce"), optimizer=Ref("adam", {"lr": 1e-3}),
    scheduler=Ref("multistep", {"milestones": (0.5, 0.75), "gamma": 0.1}),
)  # fmt: skip
PROTOCOL = {"init": "random", "image_size": 28, "epochs": 100, "batch_size": 128, "augment": "none",
            "select": "val_macro_auc", "early_stopping": None}  # fmt: skip


def profiles(model: str) -> dict[str, dict]:
    return {
        "paper": {"model": model, **PROTOCOL},
        "uniform": {"model": model, **PROTOCOL},
        "quick": {"model": model, **PROTOCOL, "epochs": 10},
        "smoke": {"model": model, **PROTOCOL, "epochs": 1, "batch_size": 32},
    }


METHODS = tuple(
    Method(
        f"medmnist_{arch}",
        f"{arch} by the MedMNIST benchmark protocol (Yang et al.)",
        stages=(RECIPE,),
        profiles=profiles(f"medmnist_{arch}"),
        paper=PAPER,
        notes=NOTES,
    )  # fmt: skip
    for arch in ("resnet18", "resnet50")
)
STUDY = SweepPreset(
    name="medmnist",
    summary="The MedMNIST benchmark's ResNet-18 and ResNet-50 on DermaMNIST (--data dermamnist=PATH)",
    tasks=("ham7",),
    methods=tuple(m.name for m in METHODS),
    columns=("accuracy", "macro_auc", "macro_f1", "balanced_accuracy"),
    paper=PAPER,
)


@hookimpl
def dermbench_register_models(register):
    register(MODELS)


@hookimpl
def dermbench_register_methods(register):
    register(METHODS)


@hookimpl
def dermbench_register_sweeps(register):
    register(STUDY)
