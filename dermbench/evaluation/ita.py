"""Individual Typology Angle (ITA): a skin-tone proxy measured from the pixels of the image.

ITA = arctan((L* - 50) / b*) * 180 / pi, in degrees, from the CIELAB lightness L* and the
yellow-blue coordinate b* of the skin (Chardon, Cretois and Hourseau, "Skin colour typology and
suntanning pathways", Int. J. Cosmet. Sci. 13, 1991; Del Bino and Bernerd, "Variations in skin
colour and the biological consequences of ultraviolet radiation exposure", Br. J. Dermatol. 169,
2013). Rumale et al., "Recall-Oriented Deep Learning Framework for Skin Cancer Detection with
Explainability and Fairness Analysis", split their test set at ITA 28 into light and dark skin,
measured on non-lesion skin; this module does the same for any image.

Why each step (docs/fairness.md states the rule in full):

- sRGB -> CIELAB uses the IEC 61966-2-1 transfer curve, the sRGB D65 matrix and the D65 white,
  in numpy, so no image library decides the numbers.
- Skin outside the lesion: lesions sit mostly towards the centre of dermoscopic and clinical
  photographs, so only a border ring (``ring`` of the shorter side, default 20%) is measured.
  Near-black pixels (L* < 10: the dermatoscope's vignette, deep shadow) and specular highlights
  (L* > 97) are never skin. Clinical photographs show walls, sheets and clothes at the border, so
  only skin-coloured pixels are kept: hue angle atan2(b*, a*) in [0, 90] degrees and chroma
  >= 5 (unless fewer than 5% of the ring pass, then every plausible pixel is used). Of those,
  the darker Otsu class on L* (lesion edges, hair, rulers) is dropped when the split is clear
  (class means more than ``min_separation`` L* apart) and the dark class is the minority; a dark
  majority is taken to be the skin itself, as on dark skin beside a pale background.
- The median of L* and of b* over the kept pixels is robust to what the rule lets through.
- b* <= 0 does not occur on skin; ITA is computed as ``arctan2(L* - 50, max(b*, 1e-6))``, which
  equals the formula for every b* > 0 and saturates at +-90 degrees otherwise, instead of
  flipping sign or dividing by zero. An image with no usable pixel (all black) gets NaN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from dermbench.errors import ConfigError, DataError

# sRGB (IEC 61966-2-1) linear RGB -> CIE XYZ, D65 white.
_RGB_TO_XYZ = np.array(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ]
)
D65_WHITE = (0.95047, 1.0, 1.08883)
_DELTA = 6.0 / 29.0
_B_EPS = 1e-6

BLACK_L = 10.0  # below this L* a pixel is vignette or deep shadow, never skin
SPECULAR_L = 97.0  # above this L* a pixel is a specular highlight or paper, never skin
SKIN_HUE = (0.0, 90.0)  # skin lies in the red-yellow quadrant of (a*, b*)
SKIN_CHROMA = 5.0  # greys (walls, sheets, gauze) have almost no chroma
GATE_MIN_FRACTION = 0.05  # fewer skin-coloured ring pixels than this: measure the plausible ones
DARK_MAX_FRACTION = 0.5  # the dark Otsu class is dropped only while it is the minority
_CHUNK_PIXELS = 4_000_000  # images x pixels converted at once

SCHEMES: dict[str, dict[str, Any]] = {
    # Rumale et al.: light (ITA > 28) and dark (ITA <= 28).
    "binary28": {"labels": ("dark", "light"), "cut_points": (28.0,)},
    # Chardon et al. 1991 / Del Bino et al. 2013 categories.
    "chardon6": {
        "labels": ("dark", "brown", "tan", "intermediate", "light", "very_light"),
        "cut_points": (-30.0, 10.0, 28.0, 41.0, 55.0),
    },
}
UNKNOWN = "unknown"


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (L* in [0, 100]) of sRGB colours, ``uint8`` in 0..255 or float in [0, 1], shape (..., 3)."""
    x = np.asarray(rgb)
    if x.shape[-1:] != (3,):
        raise DataError(f"sRGB colours need a last axis of 3 channels, got shape {x.shape}")
    c = x.astype(np.float64) / 255.0 if x.dtype == np.uint8 else x.astype(np.float64)
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = lin @ _RGB_TO_XYZ.T / np.asarray(D65_WHITE)
    f = np.where(xyz > _DELTA**3, np.cbrt(xyz), xyz / (3 * _DELTA**2) + 4.0 / 29.0)
    lab = np.empty_like(f)
    lab[..., 0] = 116.0 * f[..., 1] - 16.0
    lab[..., 1] = 500.0 * (f[..., 0] - f[..., 1])
    lab[..., 2] = 200.0 * (f[..., 1] - f[..., 2])
    return lab


