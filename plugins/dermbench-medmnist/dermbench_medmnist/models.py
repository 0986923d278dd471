"""ResNet-18 and ResNet-50 as MedMNIST's experiments code builds them (``MedMNIST2D/models.py``).

At 28 px the official models are the CIFAR-style ResNets of kuangliu/pytorch-cifar: a 3 x 3,
stride-1 first convolution and no max-pool, so that layer 1 works at 28 x 28 and layer 4 at
4 x 4. That network is torchvision's ResNet with those two layers of the stem changed, which is how
it is built here (the same layers and parameter counts). ``stem``:

- ``auto`` (the default): the CIFAR stem at 28 px, torchvision's standard stem (7 x 7, stride 2,
  max-pool) at 64 px and above (MedMNIST+ sizes);
- ``cifar``: the CIFAR stem at every size, which is what the experiments script itself does
  unless it resizes the 28 px images to 224 (``--resize``), so ``stem=cifar`` reproduces its
  MedMNIST+ runs exactly;
- ``torchvision``: the standard stem at every size (the script's ``--resize`` model).

Inputs are normalised as the script normalises them: ``ToTensor`` then ``Normalize(mean=.5,
std=.5)``, recorded through the model's ``pretrained_cfg``. The protocol trains from random
weights; ``--init PATH`` loads a state dict of this model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dermbench.components import Component
from dermbench.errors import ConfigError
from dermbench.models.weights_io import load_tensors
from dermbench.plugins.contract import ModelContext
from dermbench.plugins.options import option

STEMS = ("auto", "cifar", "torchvision")
NORMALISATION = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}


@dataclass(frozen=True)
class MedmnistResNetOptions:
    stem: str = option("auto", "auto (CIFAR stem at 28 px, standard above) | cifar | torchvision")


def stem_for(stem: str, image_size: int) -> str:
    if stem not in STEMS:
        raise ConfigError(f"model option stem must be one of {', '.join(STEMS)}, got {stem!r}")
    if stem == "auto":
        return "cifar" if image_size < 64 else "torchvision"
    return stem


def _wrapper() -> type:
    from torch import nn

    class MedmnistResNet(nn.Module):
        """A torchvision ResNet whose classifier the core finds, fed MedMNIST's normalisation."""

        def __init__(self, net: nn.Module, stem: str) -> None:
            super().__init__()
            self.net, self.stem = net, stem
            self.pretrained_cfg = dict(
                NORMALISATION, source="MedMNIST experiments (Normalize(mean=.5, std=.5))"
            )

        def forward(self, x: Any) -> Any:
            return self.net(x)

        def get_classifier(self) -> nn.Module:
            return self.net.fc

    return MedmnistResNet


def build_resnet(arch: str, num_classes: int, image_size: int, stem: str) -> Any:
    import torchvision
    from torch import nn

    net = getattr(torchvision.models, arch)(weights=None, num_classes=num_classes)
    chosen = stem_for(stem, image_size)
    if chosen == "cifar":
        net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    return _wrapper()(net, chosen)


def _factory(arch: str) -> Any:
    def make(options: MedmnistResNetOptions, ctx: ModelContext) -> Any:

        if ctx.in_chans != 3:
            raise ConfigError(f"medmnist_{arch}: takes 3-channel images (as_rgb), got {ctx.in_chans}")
        model = build_resnet(arch, ctx.num_classes, ctx.image_size, options.stem)
        if ctx.init == "imagenet":
            raise ConfigError(
                f"medmnist_{arch}: MedMNIST's protocol trains from random weights: use --init random"
            )
        if ctx.init not in ("random", ""):
            path = Path(ctx.init)
            if not path.is_file():
                raise ConfigError(f"--init {ctx.init}: no such weights file")
            model.load_state_dict(load_tensors(path, "--init"))
        return model

    return make


MODELS = tuple(
    Component(
        f"medmnist_{arch}",
        _factory(arch),
        f"{arch} as MedMNIST's experiments build it (CIFAR stem at 28 px)",
        options=MedmnistResNetOptions,
        paper="He et al., Deep Residual Learning, CVPR 2016; the stem of kuangliu/pytorch-cifar",
    )  # fmt: skip
    for arch in ("resnet18", "resnet50")
)
