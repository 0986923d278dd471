"""Methods of Nedelcu et al., "Challenges on Real-World Skin Lesion Classification: Comparing
Fine-tuning Strategies for Domain Adaptation" (Fig. 1-2, Section III).

Given public data and a small clinical set of one's own (the task's training data), four ways to
train, each a method (the sources are named with ``--chain NAME=PATH``, in order):

- ``seqft``: fine-tune through the chain, ImageNet -> source 1 -> ... -> the target (the paper's
  strategies a-c: a is ``target_only``; b and c are one- and two-source chains), the classifier
  re-initialised at each dataset;
- ``merged``: every source's images, mapped into the task's classes (unmatched classes dropped),
  pooled with the target's training split, trained once (strategy x);
- ``target_only``: ImageNet -> the target (strategy a);
- ``scratch``: random weights, the target alone, every layer training from the first epoch
  (strategy o).

The recipe (Section III-D) of ``seqft``, ``merged`` and ``target_only``, on every dataset: the
frozen-block schedule (the head alone for 3 epochs, then one more block from the top every 3
epochs, with the core's block maps), Adam at lr 1e-4 for the head and 1e-5 for the rest,
cross-entropy, class-stratified batches, the paper's augmentations, 300 px nearest-neighbour
resize in the ``paper`` profile. Choices where the paper is silent: ``NOTES``.
"""

from __future__ import annotations

from dermbench.components import Method, Ref, StageRecipe, SweepPreset
from dermbench.hookspecs import hookimpl

PAPER = (
    "Nedelcu et al., Challenges on Real-World Skin Lesion Classification: Comparing Fine-tuning "
    "Strategies for Domain Adaptation using Deep Learning"
)

EVERY = 3  # epochs per block, Section III-D
EFFNET_B3_BLOCKS = 7  # the head and 6 modules

NOTES = (
    "Paper: EfficientNet-B3 (also ResNet-50, MobileNetV2) from ImageNet; frozen-block training, 3 epochs a block "
    "(EfficientNet-B3: the head and 6 modules; ResNet-50: the head and 4; MobileNetV2: the head and blocks A-D), "
    "lr 1e-4 for the top layer and 1e-5 for the rest, Adam, categorical cross-entropy; stratified batches of "
    "K images (K = the dataset's classes); rotation [1, 30] degrees, horizontal flip, zoom [0, 0.2], width "
    "shift [0, 0.1], brightness [0.2, 0.8]; 300 x 300 nearest-neighbour resize; 80:20 stratified train/test. "
    "Not stated, chosen here: the schedule unfreezes cumulatively from the top (block k trains from epoch "
    "3k + 1 on) and each dataset of a chain starts it afresh with a fresh head and a fresh optimiser; a stage "
    "lasts the run's epochs (paper profile 21 = 7 blocks x 3 for EfficientNet-B3: every block trains for its 3 "
    "epochs); frozen batch-norm layers keep their statistics; the stem (and EfficientNet's blocks.0) never trains. "
    "Sources are mapped into the task's classes through the task file (the paper trains each public set on its "
    "own classes before replacing the head; with mapped labels the head is still re-initialised per dataset, "
    "so the transfer is through the features alone, as in the paper). One batch size for every stage: the "
    "task's K in the paper profile (13 for dermai13), each batch holding every class of the stage's data. The "
    "augmentations are read as an image generator does: rotation drawn in +-[1, 30] degrees, zoom factor in "
    "[0.8, 1.2], shift of up to 10% of the width either way, brightness factor in [0.2, 0.8] as printed "
    "(every training image darkened). dermbench keeps its validation split (70/15/15, lesion-grouped) and "
    "scores the last epoch, as the paper reports after training. scratch trains every layer from epoch 1 at "
    "lr 1e-4 (a frozen random block learns nothing)."
)

RECIPE = {"unfreeze_every": EVERY, "backbone_lr_scale": 0.1, "reset_head": True}
ADAM = Ref("adam", {"lr": 1e-4, "weight_decay": 0.0})
CE = Ref("ce")
STRATIFIED = Ref("class_stratified")


def _stage(name: str, data: str, options: dict) -> StageRecipe:
    return StageRecipe(name=name, loss=CE, optimizer=ADAM, sampler=STRATIFIED, options=options, data=data)


def profiles(init: str, scheduled: bool) -> dict[str, dict]:
    """The paper's protocol and CPU-sized ones; the schedule's pace scales with the epochs."""
    paper_epochs = EFFNET_B3_BLOCKS * EVERY if scheduled else 30
    quick = {"options": {"stage.unfreeze_every": 1}, "lr": 1e-3} if scheduled else {"lr": 1e-3}
    smoke = {"options": {"stage.unfreeze_every": 1}} if scheduled else {}
    return {
        "paper": {
            "model": "efficientnet_b3", "init": init, "image_size": 300, "resize": "nearest",
            "batch_size": 13, "epochs": paper_epochs, "augment": "affine_brightness", "select": "last",
        },
        "uniform": {"init": init, "augment": "affine_brightness", "select": "last"},
        "quick": {
            "model": "resnet18", "init": init, "image_size": 64, "batch_size": 32, "epochs": 6,
            "augment": "affine_brightness", "select": "last", **quick,
        },
        "smoke": {"init": "random", "epochs": 2, "augment": "affine_brightness", **smoke},  # CPU tests: no hub
    }  # fmt: skip


def _method(name: str, summary: str, stages: tuple[StageRecipe, ...], init: str, scheduled: bool) -> Method:
    return Method(name, summary, stages=stages, profiles=profiles(init, scheduled), paper=PAPER, notes=NOTES)


METHODS = (
    _method(
        "seqft",
        "Sequential fine-tuning through the --chain datasets, then the target; frozen blocks, fresh head each",
        (_stage("source", "chain", RECIPE), _stage("target", "target", RECIPE)),
        "imagenet",
        scheduled=True,
    ),
    _method(
        "merged",
        "The --chain datasets mapped into the task and pooled with the target's training split, trained once",
        (_stage("merged", "merged", RECIPE),),
        "imagenet",
        scheduled=True,
    ),
    _method(
        "target_only",
        "The target's training data alone from ImageNet weights, frozen-block schedule",
        (_stage("target", "target", RECIPE),),
        "imagenet",
        scheduled=True,
    ),
    _method(
        "scratch",
        "The target's training data alone from random weights, every layer trained from the start",
        (_stage("target", "target", {}),),
        "random",
        scheduled=False,
    ),
)


@hookimpl
def dermbench_register_methods(register):
    register(METHODS)


STUDY = SweepPreset(
    name="transfer001",
    summary="Sequential fine-tuning vs merged datasets vs target only vs scratch (Nedelcu et al.)",
    tasks=("dermai13",),
    methods=tuple(m.name for m in METHODS),
    columns=("macro_f1", "weighted_f1", "accuracy"),
    paper=PAPER,
)


@hookimpl
def dermbench_register_sweeps(register):
    register(STUDY)
