"""From the decode-once cache to the model's input: device choice, dtype, layout, normalisation.

Images stay on the host as uint8 NHWC; each batch is moved, converted to float and normalised on
the device, so the host never holds a float copy of a dataset.
"""

from __future__ import annotations

import functools
import os

import torch

from dermbench.errors import ConfigError
from dermbench.stages.precision import current_plan

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


def to_float01(batch_uint8: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 NHWC on the host -> float NCHW in [0, 1] on the device. To a GPU the uint8 batch is
    copied once, from pinned memory (PyTorch's caching host allocator), without waiting for it."""
    if device.type == "cuda" and batch_uint8.device.type == "cpu" and not batch_uint8.is_pinned():
        batch_uint8 = batch_uint8.pin_memory()
    return batch_uint8.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255)


# From this side up, a CPU batch is made channels-last: oneDNN's channels-last convolutions trained
# ResNet-18 faster there (160 and 224 px: 13% and 21% more images/s) and slower below (28, 64 and
# 96 px: 6%, 16% and 5% fewer); 128 px was even. Measured on a 2-core CPU by benchmarks/layout.py;
# another CPU may put the crossover elsewhere: LAYOUT_ENV sets it without a change to the code.
CPU_CHANNELS_LAST_FROM = 128
LAYOUT_ENV = "DERMBENCH_CPU_CHANNELS_LAST_FROM"


def cpu_channels_last_from() -> int:
    """The side (px) from which CPU batches are fed channels-last: ``CPU_CHANNELS_LAST_FROM``, or
    the environment's ``DERMBENCH_CPU_CHANNELS_LAST_FROM`` (0: always; a side above any image's: never)."""
    raw = os.environ.get(LAYOUT_ENV, "").strip()
    if not raw:
        return CPU_CHANNELS_LAST_FROM
    if not (raw.isascii() and raw.isdigit()):
        raise ConfigError(
            f"{LAYOUT_ENV}={raw!r}: expected a side in pixels (0: always channels-last; "
            "a side above any image's: never), or unset for the default"
        )
    return int(raw)


def layout_rule(device: torch.device) -> dict:
    """The memory layout batches are fed in on ``device``, for the run record (a convolution's
    rounding differs between layouts, so the rule is part of what reproduces a run)."""
    plan = current_plan(device)
    if plan.channels_last is not None:
        return {"layout": "channels_last" if plan.channels_last else "contiguous NCHW", "set_by": plan.set_by}
    if device.type == "cuda":
        return {"layout": "channels_last", "set_by": "dermbench (CUDA)"}
    by_env = bool(os.environ.get(LAYOUT_ENV, "").strip())
    return {
        "layout": "channels_last from cpu_channels_last_from_px up, contiguous NCHW below",
        "cpu_channels_last_from_px": cpu_channels_last_from(),
        "set_by": f"the environment ({LAYOUT_ENV})" if by_env else "dermbench",
    }


def to_model_layout(x: torch.Tensor) -> torch.Tensor:
    """A batch in the memory layout its device convolves fastest: channels-last on CUDA and, from
    :func:`cpu_channels_last_from` px up, on the CPU; contiguous NCHW on the CPU below that. Flipped
    and transposed batches arrive in neither layout (their strides are permuted), which the CPU's
    convolutions treat as the slow case."""
    if x.dim() != 4:
        return x
    planned = current_plan(x.device).channels_last  # --precision auto chose the layout by timing
    if planned is not None:
        return x.contiguous(memory_format=torch.channels_last) if planned else x.contiguous()
    if x.device.type == "cuda" or min(x.shape[2], x.shape[3]) >= cpu_channels_last_from():
        return x.contiguous(memory_format=torch.channels_last)
    return x.contiguous()


def input_stats(model: torch.nn.Module | None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The per-channel mean and std a model expects: its timm ``pretrained_cfg``, else ImageNet's.

    A pretrained backbone is fed the normalisation of its own weights (``tf_efficientnetv2_s``
    expects mean = std = 0.5); models without a ``pretrained_cfg`` get ImageNet statistics.
    """
    cfg = getattr(model, "pretrained_cfg", None) or {}
    mean, std = cfg.get("mean"), cfg.get("std")
    if mean is None or std is None or len(mean) != 3 or len(std) != 3:
        return IMAGENET_MEAN, IMAGENET_STD
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def describe_input_stats(model: torch.nn.Module) -> dict:
    """What the run record says about the normalisation a model was fed."""
    mean, std = input_stats(model)
    cfg = getattr(model, "pretrained_cfg", None) or {}
    source = cfg.get("source") or (
        "timm pretrained_cfg" if cfg.get("mean") is not None else "ImageNet (the model has no pretrained_cfg)"
    )
    out = {"mean": list(mean), "std": list(std), "source": source}
    if cfg.get("architecture") and cfg.get("tag"):  # whose statistics: e.g. resnet50.tv_in1k (the weights
        out["pretrained_cfg"] = f"{cfg['architecture']}.{cfg['tag']}"  # loaded under --init imagenet)
    return out


@functools.cache
def _mean_std(device: torch.device, mean: tuple, std: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    """The statistics on ``device``, made once rather than copied over for every batch."""
    return (
        torch.tensor(mean, device=device).view(1, 3, 1, 1),
        torch.tensor(std, device=device).view(1, 3, 1, 1),
    )


def normalise(x01: torch.Tensor, stats: tuple[tuple, tuple] | None = None) -> torch.Tensor:
    """``(x - mean) / std`` with ``stats`` (from :func:`input_stats`; None: ImageNet's)."""
    mean, std = _mean_std(x01.device, *(stats or (IMAGENET_MEAN, IMAGENET_STD)))
    return (x01 - mean) / std


def to_input(
    batch_uint8: torch.Tensor, device: torch.device, stats: tuple[tuple, tuple] | None = None
) -> torch.Tensor:
    """uint8 NHWC on the host -> normalised float NCHW on the device (channels_last on CUDA)."""
    return to_model_layout(normalise(to_float01(batch_uint8, device), stats))
