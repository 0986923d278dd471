"""Methods of Rumale et al., "Recall-Oriented Deep Learning Framework for Skin Cancer Detection
with Explainability and Fairness Analysis".

The paper's pipeline, in the order of its ablation (Table 4):

1. ``recall_baseline``: ResNet50 (ImageNet), dropout-0.4 linear head, Adam, cross-entropy;
2. ``recall_dlr``: + differential learning rates (earlier layers lower) and cosine annealing;
3. ``recall_ls``: + label smoothing and class-weighted cross-entropy;
4. the recall-constrained threshold: applied by the harness to every run of the ``binary``
   task (grid 0.02 on validation, max F1 subject to recall >= 0.85), reported as
   ``metrics.<split>.operating_point`` next to the argmax metrics;
5. ``recall_resnet``: + 3-fold cross-validation ensemble and test-time augmentation: the full
   pipeline.

Where the paper is silent, the choices below are those its field would expect (recorded in
each method's ``notes``): learning rate 1e-4 for the head and 1e-5 (x0.1) for the backbone,
weight decay 1e-4, label smoothing 0.1, inverse-frequency class weights, at most 50 epochs
under early stopping on validation loss with patience 7, rotations up to +-30 degrees.
"""

from __future__ import annotations

from dermbench.components import Method, Ref, StageRecipe, SweepPreset
from dermbench.hookspecs import hookimpl

PAPER = (
    "Rumale et al., Recall-Oriented Deep Learning Framework for Skin Cancer Detection with "
    "Explainability and Fairness Analysis"
)

# The paper's protocol (Section "Preprocessing", "Training", "Implementation details").
PAPER_PROFILE = {
    "model": "resnet50.tv_in1k",  # torchvision's ImageNet weights, as a PyTorch ResNet50 would have had
    "init": "imagenet",
    "image_size": 299,
    "batch_size": 32,
    "epochs": 50,
    "early_stopping": 7,
    "select": "val_loss",
    "augment": "standard",
    "options": {"model.drop_rate": 0.4},
}

NOTES = (
    "Paper: ResNet50 (ImageNet), dropout 0.4 + linear head, 299 px, ImageNet normalisation, "
    "(here torchvision's weights: timm's resnet50.tv_in1k, fed their own ImageNet statistics), "
    "rotation/flips/colour jitter/random erasing, Adam with weight decay, batch 32, early stopping on "
    "validation loss (patience 7), best checkpoint kept. Not stated, chosen here: head lr 1e-4, "
    "layer-wise rates over ResNet's blocks geometric from x0.1 (stem and layer1) to x1 (the head), as fastai's "
    "discriminative learning rates slice(lr/10, lr), weight decay 1e-4, label smoothing 0.1, class weights N/(K n_c), max 50 epochs, "
    "rotation range +-30 degrees."
)


def _stage(*, dlr: bool, smoothing: bool) -> StageRecipe:
    return StageRecipe(
        name="train",
        runner="supervised",
        loss=Ref("ce", {"label_smoothing": 0.1, "class_weights": "inverse"} if smoothing else {}),
        optimizer=Ref("adam", {"lr": 1e-4, "weight_decay": 1e-4}),
        scheduler=Ref("cosine") if dlr else None,
        options={"layer_lr_min_scale": 0.1} if dlr else {},
    )


def _method(name: str, summary: str, stage: StageRecipe, **always: object) -> Method:
    """``always``: settings that make the method what it is (the ensemble), under every profile."""
    return Method(
        name=name,
        summary=summary,
        stages=(stage,),
        paper=PAPER,
        notes=NOTES,
        profiles={
            "paper": {**PAPER_PROFILE, **always},
            "uniform": {"select": "val_loss", "early_stopping": 7, **always},
            "quick": dict(always),
            "smoke": dict(always),
        },
    )


METHODS = (
    _method(
        "recall_baseline",
        "ResNet50 + dropout head, Adam, cross-entropy (ablation step 1)",
        _stage(dlr=False, smoothing=False),
    ),
    _method(
        "recall_dlr",
        "+ differential learning rates and cosine annealing (ablation step 2)",
        _stage(dlr=True, smoothing=False),
    ),
    _method(
        "recall_ls",
        "+ label smoothing and class-weighted cross-entropy (ablation step 3)",
        _stage(dlr=True, smoothing=True),
    ),
    _method(
        "recall_cv",
        "+ 3-fold CV ensemble, no TTA (ablation step 5; step 4 is the operating point of recall_ls)",
        _stage(dlr=True, smoothing=True),
        ensemble="cv3",
    ),
    _method(
        "recall_resnet",
        "Full recall-oriented pipeline: + 3-fold CV ensemble and flip TTA (ablation step 6)",
        _stage(dlr=True, smoothing=True),
        ensemble="cv3",
        tta="flips",
    ),
)


@hookimpl
def dermbench_register_methods(register):
    register(METHODS)


ABLATION = SweepPreset(
    name="ablation004",
    summary="The ablation ladder of Rumale et al. (Table 4) on the binary task",
    tasks=("binary",),
    methods=tuple(m.name for m in METHODS),
    columns=(
        "macro_auc",
        "per_class.malignant.recall",
        "per_class.malignant.f1",
        "operating_point.threshold",
        "operating_point.recall",
        "operating_point.precision",
        "operating_point.f1",
        "operating_point.fn",
        "operating_point.fp",
    ),
    paper=PAPER,
)


@hookimpl
def dermbench_register_sweeps(register):
    register(ABLATION)
