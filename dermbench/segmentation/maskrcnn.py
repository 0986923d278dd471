"""torchvision's Mask R-CNN (He, Gkioxari, Dollar and Girshick, ICCV 2017) for lesion instances, with
paper 002's recipe: the pretrained network kept, only ``roi_heads`` trained.

Lesions are one class (plus background). A binary mask becomes instances by its connected
components (8-connectivity), each with its box; a prediction becomes a binary mask again as the
union of the instances scored >= ``score_threshold`` whose mask probability is >= 0.5.

Weights: COCO weights cannot be downloaded here; ``--init PATH`` names a file (a state dict, or a
checkpoint with a ``model`` entry). Tensors whose shape differs (COCO's 91-class predictors) are
left at their initial values and listed. Without a file the network starts from random weights,
which the record says.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.ndimage import label as connected_components

from dermbench.errors import ConfigError
from dermbench.models.weights_io import load_tensors

NUM_CLASSES = 2  # background, lesion


def build_maskrcnn(min_size: int, init: str | None = None) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Mask R-CNN (ResNet-50 FPN) sized for ``min_size`` px inputs; the init as recorded."""
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    model = maskrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=NUM_CLASSES, min_size=min_size, max_size=min_size
    )
    info: dict[str, Any] = {"init": "random", "skipped": []}
    if init and init != "random":
        path = Path(init)
        if not path.is_file():
            raise ConfigError(
                f"--init {init}: no such weights file; give a Mask R-CNN state dict (e.g. torchvision's "
                "maskrcnn_resnet50_fpn COCO weights, downloaded elsewhere) or --init random"
            )
        state = load_tensors(path, "--init")
        state = state.get("model", state) if isinstance(state, dict) else state
        own = model.state_dict()
        usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
        model.load_state_dict(usable, strict=False)
        info = {"init": str(path), "skipped": sorted(set(own) - set(usable))}
    return model, info


def train_roi_heads_only(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """Freeze everything but ``roi_heads`` (the paper's fine-tuning); the parameters left to train."""
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith("roi_heads."))
    return [p for p in model.parameters() if p.requires_grad]


def instances(mask: np.ndarray) -> dict[str, torch.Tensor]:
    """The Mask R-CNN target of one binary mask: one instance per connected component."""
    labels, n = connected_components(mask, structure=np.ones((3, 3)))
    masks = np.stack([labels == i for i in range(1, n + 1)]) if n else np.zeros((0, *mask.shape), bool)
    boxes = []
    for m in masks:
        ys, xs = np.nonzero(m)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.ones(n, dtype=torch.int64),
        "masks": torch.from_numpy(masks.astype(np.uint8)),
    }


def union_mask(
    output: dict[str, torch.Tensor], shape: tuple[int, int], score_threshold: float = 0.5
) -> np.ndarray:
    """One prediction's instances as a binary mask of the input's ``shape``."""
    keep = output["scores"] >= score_threshold
    if not keep.any():
        return np.zeros(shape, dtype=bool)
    return (output["masks"][keep, 0] >= 0.5).any(dim=0).cpu().numpy()
