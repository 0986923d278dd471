"""Built-in explainer and predictor: Grad-CAM++ and test-time augmentation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dermbench.components import Component
from dermbench.hookspecs import hookimpl
from dermbench.plugins.contract import ExplainerContext, PredictorContext


@dataclass(frozen=True)
class GradCAMPPOptions:
    keep: float = 0.25  # fraction of CAM values kept by the sharpening (Rumale et al.: top 25%)
    target_layer: str = ""  # empty: the last convolutional stage, found automatically
    batch_size: int = 16


def make_gradcampp(options: GradCAMPPOptions, ctx: ExplainerContext) -> Any:
    """``explain(model, images_uint8, targets, out_dir, names) -> list[Path]``."""
    from dermbench.explain.gradcam import explain_images
    from dermbench.stages.device import input_stats

    def explain(model: Any, images: Any, targets: Any, out_dir: Any, names: Any) -> Any:
        mean, std = input_stats(model)  # fed as in training
        return explain_images(
            model,
            images,
            targets,
            out_dir,
            names,
            batch_size=options.batch_size,
            mean=mean,
            std=std,
            target_layer=options.target_layer or None,
            keep=options.keep,
        )

    return explain


@dataclass(frozen=True)
class TTAOptions:
    mode: str = "flips"  # flips | flips_rot90


def make_tta(options: TTAOptions, ctx: PredictorContext) -> Any:
    """``predict(model, images_float_nchw, batch_size) -> probabilities`` averaged over views."""
    from dermbench.predict.tta import tta_predict, tta_views

    tta_views(options.mode)  # refuse an unknown mode now, not at prediction time

    def predict(model: Any, images: Any, batch_size: int) -> Any:
        return tta_predict(model, images, mode=options.mode, batch_size=batch_size)

    return predict


@hookimpl
def dermbench_register_explainers(register):
    register(
        Component(
            "gradcampp",
            make_gradcampp,
            "Grad-CAM++ on the last convolutional stage, top-25% sharpening, overlay PNGs",
            options=GradCAMPPOptions,
            paper="Chattopadhay et al., Grad-CAM++, WACV 2018; sharpening of Rumale et al.",
        )
    )


@hookimpl
def dermbench_register_predictors(register):
    register(
        Component(
            "tta", make_tta, "Test-time augmentation: probabilities averaged over flips", options=TTAOptions
        )
    )
