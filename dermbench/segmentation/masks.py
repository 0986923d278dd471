"""Lesion masks in their published layouts, paired with their images and checked.

- **ISIC 2018 Task 1** (Codella et al., arXiv:1902.03368, 2019): images ``ISIC_<id>.jpg`` in
  ``ISIC2018_Task1-2_<Split>_Input/`` and masks ``ISIC_<id>_segmentation.png`` in
  ``ISIC2018_Task1_<Split>_GroundTruth/`` (or beside the images).
- **HAM10000's lesion masks** (Tschandl, Rosendahl and Kittler, Sci. Data 2018; the masks published
  with the dataset, ``HAM10000_segmentations_lesion_tschandl/``): one ``<image_id>_segmentation.png``
  per HAM10000 image, paired with the images the HAM10000 adapter finds.

A mask is a single-channel PNG whose pixels are 0 (skin) or one positive value (1 or 255: lesion).
Any other value, a mask of another size than its image, or an image without its mask is an error
that names the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from dermbench.data.adapters import IMAGE_EXTS
from dermbench.data.images import open_rgb
from dermbench.errors import DataError

MASK_SUFFIX = "_segmentation.png"


@dataclass(frozen=True)
class MaskedImage:
    image_id: str
    image: Path
    mask: Path
    group: str = ""  # the lesion the image shows, where the layout says; empty: the image is its own


def group_of(item: MaskedImage) -> str:
    """The unit a split keeps together: the lesion where known, else the image."""
    return item.group or item.image_id


def read_mask(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """A boolean (H, W) lesion mask; ``size`` (width, height) is its image's, which it must match."""
    try:
        with Image.open(path) as im:
            im.load()
            mask = np.asarray(im.convert("L") if im.mode not in ("L", "1", "P") else im)
    except FileNotFoundError:
        raise DataError(f"{path}: mask file does not exist") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: cannot decode mask ({type(exc).__name__}: {exc})") from None
    values = np.unique(mask)
    if (
        len(values) > 2
        or (len(values) == 2 and values[0] != 0)
        or (len(values) == 1 and values[0] not in (0, 1, 255))
    ):
        shown = ", ".join(str(v) for v in values[:6]) + (" ..." if len(values) > 6 else "")
        raise DataError(f"{path}: mask is not binary (values {shown}); expected 0 and one of 1 or 255")
    if size is not None and (mask.shape[1], mask.shape[0]) != tuple(size):
        raise DataError(
            f"{path}: mask is {mask.shape[1]}x{mask.shape[0]} but its image is {size[0]}x{size[1]} (width x height)"
        )
    return mask > 0


def _images_under(root: Path) -> dict[str, Path]:
    return {
        p.stem: p
        for p in sorted(root.rglob("*"))
        if p.suffix.lower() in IMAGE_EXTS and not p.stem.endswith("_segmentation")
    }


def _masks_under(root: Path) -> dict[str, Path]:
    return {p.name[: -len(MASK_SUFFIX)]: p for p in sorted(root.rglob(f"*{MASK_SUFFIX}"))}


def pair(
    images: dict[str, Path], masks: dict[str, Path], where: Path, groups: dict[str, str] | None = None
) -> list[MaskedImage]:
    """Every image with its mask (and its lesion, from ``groups``); an image without a mask is an
    error naming it."""
    if not images:
        raise DataError(f"{where}: no images found")
    missing = sorted(set(images) - set(masks))
    if missing:
        raise DataError(
            f"{images[missing[0]]}: no mask {missing[0]}{MASK_SUFFIX} under {where} ({len(missing)} images lack one)"
        )
    groups = groups or {}
    return [MaskedImage(i, images[i], masks[i], groups.get(i, "")) for i in sorted(images)]


def isic2018_task1(root: str | Path) -> list[MaskedImage]:
    """ISIC 2018 Task 1's images and masks under ``root`` (any sub-folders)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder (ISIC 2018 Task 1 images and masks)")
    return pair(_images_under(root), _masks_under(root), root)


def ham10000_masks(ham_root: str | Path, masks_root: str | Path) -> list[MaskedImage]:
    """HAM10000's images (through its adapter) with the masks under ``masks_root``, each with its
    ``lesion_id``, so that a lesion photographed several times stays in one split."""
    from dermbench.data.adapters import Ham10000Options, load_ham10000

    records = load_ham10000(Ham10000Options(), str(ham_root))
    frame = records.frame
    images = dict(zip(frame["image_id"], map(Path, frame["path"]), strict=True))
    lesions = dict(zip(frame["image_id"], frame["group"].astype(str), strict=True))
    masks_root = Path(masks_root)
    if not masks_root.is_dir():
        raise DataError(f"{masks_root}: no such folder (HAM10000 lesion masks)")
    return pair(images, _masks_under(masks_root), masks_root, lesions)


def load_pairs(items: list[MaskedImage], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, size, size, 3)`` uint8 (bilinear) and masks ``(N, size, size)`` bool (nearest),
    each mask checked against its own image's size first."""
    images = np.zeros((len(items), size, size, 3), dtype=np.uint8)
    masks = np.zeros((len(items), size, size), dtype=bool)
    for i, item in enumerate(items):
        img = open_rgb(item.image)
        mask = read_mask(item.mask, img.size)
        images[i] = np.asarray(img.resize((size, size), Image.Resampling.BILINEAR))
        masks[i] = np.asarray(Image.fromarray(mask).resize((size, size), Image.Resampling.NEAREST))
    return images, masks
