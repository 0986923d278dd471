"""Block maps: a backbone cut into the blocks a frozen-block schedule unfreezes, top first.

Block 0 is always the classifier (the "head"); blocks 1, 2, ... go down the network. Modules in
no block (the stem, and whatever a map leaves below its last block) never train under a
schedule. Built-in maps follow Nedelcu et al. (Section III-D, "Challenges on Real-World Skin
Lesion Classification: Comparing Fine-tuning Strategies for Domain Adaptation"):

- EfficientNet (``efficientnet_b*``, ``tf_efficientnet_b*``): the head and 6 modules, the top
  one being the last block stage with the final 1x1 convolution (``blocks.6`` + ``conv_head``),
  then ``blocks.5`` ... ``blocks.1``; the stem and ``blocks.0`` stay frozen;
- ResNet (``resnet*``): the head and its 4 modules, ``layer4`` ... ``layer1``;
- MobileNetV2 (``mobilenetv2_*``): the head and blocks A-D of the paper, in the usual numbering of
  the inverted-residual blocks (0-16): A = block 16 (``blocks.6``, with ``conv_head``),
  B = 13-15 (``blocks.5``), C = 10-12 (``blocks.4``), D = 6-9 (``blocks.3``);
- any other timm model: its feature stages (``group_matcher(coarse=True)``), top first.

``blocks="layer4,layer3+layer2"`` names a map by hand: blocks separated by commas, the modules
of one block joined by ``+``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from torch import nn

from dermbench.errors import ConfigError
from dermbench.models.parts import classifier_param_ids, stage_param_names

HEAD = "head"

# model-name pattern -> blocks below the head, top first; each block a list of module names
BUILTIN_MAPS: tuple[tuple[str, tuple[tuple[str, ...], ...]], ...] = (
    (
        r"(tf_)?efficientnet_b\d",
        (
            ("blocks.6", "conv_head", "bn2"),
            ("blocks.5",),
            ("blocks.4",),
            ("blocks.3",),
            ("blocks.2",),
            ("blocks.1",),
        ),
    ),
    (r"resnet\d+", (("layer4",), ("layer3",), ("layer2",), ("layer1",))),
    (r"mobilenetv2_\d+", (("blocks.6", "conv_head", "bn2"), ("blocks.5",), ("blocks.4",), ("blocks.3",))),
)
MOBILENET_NAMES = ("A", "B", "C", "D")


@dataclass(frozen=True)
class Block:
    name: str
    params: frozenset[str]  # parameter names (model.named_parameters())


def _family(model_name: str) -> tuple[str, tuple[tuple[str, ...], ...]] | None:
    arch = model_name.split(".", 1)[0]  # "resnet50.tv_in1k" -> "resnet50"
    for pattern, blocks in BUILTIN_MAPS:
        if re.fullmatch(pattern, arch):
            return pattern, blocks
    return None


def _module_params(model: nn.Module, module: str, where: str) -> set[str]:
    names = {n for n, _ in model.named_parameters() if n == module or n.startswith(module + ".")}
    if not names:
        raise ConfigError(f"{where}: model {type(model).__name__} has no module {module!r} with parameters")
    return names


def _named(
    model: nn.Module, groups: tuple[tuple[str, ...], ...], labels: tuple[str, ...], where: str
) -> list[Block]:
    return [
        Block(label, frozenset(n for m in group for n in _module_params(model, m, where)))
        for label, group in zip(labels, groups, strict=True)
    ]


def parse_block_spec(spec: str) -> tuple[tuple[str, ...], ...]:
    """``"layer4,layer3+layer2"`` -> ``(("layer4",), ("layer3", "layer2"))``."""
    groups = tuple(tuple(m.strip() for m in part.split("+") if m.strip()) for part in spec.split(","))
    if not groups or any(not g for g in groups):
        raise ConfigError(f"stage option blocks: expected MODULE[+MODULE],... top first, got {spec!r}")
    return groups


def block_map(model: nn.Module, model_name: str, spec: str = "auto") -> list[Block]:
    """The head then the backbone's blocks, top first (see the module docs for ``spec``)."""
    where = f"stage option blocks={spec!r}"
    head = Block(
        HEAD, frozenset(n for n, p in model.named_parameters() if id(p) in classifier_param_ids(model))
    )
    if spec not in ("auto", "stages"):
        groups = parse_block_spec(spec)
        return [head, *_named(model, groups, tuple("+".join(g) for g in groups), where)]
    family = _family(model_name) if spec == "auto" else None
    if family is not None:
        pattern, groups = family
        labels = MOBILENET_NAMES if pattern.startswith("mobilenet") else tuple(g[0] for g in groups)
        return [head, *_named(model, groups, labels, f"block map of {model_name}")]
    stages = stage_param_names(model)  # input to output; the last one holds the final norm and head
    blocks = [Block(f"stage{i}", frozenset(names) - head.params) for i, names in enumerate(stages)]
    return [head, *reversed(blocks)]


def trainable_at(blocks: list[Block], epoch: int, every: int) -> list[Block]:
    """The blocks that train in ``epoch`` (1-based): the head alone for ``every`` epochs, then one
    more block from the top every ``every`` epochs, until all of the map trains."""
    if every < 1:
        raise ConfigError(f"stage option unfreeze_every must be >= 1, got {every}")
    return blocks[: min(len(blocks), 1 + (epoch - 1) // every)]


def set_trainable(model: nn.Module, blocks: list[Block]) -> int:
    """Only the parameters of ``blocks`` train; batch-norm layers wholly frozen keep their running
    statistics (eval mode, as a frozen layer is in the usual frozen-block practice). The number of
    trainable parameters."""
    names = set().union(*(b.params for b in blocks)) if blocks else set()
    count = 0
    for name, p in model.named_parameters():
        p.requires_grad_(name in names)
        count += p.numel() if name in names else 0
    return count


def freeze_frozen_norms(model: nn.Module) -> None:
    """Batch-norm layers whose parameters do not train stop updating their statistics."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            params = list(module.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                module.eval()
