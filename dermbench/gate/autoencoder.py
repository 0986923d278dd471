"""The image-quality gate's model: a convolutional autoencoder trained one-class on lesion images.

Bilyk et al. ("Integrating convolutional neural networks and autoencoders for skin lesion
diagnosis", Section 4.1) train a convolutional autoencoder on mole images with a mean-squared
reconstruction loss and accept an image when the PSNR of its reconstruction exceeds 25 dB: an
image unlike the training images (no lesion, a blank frame, noise) reconstructs badly.

The paper gives no layer list (its Fig. 11 is a schema), so the architecture here is the usual
one, recorded in the options: ``depth`` stride-2 convolutions (4 x 4 kernels, batch norm, ReLU,
``channels`` doubling from 32), a linear bottleneck of ``latent_dim``, and the mirror image in
transposed convolutions ending in a sigmoid, on images in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from dermbench.errors import ConfigError
from dermbench.plugins.options import option


@dataclass(frozen=True)
class GateOptions:
    latent_dim: int = option(200, "size of the bottleneck (the paper's Table 1 spans 32-256; best 200)")
    depth: int = option(4, "stride-2 convolutions in the encoder (the image size must divide by 2^depth)")
    channels: int = option(32, "channels of the first convolution, doubling at each")
    lr: float = option(1e-3, "Adam learning rate (Table 1: 1e-4 to 1e-2; best 1e-3)")
    batch_size: int = option(16, "images per batch (Table 1: 8-32; best 16)")
    epochs: int = option(10, "training epochs (Table 1: 1-20; best 10)")
    threshold_db: float = option(
        25.0, "accept an image whose reconstruction PSNR exceeds this (the paper's 25 dB)"
    )
    accept_rate: float = option(
        0.0, "if > 0: set the threshold on validation so this share of images is accepted"
    )
    sharpness_reject_rate: float = option(
        0.01,
        "also refuse images flatter (variance of the Laplacian) than this share of validation images; 0: off",
    )
    seed: int = option(0, "seed of the gate's training (apart from the run's)")
    key: str = option("", "use this stored gate instead of training one (must exist and fit the run)")


class ConvAutoencoder(nn.Module):
    def __init__(self, image_size: int, latent_dim: int, depth: int, channels: int) -> None:
        super().__init__()
        if depth < 1 or image_size % (2**depth) or image_size // (2**depth) < 1:
            raise ConfigError(
                f"gate option depth={depth}: the image size {image_size} must divide by 2^depth = {2**depth}"
            )
        widths = [channels * 2**i for i in range(depth)]
        enc: list[nn.Module] = []
        for c_in, c_out in zip([3, *widths[:-1]], widths, strict=True):
            enc += [nn.Conv2d(c_in, c_out, 4, 2, 1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
        self.encoder = nn.Sequential(*enc)
        self.side = image_size // 2**depth
        flat = widths[-1] * self.side * self.side
        self.to_latent = nn.Linear(flat, latent_dim)
        self.from_latent = nn.Linear(latent_dim, flat)
        dec: list[nn.Module] = []
        for c_in, c_out in zip(widths[::-1], [*widths[::-1][1:], 3], strict=True):
            dec.append(nn.ConvTranspose2d(c_in, c_out, 4, 2, 1))
            dec += [nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)] if c_out != 3 else [nn.Sigmoid()]
        self.decoder = nn.Sequential(*dec)
        self.widths = widths

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.to_latent(self.encoder(x).flatten(1))
        h = self.from_latent(z).view(len(x), self.widths[-1], self.side, self.side)
        return self.decoder(h)


def psnr(x: torch.Tensor, reconstruction: torch.Tensor, max_value: float = 1.0) -> torch.Tensor:
    """Per-image PSNR in dB, ``20 log10(MAX / sqrt(MSE))`` over all pixels and channels (a perfect
    reconstruction is +inf)."""
    mse = ((x.float() - reconstruction.float()) ** 2).flatten(1).mean(1)
    return 10.0 * torch.log10(max_value**2 / mse)


def build_gate_model(image_size: int, options: GateOptions) -> ConvAutoencoder:
    return ConvAutoencoder(image_size, options.latent_dim, options.depth, options.channels)
