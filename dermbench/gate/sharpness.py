"""The gate's second test: an image must carry detail, measured by the variance of its Laplacian.

An autoencoder reconstructs simple images well, so a flat frame or a heavily blurred shot can pass
a PSNR threshold that a lesion photograph fails (reconstruction-based out-of-distribution
detection shares this blind spot with likelihoods: Nalisnick et al., "Do Deep Generative Models
Know What They Don't Know?", ICLR 2019). The variance of the Laplacian is the standard focus and
blur measure (Pech-Pacheco et al., "Diatom autofocusing in brightfield microscopy: a comparative
study", ICPR 2000): near zero for a blank or defocused image.

The score here is that variance on the grey image in [0, 1] (the mean of the three channels), the
5-point Laplacian over the interior pixels (as ``scipy.ndimage.laplace`` computes it there). The
floor is a choice of the run, never of the test images: the score that refuses a share
``sharpness_reject_rate`` of the *validation* images (0 turns the test off, the paper's gate alone).
This test is dermbench's addition to the paper's gate, and the record reports the images each test
refuses apart.
"""

from __future__ import annotations

import numpy as np
import torch

from dermbench.errors import ConfigError

_KERNEL = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)


@torch.no_grad()
def laplacian_variance(images: torch.Tensor, batch: int = 256) -> np.ndarray:
    """Each uint8 NHWC image's variance of the Laplacian of its grey image in [0, 1]."""
    if images.ndim != 4 or images.shape[1] < 3 or images.shape[2] < 3:
        raise ConfigError(f"sharpness needs NHWC images at least 3 x 3, got shape {tuple(images.shape)}")
    out = []
    for start in range(0, len(images), batch):
        grey = images[start : start + batch].float().mean(-1, keepdim=True).permute(0, 3, 1, 2) / 255.0
        lap = torch.nn.functional.conv2d(grey, _KERNEL)
        out.append(lap.flatten(1).var(1, unbiased=False))
    return torch.cat(out).numpy().astype(np.float64) if out else np.zeros(0)


def sharpness_floor(val_sharpness: np.ndarray, reject_rate: float) -> float:
    """The score at or below which an image is refused: the validation quantile ``reject_rate``.

    With ``reject_rate`` 0 the test is off (the floor is minus infinity)."""
    if not 0.0 <= reject_rate < 1.0:
        raise ConfigError(f"gate option sharpness_reject_rate must be in [0, 1), got {reject_rate}")
    if reject_rate == 0:
        return float("-inf")
    if len(val_sharpness) == 0:
        raise ConfigError("gate option sharpness_reject_rate needs validation images to set the floor on")
    return float(np.quantile(val_sharpness, reject_rate))