def ita_from_lab(L: Any, b: Any) -> np.ndarray:
    """ITA in degrees; b* <= 0 (never skin) is clipped to a tiny positive value, see module doc."""
    L, b = np.asarray(L, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.degrees(np.arctan2(L - 50.0, np.maximum(b, _B_EPS)))


def ring_mask(height: int, width: int, ring: float = 0.2) -> np.ndarray:
    """True on the border ring of width ``ring * min(height, width)`` (at least one pixel)."""
    if not 0.0 < ring <= 0.5:
        raise ConfigError(f"ita ring {ring!r} must lie in (0, 0.5]")
    w = max(1, int(round(ring * min(height, width))))
    mask = np.ones((height, width), dtype=bool)
    if height > 2 * w and width > 2 * w:
        mask[w : height - w, w : width - w] = False
    return mask


def _otsu(L: np.ndarray, valid: np.ndarray, bins: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the Otsu threshold on L* over ``valid`` pixels and the gap between the class means."""
    n = L.shape[0]
    idx = np.clip((L / 100.0 * bins).astype(np.int64), 0, bins - 1)
    rows = np.broadcast_to(np.arange(n)[:, None], L.shape)
    hist = np.bincount((rows * bins + idx)[valid], minlength=n * bins).reshape(n, bins).astype(np.float64)
    total = hist.sum(axis=1, keepdims=True)
    p = hist / np.maximum(total, 1.0)
    centres = (np.arange(bins) + 0.5) * 100.0 / bins
    omega = np.cumsum(p, axis=1)
    mu = np.cumsum(p * centres, axis=1)
    mu_t = mu[:, -1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mu_t * omega - mu) ** 2 / (omega * (1.0 - omega))
        between = np.where((omega > 0) & (omega < 1), between, -1.0)
        k = between.argmax(axis=1)
        w0 = omega[np.arange(n), k]
        m0 = mu[np.arange(n), k] / w0
        m1 = (mu_t[:, 0] - mu[np.arange(n), k]) / (1.0 - w0)
    threshold = (k + 1) * 100.0 / bins
    separation = np.where((w0 > 0) & (w0 < 1), m1 - m0, 0.0)
    return threshold, separation


def _median_rows(values: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Median of each row over its kept entries; NaN for a row with none kept."""
    out = np.full(values.shape[0], np.nan)
    has = keep.any(axis=1)
    if has.any():
        out[has] = np.nanmedian(np.where(keep[has], values[has], np.nan), axis=1)
    return out


def skin_lab(
    images: np.ndarray,
    ring: float = 0.2,
    min_separation: float = 10.0,
    lesion_masks: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Median L*, median b* and the number of pixels kept, per image of a (N, H, W, 3) uint8 array.

    The region measured is the border ring, or, given ``lesion_masks`` ((N, H, W) bool, True on the
    lesion), every pixel outside the lesion; the skin rules below apply within it either way."""
    n, h, w = images.shape[:3]
    pixels = images.reshape(n, h * w, 3)
    if lesion_masks is None:  # the same ring in every image: only its pixels are converted
        pixels = pixels[:, ring_mask(h, w, ring).ravel()]
        region = np.ones(pixels.shape[:2], dtype=bool)
    else:
        region = ~np.asarray(lesion_masks, dtype=bool).reshape(n, h * w)
    lab = srgb_to_lab(pixels)
    L, a, b = lab[..., 0], lab[..., 1], lab[..., 2]
    plausible = region & (L >= BLACK_L) & (L <= SPECULAR_L)
    hue = np.degrees(np.arctan2(b, a))
    coloured = plausible & (hue >= SKIN_HUE[0]) & (hue <= SKIN_HUE[1]) & (np.hypot(a, b) >= SKIN_CHROMA)
    gated = coloured.sum(axis=1) >= GATE_MIN_FRACTION * region.sum(axis=1)
    candidate = np.where(gated[:, None], coloured, plausible)
    threshold, separation = _otsu(L, candidate)
    dark = candidate & (L <= threshold[:, None])
    drop = (separation > min_separation) & (dark.sum(axis=1) < DARK_MAX_FRACTION * candidate.sum(axis=1))
    keep = candidate & ~(drop[:, None] & dark)
    return _median_rows(L, keep), _median_rows(b, keep), keep.sum(axis=1)


def _check_images(images: Any) -> np.ndarray:
    x = np.asarray(images)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise DataError(f"ITA needs RGB images of shape (N, H, W, 3), got shape {x.shape}")
    if x.dtype != np.uint8:
        raise DataError(f"ITA needs uint8 images (sRGB 0..255), got dtype {x.dtype}")
    return x


def ita_for_images(
    images: np.ndarray | Sequence[np.ndarray],
    ring: float = 0.2,
    min_separation: float = 10.0,
    lesion_masks: np.ndarray | Sequence[np.ndarray] | None = None,
) -> np.ndarray:
    """ITA in degrees per image (NaN where no pixel could be skin), chunked to bound memory.

    ``images`` is a (N, H, W, 3) uint8 array (a memory map is read chunk by chunk), or a sequence
    of (H, W, 3) uint8 arrays of differing sizes, measured one by one. ``lesion_masks`` (one
    (H, W) bool mask per image, from masks or a segmentation model) replaces the border ring by
    the skin outside the lesion.
    """
    if not isinstance(images, np.ndarray) and isinstance(images, Sequence):
        masks = lesion_masks if lesion_masks is not None else [None] * len(images)
        return np.array(
            [ita_of_image(i, ring, min_separation, m) for i, m in zip(images, masks, strict=True)]
        )
    x = _check_images(images)
    n, h, w = x.shape[:3]
    if lesion_masks is not None and np.shape(lesion_masks) != (n, h, w):
        raise DataError(f"ITA lesion masks must have shape {(n, h, w)}, got {np.shape(lesion_masks)}")
    out = np.full(n, np.nan)
    chunk = max(1, _CHUNK_PIXELS // max(h * w, 1))
    for start in range(0, n, chunk):
        masks = None if lesion_masks is None else np.asarray(lesion_masks[start : start + chunk])
        L, b, _ = skin_lab(np.asarray(x[start : start + chunk]), ring, min_separation, masks)
        out[start : start + chunk] = ita_from_lab(L, b)
    return out


def ita_of_image(
    img_uint8: np.ndarray,
    ring: float = 0.2,
    min_separation: float = 10.0,
    lesion_mask: np.ndarray | None = None,
) -> float:
    """ITA in degrees of the skin around the lesion of one (H, W, 3) uint8 image; NaN if none."""
    x = np.asarray(img_uint8)
    if x.ndim != 3:
        raise DataError(f"ITA needs one RGB image of shape (H, W, 3), got shape {x.shape}")
    masks = None if lesion_mask is None else np.asarray(lesion_mask)[None]
    return float(ita_for_images(x[None], ring, min_separation, masks)[0])


def ita_groups(
    ita: Any, scheme: str = "binary28", cut_points: Sequence[float] | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """Skin-tone group per ITA value and the scheme as recorded (labels, cut-points, rule).

    Group i holds ``cut[i-1] < ITA <= cut[i]`` (ascending cuts, labels darkest first), which puts
    ITA 28 itself in "dark" as in Rumale et al. and in "tan" in Chardon's bands. NaN -> "unknown".
    """
    if scheme not in SCHEMES:
        raise ConfigError(f"unknown ITA group scheme {scheme!r}; known: {', '.join(SCHEMES)}")
    labels = SCHEMES[scheme]["labels"]
    cuts = SCHEMES[scheme]["cut_points"] if cut_points is None else tuple(float(c) for c in cut_points)
    if len(cuts) != len(labels) - 1:
        raise ConfigError(
            f"ITA scheme {scheme!r} has {len(labels)} groups {list(labels)} and needs "
            f"{len(labels) - 1} cut_points, got {list(cuts)}"
        )
    if any(not math.isfinite(c) for c in cuts) or any(a >= b for a, b in zip(cuts, cuts[1:], strict=False)):
        raise ConfigError(f"ITA cut_points must be finite and strictly increasing, got {list(cuts)}")
    values = np.asarray(ita, dtype=np.float64).ravel()
    index = np.searchsorted(np.asarray(cuts), values, side="left")
    names = np.array(labels, dtype=object)[np.minimum(index, len(labels) - 1)]
    names[np.isnan(values)] = UNKNOWN
    record = {
        "scheme": scheme,
        "labels": list(labels),
        "cut_points": list(cuts),
        "rule": "group i holds cut_points[i-1] < ITA <= cut_points[i]; labels darkest first",
        "unknown": UNKNOWN,
    }
    return names.astype(str), record
