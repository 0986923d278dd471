"""From the decode-once cache to the model's input: device choice, dtype, layout, normalisation.

Images stay on the host as uint8 NHWC; each batch is moved, converted to float and normalised on
the device, so the host never holds a float copy of a dataset.
"""

from __future__ import annotations

import contextlib
import functools

import torch

from dermbench.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: CUDA is not available on this machine")
    return torch.device(name)


def device_name(device: torch.device) -> str:
    """``cpu`` or ``cuda:<card name>``, for the run record."""
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return "cpu"


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_float01(batch_uint8: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 NHWC on the host -> float NCHW in [0, 1] on the device."""
    return batch_uint8.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255)


def to_model_layout(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if x.device.type == "cuda" else x


@functools.cache
def _mean_std(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """ImageNet statistics on ``device``, made once rather than copied over for every batch."""
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    return mean, std


def normalise(x01: torch.Tensor) -> torch.Tensor:
    mean, std = _mean_std(x01.device)
    return (x01 - mean) / std


def to_input(batch_uint8: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 NHWC on the host -> normalised float NCHW on the device (channels_last on CUDA)."""
    return to_model_layout(normalise(to_float01(batch_uint8, device)))
