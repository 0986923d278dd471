"""Training-time augmentation on batches already on the device (float NCHW in [0, 1]).

The policies are named here and nowhere else; config validation imports ``POLICIES``. All
randomness comes from the generator passed in, seeded per (run seed, stage, epoch), so a resumed
run draws the same augmentations.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

POLICIES = ("none", "flips", "standard", "affine_brightness", "blur_affine")


def augment(x: torch.Tensor, policy: str, gen: torch.Generator) -> torch.Tensor:
    """Batch augmentation on float NCHW in [0, 1] before normalisation.

    ``flips``: horizontal and vertical flips and right-angle rotations (a lesion has no up);
    ``standard``: flips plus a random rotation of up to +-30 degrees (reflection padding),
    brightness/contrast/saturation jitter of +-20% and random erasing of one rectangle with
    probability 0.25;
    ``affine_brightness``: the list of Nedelcu et al. (Section III-D), in the usual image-generator
    reading: rotation by 1-30 degrees either way, horizontal flip, zoom by a factor in [0.8, 1.2],
    width shift of up to 10%, edges filled with the nearest pixel, and brightness scaled by a factor
    in [0.2, 0.8] as printed (so every training image is darkened);
    ``blur_affine``: Bilyk et al.'s "moderate" augmentation (Section 3.2): a light Gaussian blur
    (3 x 3, sigma 1) with probability 0.3, rotation up to 5 degrees, shifts up to 5%, scaling by
    0.95-1.05, brightness and contrast by +-10%.
    """
    if policy == "none":
        return x
    if policy == "affine_brightness":
        return affine_brightness(x, gen)
    if policy == "blur_affine":
        return blur_affine(x, gen)
    n = x.shape[0]
    rnd = torch.rand(n, 6, generator=gen).to(x.device)
    x = flips(x, rnd[:, :3])
    if policy == "standard":
        x = random_rotate(x, gen, max_degrees=30.0)
        x = colour_jitter(x, rnd[:, 3:6], strength=0.2)
        x = random_erase(x, gen, p=0.25)
    return x


def flips(x: torch.Tensor, rnd: torch.Tensor) -> torch.Tensor:
    n = x.shape[0]
    x = torch.where((rnd[:, 0] < 0.5).view(n, 1, 1, 1), x.flip(3), x)
    x = torch.where((rnd[:, 1] < 0.5).view(n, 1, 1, 1), x.flip(2), x)
    if x.shape[2] == x.shape[3]:
        x = torch.where((rnd[:, 2] < 0.5).view(n, 1, 1, 1), x.transpose(2, 3), x)
    return x


def colour_jitter(x: torch.Tensor, rnd: torch.Tensor, strength: float) -> torch.Tensor:
    """Brightness, contrast and saturation each scaled by a factor in [1 - s, 1 + s]."""
    n = x.shape[0]
    b, c, s = ((1 + (rnd[:, i] - 0.5) * 2 * strength).view(n, 1, 1, 1) for i in range(3))
    x = x * b
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * c + mean
    gray = x.mean(dim=1, keepdim=True)
    return ((x - gray) * s + gray).clamp(0, 1)


def random_rotate(x: torch.Tensor, gen: torch.Generator, max_degrees: float) -> torch.Tensor:
    n = x.shape[0]
    angle = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(max_degrees)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack(
        [torch.stack([cos, -sin, torch.zeros(n)], 1), torch.stack([sin, cos, torch.zeros(n)], 1)], 1
    )
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def random_erase(x: torch.Tensor, gen: torch.Generator, p: float) -> torch.Tensor:
    n, _, h, w = x.shape
    r = torch.rand(n, 5, generator=gen)
    out = x.clone()
    for i in torch.nonzero(r[:, 0] < p).flatten().tolist():
        eh, ew = max(1, int(h * (0.1 + 0.3 * r[i, 1]))), max(1, int(w * (0.1 + 0.3 * r[i, 2])))
        top, left = int((h - eh) * r[i, 3]), int((w - ew) * r[i, 4])
        out[i, :, top : top + eh, left : left + ew] = 0.5
    return out


def affine_brightness(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    n = x.shape[0]
    r = torch.rand(n, 6, generator=gen)
    angle = torch.where(r[:, 0] < 0.5, -1.0, 1.0) * torch.deg2rad(1 + 29 * r[:, 1])
    zoom = 1 + (r[:, 2] * 2 - 1) * 0.2
    shift = (r[:, 3] * 2 - 1) * 0.1 * 2  # grid units: the image spans [-1, 1]
    flip = torch.where(r[:, 4] < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(angle) * zoom, torch.sin(angle) * zoom
    theta = torch.stack(
        [torch.stack([cos * flip, -sin, shift], 1), torch.stack([sin * flip, cos, torch.zeros(n)], 1)], 1
    )
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    brightness = (0.2 + 0.6 * r[:, 5]).view(n, 1, 1, 1).to(x.device, x.dtype)
    return (out * brightness).clamp(0, 1)


def blur_affine(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    n = x.shape[0]
    r = torch.rand(n, 8, generator=gen)
    angle = (r[:, 0] * 2 - 1) * math.radians(5.0)
    scale = 1 + (r[:, 1] * 2 - 1) * 0.05
    tx, ty = (r[:, 2] * 2 - 1) * 0.1, (r[:, 3] * 2 - 1) * 0.1  # grid units: 5% of the side
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    g = torch.exp(-(torch.tensor([-1.0, 0.0, 1.0]) ** 2) / 2)
    kernel = (g[:, None] * g[None, :] / (g.sum() ** 2)).to(x.device, x.dtype).expand(x.shape[1], 1, 3, 3)
    blurred = F.conv2d(F.pad(out, (1, 1, 1, 1), mode="replicate"), kernel, groups=x.shape[1])
    out = torch.where((r[:, 4] < 0.3).view(n, 1, 1, 1).to(x.device), blurred, out)
    b = (1 + (r[:, 5] * 2 - 1) * 0.1).view(n, 1, 1, 1).to(x.device, x.dtype)
    c = (1 + (r[:, 6] * 2 - 1) * 0.1).view(n, 1, 1, 1).to(x.device, x.dtype)
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    return ((out * b - mean) * c + mean).clamp(0, 1)
