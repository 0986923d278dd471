"""Built-in training stages: supervised training with validation, checkpoints and early stopping,
and self-supervised VAE pretraining of a ConvNeXt encoder on images without labels."""

from typing import Any

from dermbench.components import Component
from dermbench.hookspecs import hookimpl
from dermbench.stages.options import SupervisedOptions, VAEPretrainOptions

VAE_PAPER = (
    "Matas et al., Mitigating Overfitting in Medical Imaging: Self-Supervised Pretraining vs. "
    "ImageNet Transfer Learning for Dermatological Diagnosis"
)


def run_supervised(options: SupervisedOptions, ctx: Any) -> Any:
    from dermbench.stages.supervised import run_supervised as run  # torch, when a run needs it

    return run(options, ctx)


def run_vae_pretrain(options: VAEPretrainOptions, ctx: Any) -> Any:
    from dermbench.stages.pretrain_vae import run_vae_pretrain as run

    return run(options, ctx)


@hookimpl
def dermbench_register_stages(register: Any) -> None:
    register(
        Component(
            "supervised",
            run_supervised,
            "Supervised training with per-epoch validation, checkpoints and early stopping",
            options=SupervisedOptions,
        )
    )
    register(
        Component(
            "vae_pretrain",
            run_vae_pretrain,
            "Self-supervised ConvNeXt VAE pretraining (ELBO, KL warm-up) on unlabelled training images; "
            "the encoder becomes the backbone",
            options=VAEPretrainOptions,
            paper=VAE_PAPER,
        )
    )
