"""The built-in lesion segmenters: ``unet`` (the fast baseline) and ``maskrcnn`` (paper 002's, ROI
heads only), registered through the same hook as a plugin's (docs/segmentation.md)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from dermbench.components import Component
from dermbench.hookspecs import hookimpl
from dermbench.plugins.contract import SegmentContext
from dermbench.plugins.options import option


@dataclass(frozen=True)
class UNetOptions:
    base: int = option(16, "channels at the top level, doubling at each of the lower ones")
    depth: int = option(3, "poolings (the input size must divide by 2**depth)")


@dataclass(frozen=True)
class MaskRCNNOptions:
    score_threshold: float = option(0.5, "instances scored at least this form the predicted mask")


def _settings(ctx: SegmentContext, default_lr: float, default_epochs: int) -> Any:
    from dermbench.segmentation.train import TrainSettings

    epochs = ctx.epochs or default_epochs
    return TrainSettings(epochs, ctx.batch_size, ctx.lr or default_lr, ctx.seed, ctx.device, ctx.checkpoint)


def _recorded(settings: Any) -> dict[str, Any]:
    """The training settings as the record gives them (where the checkpoint lies is not one)."""
    return {k: v for k, v in asdict(settings).items() if k != "checkpoint"}


class UNetSegmenter:
    def __init__(self, options: UNetOptions, ctx: SegmentContext) -> None:
        from dermbench.segmentation.unet import UNet

        self.settings = _settings(ctx, 1e-3, 10)
        self.model = UNet(options.base, options.depth)
        self.resolved = {"init": "random", "optimizer": "adam", **asdict(options), **_recorded(self.settings)}

    def fit(self, images: np.ndarray, masks: np.ndarray) -> list[dict]:
        from dermbench.segmentation.train import train_unet

        return train_unet(self.model, images, masks, self.settings)

    def predict(self, images: np.ndarray) -> np.ndarray:
        from dermbench.segmentation.train import predict_unet

        return predict_unet(self.model, images, device=self.settings.device)


class MaskRCNNSegmenter:
    def __init__(self, options: MaskRCNNOptions, ctx: SegmentContext) -> None:
        from dermbench.segmentation.maskrcnn import build_maskrcnn

        self.settings = _settings(ctx, 5e-3, 5)  # paper 002: five epochs
        self.model, init = build_maskrcnn(ctx.image_size, ctx.init)
        self.threshold = options.score_threshold
        self.resolved = {**init, "optimizer": "sgd", "trained": "roi_heads only", **asdict(options),
                         **_recorded(self.settings)}  # fmt: skip

    def fit(self, images: np.ndarray, masks: np.ndarray) -> list[dict]:
        from dermbench.segmentation.train import train_maskrcnn

        return train_maskrcnn(self.model, images, masks, self.settings)

    def predict(self, images: np.ndarray) -> np.ndarray:
        from dermbench.segmentation.train import predict_maskrcnn

        return predict_maskrcnn(
            self.model, images, device=self.settings.device, score_threshold=self.threshold
        )


@hookimpl
def dermbench_register_segmenters(register):
    register(
        Component(
            "unet", UNetSegmenter, "U-Net (Ronneberger et al., 2015), BCE + Dice, Adam", options=UNetOptions
        )
    )
    register(
        Component(
            "maskrcnn", MaskRCNNSegmenter, "Mask R-CNN (He et al., 2017), ROI heads fine-tuned (paper 002)",
            options=MaskRCNNOptions,
        )
    )  # fmt: skip
