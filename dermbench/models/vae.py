"""A variational autoencoder on a timm ConvNeXt encoder, its ELBO and its KL warm-up schedules.

Matas et al., "Mitigating Overfitting in Medical Imaging: Self-Supervised Pretraining vs.
ImageNet Transfer Learning for Dermatological Diagnosis": a randomly initialised ConvNeXt encoder,
256-d heads for mu and log-variance, a decoder built as the encoder's mirror (ConvNeXt blocks,
upsampling where the encoder downsamples), trained on the ELBO with the KL term warmed up.

The encoder is the classifier's backbone as timm builds it with no classifier
(``num_classes=0``): stem, stages, global average pool and the head's LayerNorm, giving the
768-d (ConvNeXt-Tiny) feature vector the classification head later reads. Its state dict loads
into the classification model with only the classifier missing.

Decoder, stage by stage from the deepest: a linear map of z to the deepest feature map
(``C x S/32 x S/32``), then for each encoder stage in reverse its ConvNeXt blocks and a
LayerNorm + 2x2 transposed convolution to the previous stage's width (the mirror of ConvNeXt's
LayerNorm + 2x2 strided downsampling), and last the mirror of the 4x4 patchify stem: LayerNorm +
4x4 transposed convolution to 3 channels, then a sigmoid, so the output is an image in [0, 1]
of the input's size.

ELBO (to minimise): ``sum over pixels of (x_hat - x)^2`` (a Gaussian decoder, up to constants)
plus ``beta_t * KL(q(z|x) || N(0, I))`` summed over the latent, both averaged over the batch.
"""

from __future__ import annotations

import torch
from torch import nn

from dermbench.errors import ConfigError

KL_SCHEDULES = ("linear", "cyclical", "constant")


def kl_weight(
    step: int,
    total_steps: int,
    schedule: str = "linear",
    warmup_fraction: float = 0.5,
    cycles: int = 4,
    cycle_ratio: float = 0.5,
    beta_max: float = 1.0,
) -> float:
    """beta_t at optimiser step ``step`` (0-based) of ``total_steps``.

    ``linear``: rises from 0 to ``beta_max`` over the first ``warmup_fraction`` of the steps, then
    stays (Bowman et al., 2016). ``cyclical``: ``cycles`` repeats of a rise over the first
    ``cycle_ratio`` of each cycle and a plateau (Fu et al., NAACL 2019). ``constant``: ``beta_max``.
    """
    if schedule not in KL_SCHEDULES:
        raise ConfigError(f"kl_schedule must be one of {', '.join(KL_SCHEDULES)}, got {schedule!r}")
    total_steps = max(int(total_steps), 1)
    if schedule == "constant":
        return float(beta_max)
    if schedule == "linear":
        warmup = max(warmup_fraction * total_steps, 1.0)
        return float(beta_max * min(1.0, step / warmup))
    period = total_steps / max(int(cycles), 1)
    tau = (step % period) / period
    return float(beta_max * min(1.0, tau / cycle_ratio))


