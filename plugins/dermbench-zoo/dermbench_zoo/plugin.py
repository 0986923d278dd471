"""Methods of Bilyk et al., "Integrating convolutional neural networks and autoencoders for skin
lesion diagnosis": the classifier zoo of their Table 2, one method per architecture, trained by
one recipe and, in the ``paper`` profile, behind the autoencoder gate (``--gate autoencoder``,
the dermbench core; ``docs/gate.md``).

Recipe (Sections 3.2-3.4, Table 2): Adam at lr 1e-3, batch 16, cross-entropy, early stopping and
reduce-on-plateau on the validation loss, the "moderate" augmentation (light blur with p = 0.3,
rotation up to 5 degrees, shifts, scaling, brightness and contrast: ``--augment blur_affine``).
Choices where the paper is silent: ``NOTES``.
"""

from __future__ import annotations

from dermbench.components import Method, Ref, StageRecipe, SweepPreset
from dermbench.hookspecs import hookimpl
from dermbench_zoo.torchvision_models import MODELS

PAPER = "Bilyk et al., Integrating convolutional neural networks and autoencoders for skin lesion diagnosis"

NOTES = (
    "Paper: ResNet-50, EfficientNet-B0/B5, VGG, AlexNet, SqueezeNet and Inception-v3 on HAM10000, Adam, early "
    "stopping, reduce-on-plateau, batch 8-16 and lr 1e-3 or 1e-4 (Table 2; the best rows use 16 and 1e-3), light "
    "blur (p = 0.3), shifts, rotation up to 5 degrees, scaling, brightness and contrast, SMOTE for the minority "
    "classes, a per-class cap and an ~83/10/7 stratified split, an autoencoder gate at PSNR > 25 dB. Not stated, "
    "chosen here: ImageNet weights (torchvision's where the paper's PyTorch code would have used them: the tv_in1k "
    "tags of ResNet-50, VGG-16 and Inception-v3, torchvision's AlexNet and SqueezeNet 1.1; timm's EfficientNets); "
    "VGG is VGG-16; early stopping patience 5 and the checkpoint of the lowest validation loss; plateau patience 3, "
    "factor 0.1; at most 40 epochs; blur 3 x 3 with sigma 1, shifts up to 5%, scaling 0.95-1.05, brightness and "
    "contrast +-10%; 224 px (299 for Inception-v3); the paper profile's split is 83/10/7, lesion-grouped, of at most "
    "2,000 images a class (the cap's value is not printed: 2,000 keeps every HAM10000 class but nv whole); SMOTE is "
    "--sampler smote, left out of the profile (the paper does not say whether it oversampled before or after the "
    "cap, and it multiplies a CPU run's images several times)."
)

RECIPE = StageRecipe(
    loss=Ref("ce"), optimizer=Ref("adam", {"lr": 1e-3}),
    scheduler=Ref("plateau", {"monitor": "val_loss", "patience": 3, "factor": 0.1}),
)  # fmt: skip
TRAINING = {
    "batch_size": 16,
    "epochs": 40,
    "early_stopping": 5,
    "select": "val_loss",
    "augment": "blur_affine",
}

# method -> (model, paper image size, smallest CPU size the architecture takes)
ZOO = {
    "zoo_resnet50": ("resnet50.tv_in1k", 224, 32),
    "zoo_efficientnet_b0": ("efficientnet_b0", 224, 32),
    "zoo_efficientnet_b5": ("efficientnet_b5", 224, 32),
    "zoo_vgg16": ("vgg16.tv_in1k", 224, 32),
    "zoo_alexnet": ("alexnet", 224, 64),
    "zoo_squeezenet": ("squeezenet1_1", 224, 32),
    "zoo_inception_v3": ("inception_v3.tv_in1k", 299, 96),
}


def profiles(model: str, paper_size: int, cpu_size: int) -> dict[str, dict]:
    return {
        "paper": {"model": model, "init": "imagenet", "image_size": paper_size, "gate": "autoencoder",
                  "split_fractions": (0.83, 0.10, 0.07), "max_per_class": 2000, **TRAINING},
        "uniform": {"model": model, **TRAINING},
        "quick": {"model": model, "init": "random", "image_size": max(64, cpu_size), **TRAINING, "epochs": 8},
        "smoke": {"model": model, "init": "random", "image_size": cpu_size, "epochs": 1, "batch_size": 16,
                  "augment": "blur_affine"},
    }  # fmt: skip


METHODS = tuple(
    Method(name, f"{model.split('.')[0]} with the zoo's recipe (Bilyk et al.)", stages=(RECIPE,),
           profiles=profiles(model, paper, cpu), paper=PAPER, notes=NOTES)
    for name, (model, paper, cpu) in ZOO.items()
)  # fmt: skip


@hookimpl
def dermbench_register_models(register):
    register(MODELS)


@hookimpl
def dermbench_register_methods(register):
    register(METHODS)


STUDY = SweepPreset(
    name="zoo002",
    summary="The classifier zoo of Bilyk et al. on HAM10000 (add --gate autoencoder for the gate)",
    tasks=("ham7",),
    methods=tuple(ZOO),
    columns=("macro_f1", "accuracy", "weighted_f1", "macro_auc"),
    paper=PAPER,
)


@hookimpl
def dermbench_register_sweeps(register):
    register(STUDY)
