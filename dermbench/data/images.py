"""Decoding one image file as 8-bit RGB, whatever its mode, naming the file on any failure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from dermbench.errors import DataError

HIGH_DEPTH = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def to_rgb(img: Image.Image, where: str | Path) -> Image.Image:
    """Any mode as 8-bit RGB. 16-bit grey is scaled (v / 257), not clipped to white; float images must
    lie in [0, 1]; alpha is dropped (a transparent pixel keeps its stored colour); CMYK, palette and
    grey convert as Pillow converts them."""
    if img.mode in HIGH_DEPTH:
        arr = np.asarray(img, dtype=np.float64)
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise DataError(f"{where}: {img.mode} image with values outside 0..65535")
        img = Image.fromarray(np.round(arr / 257.0).astype(np.uint8))
    elif img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        if arr.size and (not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1):
            raise DataError(f"{where}: floating-point image with values outside [0, 1]")
        img = Image.fromarray(np.round(arr * 255).astype(np.uint8))
    elif img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    return img if img.mode == "RGB" else img.convert("RGB")


def open_rgb(path: str | Path) -> Image.Image:
    """Decode one file as RGB, applying its EXIF orientation; any failure names the file."""
    try:
        with Image.open(path) as im:
            im.load()
            return to_rgb(ImageOps.exif_transpose(im), path)
    except FileNotFoundError:
        raise DataError(f"{path}: image file does not exist") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: cannot decode image ({type(exc).__name__}: {exc})") from None