def elbo_terms(
    x_hat: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reconstruction (summed squared error per image) and KL (summed over the latent), batch means."""
    recon = (x_hat.float() - x.float()).pow(2).flatten(1).sum(1).mean()
    kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)).mean()
    return recon, kl


def check_convnext(model_name: str, encoder: nn.Module) -> None:
    from timm.models.convnext import ConvNeXt

    if not isinstance(encoder, ConvNeXt):
        raise ConfigError(
            f"the VAE decoder mirrors a ConvNeXt encoder; model {model_name!r} is a "
            f"{type(encoder).__name__} (use a timm convnext_* model, e.g. convnext_atto or convnext_tiny)"
        )


def encoder_geometry(encoder: nn.Module) -> tuple[list[int], list[int], list[int]]:
    """Per stage of the encoder: channels, cumulative stride and number of blocks."""
    info = encoder.feature_info
    chans = [int(f["num_chs"]) for f in info]
    strides = [int(f["reduction"]) for f in info]
    depths = [len(stage.blocks) for stage in encoder.stages]
    return chans, strides, depths


def check_image_size(model_name: str, image_size: int, total_stride: int) -> None:
    if image_size % total_stride or image_size < total_stride:
        lower = max(total_stride, image_size // total_stride * total_stride)
        raise ConfigError(
            f"image size {image_size}: the encoder {model_name!r} downsamples by {total_stride}, so the "
            f"decoder can only reconstruct multiples of {total_stride} (e.g. {lower} or {lower + total_stride})"
        )


def _up(in_chs: int, out_chs: int, factor: int) -> nn.Sequential:
    from timm.layers import LayerNorm2d

    return nn.Sequential(LayerNorm2d(in_chs), nn.ConvTranspose2d(in_chs, out_chs, factor, stride=factor))


class ConvNeXtDecoder(nn.Module):
    """The encoder's mirror: z -> deepest map -> (blocks, upsample) per stage in reverse -> image."""

    def __init__(
        self, latent_dim: int, chans: list[int], strides: list[int], depths: list[int], image_size: int,
        max_blocks: int = 0,
    ) -> None:  # fmt: skip
        super().__init__()
        from timm.models.convnext import ConvNeXtBlock

        self.side = image_size // strides[-1]
        self.chans = chans
        self.fc = nn.Linear(latent_dim, chans[-1] * self.side * self.side)
        stages = []
        for i in reversed(range(len(chans))):
            n = depths[i] if max_blocks <= 0 else min(depths[i], max_blocks)
            blocks = [ConvNeXtBlock(chans[i]) for _ in range(n)]
            out_chs, factor = (chans[i - 1], strides[i] // strides[i - 1]) if i > 0 else (3, strides[0])
            stages.append(nn.Sequential(*blocks, _up(chans[i], out_chs, factor)))
        self.stages = nn.Sequential(*stages)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc(z).view(len(z), self.chans[-1], self.side, self.side)
        return torch.sigmoid(self.stages(h))


class ConvNeXtVAE(nn.Module):
    """``encoder`` (a timm ConvNeXt with no classifier) + mu / log-variance heads + mirrored decoder."""

    def __init__(
        self, encoder: nn.Module, model_name: str, image_size: int, latent_dim: int = 256, max_blocks: int = 0
    ) -> None:
        super().__init__()
        check_convnext(model_name, encoder)
        chans, strides, depths = encoder_geometry(encoder)
        check_image_size(model_name, image_size, strides[-1])
        if latent_dim < 1:
            raise ConfigError(f"latent_dim must be >= 1, got {latent_dim}")
        self.encoder = encoder
        features = int(encoder.num_features)
        self.mu = nn.Linear(features, latent_dim)
        self.logvar = nn.Linear(features, latent_dim)
        self.decoder = ConvNeXtDecoder(latent_dim, chans, strides, depths, image_size, max_blocks)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return self.mu(h), self.logvar(h).clamp(-30.0, 20.0)  # exp() stays finite

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """``(x_hat, mu, logvar)``; ``noise`` (standard normal, the latent's shape) makes the draw
        reproducible; None decodes the mean."""
        mu, logvar = self.encode(x)
        z = mu if noise is None else mu + noise * torch.exp(0.5 * logvar)
        return self.decoder(z), mu, logvar


def build_vae(
    model_name: str, image_size: int, latent_dim: int = 256, max_blocks: int = 0, **timm_kwargs: object
) -> ConvNeXtVAE:
    """A randomly initialised ConvNeXt VAE; ``timm_kwargs`` go to the encoder (e.g. ``drop_path_rate``)."""
    import timm

    if not timm.is_model(model_name):
        raise ConfigError(f"unknown model {model_name!r}: the VAE encoder must be a timm convnext_* model")
    encoder = timm.create_model(model_name, pretrained=False, num_classes=0, **timm_kwargs)
    return ConvNeXtVAE(encoder, model_name, image_size, latent_dim, max_blocks)
