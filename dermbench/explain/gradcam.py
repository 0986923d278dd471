"""Grad-CAM++ explanations with the top-25% sharpening of Rumale et al., written as overlay PNGs.

Rumale et al., "Recall-Oriented Deep Learning Framework for Skin Cancer Detection with
Explainability and Fairness Analysis", explain predictions with Grad-CAM++ (Chattopadhay et al.,
WACV 2018) on the final convolutional stage (``layer4[-1]`` of their ResNet50), then "a
sharpening step retains the top 25% of activations"; their figures show the image, the raw heat
map and the sharpened overlay side by side. The CAM itself comes from ``pytorch_grad_cam``.

- Target layer: the module whose forward pass finishes last among those returning a 4-D
  (N, C, H, W) tensor while ``model.forward_features`` runs on one blank image (``model.forward``
  for models without it, pooling layers excluded). That is the last convolutional stage, the
  feature map global pooling reduces; for a timm ResNet it is ``layer4``, whose output is the
  tensor ``layer4[-1]`` returns. ``target_layer`` (a dotted module name or the module) overrides.
- Sharpening: values below the image's 75th percentile become 0, the rest are divided by their
  maximum; zeros stay zero, so at most a quarter of the pixels keep a value.
- Memory stays flat over any number of images: images are taken a batch at a time from the
  (possibly memory-mapped) array, each batch's CAMs are written and dropped, the retained graph
  is released after every batch, and the hooks go when the call ends. Parameters are frozen
  during the call (gradients flow from the input instead), so the model's ``.grad`` is never
  touched, and its train/eval mode and ``requires_grad`` flags are put back afterwards.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib import colormaps
from PIL import Image
from pytorch_grad_cam import GradCAMPlusPlus
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from dermbench.errors import ConfigError, DataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
KEEP_TOP = 0.25  # the paper's sharpening keeps the top 25% of CAM values


# --- the target layer -----------------------------------------------------------------------


@contextmanager
def _eval_mode(model: torch.nn.Module) -> Iterator[None]:
    was = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was)


def find_target_layer(
    model: torch.nn.Module, image_size: tuple[int, int] = (224, 224)
) -> tuple[str, torch.nn.Module]:
    """The last convolutional stage: see the module docstring for the rule."""
    features = getattr(model, "forward_features", None)
    seen: list[tuple[str, torch.nn.Module]] = []

    def record(name: str) -> Any:
        def hook(module: torch.nn.Module, _inp: Any, out: Any) -> None:
            if isinstance(out, torch.Tensor) and out.ndim == 4:
                seen.append((name, module))

        return hook

    handles = [
        m.register_forward_hook(record(name))
        for name, m in model.named_modules()
        if name and (callable(features) or "pool" not in type(m).__name__.lower())
    ]
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    try:
        with torch.no_grad(), _eval_mode(model):
            x = torch.zeros(1, 3, *image_size, device=device)
            out = features(x) if callable(features) else model(x)
    finally:
        for h in handles:
            h.remove()
    if callable(features) and not (isinstance(out, torch.Tensor) and out.ndim == 4):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(
            f"{type(model).__name__}.forward_features returns {shape}, not a (N, C, H, W) feature map: "
            "not a CNN; pass target_layer naming a module with a (N, C, H, W) output"
        )
    if not seen:
        raise ConfigError(f"{type(model).__name__} has no module with a 4-D output; pass target_layer")
    return seen[-1]


def resolve_target_layer(
    model: torch.nn.Module, target_layer: str | torch.nn.Module | None, image_size: tuple[int, int]
) -> tuple[str, torch.nn.Module]:
    """``(name, module)`` of the layer to explain: the override if given, else :func:`find_target_layer`."""
    if target_layer is None:
        return find_target_layer(model, image_size)
    if isinstance(target_layer, torch.nn.Module):
        for name, m in model.named_modules():
            if m is target_layer:
                return name, m
        raise ConfigError(f"target_layer {type(target_layer).__name__} is not a module of the model")
    try:
        return target_layer, model.get_submodule(target_layer)
    except AttributeError:
        known = [n for n, m in model.named_children()]
        raise ConfigError(
            f"target_layer {target_layer!r} is not a module of {type(model).__name__} "
            f"(top-level modules: {', '.join(known)})"
        ) from None


# --- sharpening and overlays ----------------------------------------------------------------


def sharpen_cam(cam: np.ndarray, keep: float = KEEP_TOP) -> np.ndarray:
    """Keep each map's top ``keep`` fraction of values (and only positive ones), zero the rest,
    divide by the maximum. Works on one (H, W) map or a stack (N, H, W)."""
    if not 0.0 < keep <= 1.0:
        raise ConfigError(f"sharpening keep fraction must lie in (0, 1], got {keep!r}")
    c = np.asarray(cam, dtype=np.float32)
    flat = c.reshape(-1, c.shape[-2] * c.shape[-1])
    q = np.quantile(flat, 1.0 - keep, axis=1, keepdims=True)
    kept = np.where((flat >= q) & (flat > 0), flat, 0.0)
    top = kept.max(axis=1, keepdims=True)
    return np.divide(kept, top, out=np.zeros_like(kept), where=top > 0).reshape(c.shape)


def cam_overlay(
    image: np.ndarray,
    cam: np.ndarray,
    alpha: float = 0.5,
    colormap: str = "jet",
    zero_transparent: bool = False,
) -> np.ndarray:
    """The image with the CAM's heat colours blended in (uint8 RGB); with ``zero_transparent``
    pixels where the CAM is 0 show the image untouched, so a sharpened map marks only its top."""
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise DataError(f"overlay needs a uint8 RGB image (H, W, 3), got {img.dtype} {img.shape}")
    c = np.clip(np.asarray(cam, dtype=np.float32), 0.0, 1.0)
    if c.shape != img.shape[:2]:
        raise DataError(f"CAM of shape {c.shape} does not match the image {img.shape[:2]}")
    heat = colormaps[colormap](c)[..., :3]
    weight = alpha * ((c > 0) if zero_transparent else np.ones_like(c))[..., None]
    out = img.astype(np.float32) / 255.0 * (1 - weight) + heat * weight
    return (np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8)


def cam_panels(image: np.ndarray, raw: np.ndarray, sharp: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Image | raw heat map | sharpened overlay, side by side, as in the paper's figure."""
    gap = np.full((image.shape[0], 4, 3), 255, dtype=np.uint8)
    return np.concatenate(
        [
            image,
            gap,
            cam_overlay(image, raw, alpha),
            gap,
            cam_overlay(image, sharp, alpha, zero_transparent=True),
        ],
        axis=1,
    )


