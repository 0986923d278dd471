"""AlexNet and SqueezeNet 1.1 from torchvision (timm has neither), with a classifier the core can find.

Each is wrapped so that ``get_classifier()`` names its last layer (AlexNet's final linear layer,
SqueezeNet's final 1 x 1 convolution), which is replaced for the task's classes. ``--init
imagenet`` loads torchvision's ImageNet weights from the torch hub cache
(``~/.cache/torch/hub/checkpoints``), downloading them where the machine is online; ``--init
PATH`` loads a state dict of the torchvision model (the classifier may have another shape).
AlexNet needs images of at least 63 px.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dermbench.components import Component
from dermbench.errors import ConfigError
from dermbench.models.weights_io import load_tensors
from dermbench.plugins.contract import ModelContext

MIN_SIZE = {"alexnet": 63, "squeezenet1_1": 17}


def _wrapper() -> type:
    """The wrapper class, made on first use so that listing plugins imports no torch."""
    from torch import nn

    class TorchvisionNet(nn.Module):
        def __init__(self, net: nn.Module, head_index: int) -> None:
            super().__init__()
            self.net = net
            self.head_index = head_index

        def forward(self, x: Any) -> Any:
            return self.net(x)

        def get_classifier(self) -> nn.Module:
            return self.net.classifier[self.head_index]

    return TorchvisionNet


def _build(arch: str, num_classes: int, weights: Any) -> Any:
    import torchvision
    from torch import nn

    TorchvisionNet = _wrapper()  # noqa: N806

    net = getattr(torchvision.models, arch)(weights=weights)
    if arch == "alexnet":
        net.classifier[6] = nn.Linear(net.classifier[6].in_features, num_classes)
        return TorchvisionNet(net, 6)
    net.classifier[1] = nn.Conv2d(net.classifier[1].in_channels, num_classes, kernel_size=1)
    return TorchvisionNet(net, 1)


def _imagenet_state(arch: str) -> dict:
    import torchvision

    weights = torchvision.models.get_model_weights(arch).DEFAULT
    try:
        return weights.get_state_dict(progress=False, check_hash=True)
    except Exception as exc:
        raise ConfigError(
            f"cannot load ImageNet weights for {arch!r} ({type(exc).__name__}: {exc}). This machine may be offline: "
            f"on a machine with internet run `python -c \"import torchvision; torchvision.models.{arch}(weights='DEFAULT')\"` "
            f"and copy ~/.cache/torch/hub/checkpoints here, or pass --init PATH"
        ) from None


@dataclass(frozen=True)
class NoModelOptions:
    """torchvision models take no options here."""


def factory(arch: str) -> Any:
    def make(options: NoModelOptions, ctx: ModelContext) -> Any:

        from dermbench.models.build import load_backbone

        if ctx.image_size < MIN_SIZE[arch]:
            raise ConfigError(
                f"model {arch}: images of at least {MIN_SIZE[arch]} px are needed, got {ctx.image_size}"
            )
        model = _build(arch, ctx.num_classes, None)
        if ctx.init == "random":
            return model
        if ctx.init == "imagenet":
            state = {f"net.{k}": v for k, v in _imagenet_state(arch).items()}
        else:
            path = Path(ctx.init)
            if not path.is_file():
                raise ConfigError(
                    f"--init {ctx.init!r}: expected imagenet, random or a weights file that exists"
                )
            state = load_tensors(path, "--init")
            state = {k if k.startswith("net.") else f"net.{k}": v for k, v in state.items()}
        load_backbone(model, state, f"--init {ctx.init}: cannot load these weights into {arch!r}")
        return model

    return make


MODELS = (
    Component(
        "alexnet", factory("alexnet"), "AlexNet (torchvision; Krizhevsky et al., 2012)", NoModelOptions
    ),
    Component(
        "squeezenet1_1",
        factory("squeezenet1_1"),
        "SqueezeNet 1.1 (torchvision; Iandola et al., 2016)",
        NoModelOptions,
    ),
)
