"""Out-of-distribution sets for the gate: other datasets, and synthetic corruptions of the test images.

``--ood-data NAME=PATH`` names any registered dataset (labels ignored: every image is
out-of-distribution for the task's data, e.g. clinical Fitzpatrick17k photographs against a gate
trained on dermoscopic HAM10000); ``--ood-data CORRUPTION`` names a built-in corruption of the
run's own test images. Corruptions are synthetic and every output says so:

- ``noise``: uniform noise in place of the image;
- ``blank``: a flat grey frame;
- ``blur``: a heavy box blur (a kernel of a quarter of the side);
- ``jpeg``: JPEG at quality 5 (blocking);
- ``invert``: colours inverted;
- ``black_corners``: the image inside a black circular vignette (a dermoscope's frame, grown).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from PIL import Image

from dermbench.errors import ConfigError


def _noise(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, x.shape, dtype=np.uint8)


def _blank(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.full_like(x, 128)


def _blur(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    k = max(3, x.shape[1] // 4) | 1
    t = torch.from_numpy(x).permute(0, 3, 1, 2).float()
    out = torch.nn.functional.avg_pool2d(t, k, stride=1, padding=k // 2, count_include_pad=False)
    return out.round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()


def _jpeg(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = np.empty_like(x)
    for i, img in enumerate(x):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=5)
        out[i] = np.asarray(Image.open(buf).convert("RGB"))
    return out


def _invert(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return 255 - x


def _black_corners(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    s = x.shape[1]
    yy, xx = np.mgrid[:s, :s]
    outside = (yy - (s - 1) / 2) ** 2 + (xx - (s - 1) / 2) ** 2 > (0.35 * s) ** 2
    out = x.copy()
    out[:, outside] = 0
    return out


CORRUPTIONS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "noise": _noise, "blank": _blank, "blur": _blur, "jpeg": _jpeg, "invert": _invert,
    "black_corners": _black_corners,
}  # fmt: skip


def corrupt(images: torch.Tensor, name: str, seed: int = 0) -> torch.Tensor:
    """The test images under one corruption (uint8 N x S x S x 3 in, the same out)."""
    if name not in CORRUPTIONS:
        raise ConfigError(
            f"--ood-data {name!r}: no such corruption (known: {', '.join(CORRUPTIONS)}), or give NAME=PATH"
        )
    return torch.from_numpy(
        np.ascontiguousarray(CORRUPTIONS[name](images.numpy(), np.random.default_rng(seed)))
    )


def parse_ood(items: dict[str, str]) -> dict[str, str | None]:
    """``{"fitzpatrick17k": PATH, "noise": ""}``: a dataset with its path, or a corruption (None)."""
    return {name: path or None for name, path in items.items()}


def load_ood_dataset(name: str, path: str, cfg: Any, registries: Any, progress: bool) -> torch.Tensor:
    """Every image of a registered dataset at the run's size (labels ignored)."""
    from dermbench.data.mapped import take
    from dermbench.data.prepare import decode_rows

    records = registries.datasets.build(name, cfg.component_options(f"data.{name}"), path)
    if len(records) == 0:
        raise ConfigError(f"--ood-data {name}={path}: the dataset has no images")
    frame = records.frame.copy()
    frame["row"] = np.arange(len(frame), dtype=np.int64)
    _, images, _ = decode_rows(records, frame, cfg, f"--ood-data {name} ({path})", progress)
    return torch.from_numpy(take(images, np.arange(len(images)), cfg.image_memory))