# --- Grad-CAM++ over many images ------------------------------------------------------------


def _to_input(
    batch: np.ndarray, mean: Sequence[float], std: Sequence[float], device: torch.device
) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(batch)).to(device).permute(0, 3, 1, 2).float() / 255.0
    m = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=device).view(1, 3, 1, 1)
    return ((x - m) / s).requires_grad_(True)


@contextmanager
def _frozen(model: torch.nn.Module) -> Iterator[None]:
    """Eval mode and no parameter gradients for the call; both put back afterwards."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        with _eval_mode(model):
            yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def _check_images(images: Any) -> None:
    if getattr(images, "ndim", None) != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        shape = getattr(images, "shape", type(images).__name__)
        raise DataError(f"explain needs uint8 RGB images (N, H, W, 3), got {shape}")


def iter_cams(
    model: torch.nn.Module,
    images_uint8: np.ndarray,
    targets: Sequence[int] | None = None,
    batch_size: int = 16,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    *,
    target_layer: str | torch.nn.Module | None = None,
    keep: float = KEEP_TOP,
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield ``(start, raw, sharpened)`` per batch: CAMs (b, H, W) in [0, 1] for images
    ``start .. start + b``. ``targets`` are class indices to explain (None: the predicted class)."""
    _check_images(images_uint8)
    n, h, w = images_uint8.shape[:3]
    if targets is not None and len(targets) != n:
        raise DataError(f"{len(targets)} targets for {n} images")
    if batch_size < 1:
        raise ConfigError(f"explain batch_size must be >= 1, got {batch_size}")
    _, layer = resolve_target_layer(model, target_layer, (h, w))
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    with _frozen(model), GradCAMPlusPlus(model=model, target_layers=[layer]) as cam:
        for start in range(0, n, batch_size):
            x = _to_input(images_uint8[start : start + batch_size], mean, std, device)
            chosen = (
                None
                if targets is None
                else [ClassifierOutputTarget(int(t)) for t in targets[start : start + len(x)]]
            )
            try:
                raw = cam(input_tensor=x, targets=chosen)
            finally:  # drop the retained graph and this batch's activations before the next one
                cam.outputs = None
                cam.activations_and_grads.clear()
                del x
            raw = np.nan_to_num(raw.astype(np.float32), nan=0.0)
            yield start, raw, sharpen_cam(raw, keep)


def _file_names(names: Sequence[str], n: int) -> list[str]:
    if len(names) != n:
        raise DataError(f"{len(names)} names for {n} images")
    safe = [re.sub(r"[^A-Za-z0-9._-]+", "_", str(s)).strip("._") or "image" for s in names]
    dupes = sorted({s for s in safe if safe.count(s) > 1})
    if dupes:
        raise DataError(f"image names must be unique as file names; repeated: {', '.join(dupes[:5])}")
    return safe


def explain_images(
    model: torch.nn.Module,
    images_uint8: np.ndarray,
    targets: Sequence[int] | None,
    out_dir: str | Path,
    names: Sequence[str],
    batch_size: int = 16,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    *,
    target_layer: str | torch.nn.Module | None = None,
    keep: float = KEEP_TOP,
    layout: str = "panels",
    alpha: float = 0.5,
) -> list[Path]:
    """Write one PNG per image to ``out_dir/<name>.png`` and return the paths, in image order.

    ``images_uint8`` (N, H, W, 3) at the model's input size, normalised with ``mean``/``std``
    as in training. ``layout="panels"``: image | raw heat map | sharpened overlay (the paper's
    figure); ``"overlay"``: the sharpened overlay only.
    """
    if layout not in ("panels", "overlay"):
        raise ConfigError(f"explain layout must be 'panels' or 'overlay', got {layout!r}")
    _check_images(images_uint8)
    files = _file_names(names, len(images_uint8))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for start, raw, sharp in iter_cams(
        model, images_uint8, targets, batch_size, mean, std, target_layer=target_layer, keep=keep
    ):
        for i in range(len(raw)):
            img = np.asarray(images_uint8[start + i])
            if layout == "panels":
                picture = cam_panels(img, raw[i], sharp[i], alpha)
            else:
                picture = cam_overlay(img, sharp[i], alpha, zero_transparent=True)
            path = out / f"{files[start + i]}.png"
            Image.fromarray(picture).save(path)
            paths.append(path)
    return paths
