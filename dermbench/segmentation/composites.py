"""Synthetic segmentation data as paper 002 makes it: lesions pasted on skin, with exact masks.

Bilyk et al. (paper 002) enlarge their segmentation set with 1,000 images of 2-4 mole fragments
placed without overlap on a background, each with its mask. No lesion masks ship with the shared
data, so the lesions here are drawn, not cut out: a smooth star-shaped outline (a radius with a
few random low-frequency harmonics), a brown to near-black colour with a darker core and a mottled
texture. The backgrounds are real skin: corner crops of real photographs (the corners of a
dermoscopic image are skin around a central lesion), rescaled.

Everything is drawn from one seed. A pixel is changed exactly where the mask is set, so the
masks are exact. Every output says it is synthetic (``meta["synthetic"]``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from dermbench.errors import ConfigError, DataError

LESIONS_PER_IMAGE = (2, 4)  # the paper's 2-4 fragments per image
CORNER = 0.35  # the corner crop's side, as a share of the source's shorter side
_PLACE_TRIES = 40


def skin_background(source: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A random corner crop of ``source`` (H, W, 3) uint8, rescaled to ``size``, randomly flipped."""
    h, w = source.shape[:2]
    side = max(8, int(CORNER * min(h, w)))
    top = 0 if rng.random() < 0.5 else h - side
    left = 0 if rng.random() < 0.5 else w - side
    crop = Image.fromarray(source[top : top + side, left : left + side])
    out = np.asarray(crop.resize((size, size), Image.Resampling.BILINEAR))
    return out[:, ::-1] if rng.random() < 0.5 else out


def lesion_shape(size: int, radius: float, rng: np.random.Generator) -> np.ndarray:
    """A boolean (size, size) smooth star-shaped blob centred in the square."""
    yy, xx = np.mgrid[0:size, 0:size] - (size - 1) / 2
    theta, r = np.arctan2(yy, xx), np.hypot(yy, xx)
    outline = np.ones_like(theta)
    for k in range(2, 6):
        outline += rng.uniform(0.0, 0.25 / k) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    return r <= radius * outline


def lesion_colour(size: int, rng: np.random.Generator) -> np.ndarray:
    """A (size, size, 3) float colour field: brown to near-black, darker at the core, mottled."""
    base = np.array([rng.uniform(60, 150), rng.uniform(35, 90), rng.uniform(20, 60)])
    yy, xx = np.mgrid[0:size, 0:size] - (size - 1) / 2
    core = 1.0 - 0.45 * np.exp(-(xx**2 + yy**2) / (2 * (size / 5) ** 2))
    mottle = 1.0 + 0.25 * gaussian_filter(rng.normal(size=(size, size)), sigma=max(size / 12, 1.0))
    return np.clip(base[None, None, :] * (core * mottle)[..., None], 0, 255)


def _place(mask: np.ndarray, shape: np.ndarray, rng: np.random.Generator) -> tuple[int, int] | None:
    """A top-left corner where ``shape`` fits inside the image without touching ``mask``."""
    size, s = mask.shape[0], shape.shape[0]
    for _ in range(_PLACE_TRIES):
        top, left = rng.integers(0, size - s + 1, size=2)
        if not (mask[top : top + s, left : left + s] & shape).any():
            return int(top), int(left)
    return None


def composite(background: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, int]:
    """One image with 2-4 non-overlapping lesions pasted on ``background``; its mask; the count."""
    size = background.shape[0]
    image, mask = background.copy(), np.zeros((size, size), dtype=bool)
    placed = 0
    for _ in range(rng.integers(LESIONS_PER_IMAGE[0], LESIONS_PER_IMAGE[1] + 1)):
        s = int(rng.uniform(0.18, 0.42) * size)
        shape = lesion_shape(s, 0.4 * s, rng)
        spot = _place(mask, shape, rng)
        if spot is None:
            continue
        top, left = spot
        window = (slice(top, top + s), slice(left, left + s))
        image[window][shape] = lesion_colour(s, rng)[shape].astype(np.uint8)
        mask[window] |= shape
        placed += 1
    return image, mask, placed


def make_composites(
    sources: list[np.ndarray], n: int, size: int = 128, seed: int = 0, source_ids: list[str] | None = None
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """``n`` composites of ``size`` px from skin backgrounds cut from ``sources``; images, masks, meta."""
    if n < 1 or size < 32:
        raise ConfigError(f"composites need n >= 1 and size >= 32, got n={n}, size={size}")
    if not sources:
        raise DataError("composites need at least one source photograph for the skin backgrounds")
    rng = np.random.default_rng(seed)
    images = np.zeros((n, size, size, 3), dtype=np.uint8)
    masks = np.zeros((n, size, size), dtype=bool)
    picked, counts = [], []
    for i in range(n):
        j = int(rng.integers(len(sources)))
        images[i], masks[i], placed = composite(skin_background(sources[j], size, rng), rng)
        picked.append(source_ids[j] if source_ids else j)
        counts.append(placed)
    meta = {
        "synthetic": True,
        "what": "SYNTHETIC composites: drawn lesions pasted on corner crops of real photographs",
        "seed": seed,
        "n": n,
        "size": size,
        "lesions_per_image": np.bincount(counts, minlength=LESIONS_PER_IMAGE[1] + 1).tolist(),
        "backgrounds": picked,
    }
    return images, masks, meta
