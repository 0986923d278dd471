"""Grad-CAM++ explanations: target-layer discovery on timm CNNs, the top-25% sharpening, PNGs that
open, a hand-built network whose evidence sits in a known square, flat memory and a model left as
it was found, and real HAM10000 images (file outputs only: the model is untrained)."""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import timm
import torch
from PIL import Image

from dermbench.errors import ConfigError, DataError
from dermbench.explain.gradcam import (
    cam_overlay,
    explain_images,
    find_target_layer,
    iter_cams,
    resolve_target_layer,
    sharpen_cam,
)

PLAIN = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}


class Spot(torch.nn.Module):
    """Channel 0 fires on red (R - G - B), channel 1 on green (G - R); class 1 reads channel 0 only."""

    def __init__(self) -> None:
        super().__init__()
        self.features = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3, padding=1), torch.nn.ReLU())
        self.pool = torch.nn.AdaptiveAvgPool2d(1)
        self.fc = torch.nn.Linear(2, 2)
        with torch.no_grad():
            w = torch.zeros(2, 3, 3, 3)
            w[0, :, 1, 1] = torch.tensor([1.0, -1.0, -1.0])
            w[1, :, 1, 1] = torch.tensor([-1.0, 1.0, 0.0])
            self.features[0].weight.copy_(w)
            self.features[0].bias.zero_()
            self.fc.weight.copy_(torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
            self.fc.bias.zero_()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.forward_features(x)).flatten(1))


def _spot_images(n: int = 3, size: int = 64) -> tuple[np.ndarray, list[tuple[slice, slice]]]:
    """Greenish skin with one red square per image, at a different place each time."""
    imgs = np.zeros((n, size, size, 3), dtype=np.uint8)
    imgs[..., 1] = 150
    imgs[..., 0] = 90
    boxes = []
    for i in range(n):
        r, c = 6 + 13 * i, 40 - 12 * i
        box = (slice(r, r + 12), slice(c, c + 14))
        imgs[i][box] = (230, 30, 30)
        boxes.append(box)
    return imgs, boxes


@pytest.fixture(scope="module")
def resnet() -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model("resnet18", pretrained=False, num_classes=2)


def _random_images(n: int, size: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


# --- target layer ---------------------------------------------------------------------------


def test_target_layer_is_the_last_convolutional_stage(resnet: torch.nn.Module) -> None:
    name, layer = find_target_layer(resnet, (64, 64))
    assert name == "layer4" and layer is resnet.layer4  # its output is what layer4[-1] returns
    assert find_target_layer(Spot(), (16, 16))[0] == "features"
    eff = timm.create_model("mobilenetv3_small_050", pretrained=False, num_classes=2)
    name, layer = find_target_layer(eff, (64, 64))
    with torch.no_grad():
        feats = eff.forward_features(torch.zeros(1, 3, 64, 64))
        seen = []
        h = layer.register_forward_hook(lambda m, i, o: seen.append(o))
        eff.eval().forward_features(torch.zeros(1, 3, 64, 64))
        h.remove()
    assert seen[0].shape == feats.shape  # the chosen layer's output is the pooled feature map


def test_target_layer_override_and_errors(resnet: torch.nn.Module) -> None:
    assert resolve_target_layer(resnet, "layer3", (64, 64)) == ("layer3", resnet.layer3)
    assert resolve_target_layer(resnet, resnet.layer2, (64, 64)) == ("layer2", resnet.layer2)
    with pytest.raises(ConfigError, match="'layer9' is not a module.*layer4"):
        resolve_target_layer(resnet, "layer9", (64, 64))

    class Tokens(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = torch.nn.Conv2d(3, 4, 4, stride=4)

        def forward_features(self, x: torch.Tensor) -> torch.Tensor:
            return self.proj(x).flatten(2).transpose(1, 2)

    with pytest.raises(ConfigError, match="not a CNN; pass target_layer"):
        find_target_layer(Tokens(), (16, 16))


# --- sharpening and overlays ----------------------------------------------------------------


def test_sharpening_keeps_the_top_quarter_and_renormalises() -> None:
    cam = np.arange(100, dtype=np.float32).reshape(10, 10) / 200.0  # max 0.495, all distinct
    sharp = sharpen_cam(cam)
    kept = sharp > 0
    assert kept.sum() == 25 and np.array_equal(kept, cam >= cam.ravel()[75])
    assert sharp.max() == pytest.approx(1.0)
    np.testing.assert_allclose(sharp[kept], cam[kept] / cam.max(), rtol=1e-6)
    sparse = np.zeros((10, 10), dtype=np.float32)
    sparse[0, :7] = np.linspace(0.1, 1, 7)  # only 7% positive: zeros are never "top" values
    assert (sharpen_cam(sparse) > 0).sum() == 7
    stack = sharpen_cam(np.stack([cam, sparse, np.zeros_like(cam)]))
    assert [int((s > 0).sum()) for s in stack] == [25, 7, 0]
    with pytest.raises(ConfigError, match="keep fraction"):
        sharpen_cam(cam, keep=0.0)


def test_overlay_colours_only_where_the_sharpened_map_is_positive() -> None:
    img = _random_images(1, 16)[0]
    cam = np.zeros((16, 16), dtype=np.float32)
    cam[4:8, 4:8] = 1.0
    out = cam_overlay(img, cam, alpha=0.5, zero_transparent=True)
    assert out.dtype == np.uint8 and out.shape == img.shape
    np.testing.assert_array_equal(out[cam == 0], img[cam == 0])
    assert not np.array_equal(out[4:8, 4:8], img[4:8, 4:8])
    blended = cam_overlay(img, cam, alpha=0.5)
    assert not np.array_equal(blended[0, 0], img[0, 0])  # the raw map tints everything
    with pytest.raises(DataError, match="does not match"):
        cam_overlay(img, cam[:8], alpha=0.5)


# --- CAMs on models -------------------------------------------------------------------------


def test_cam_shape_range_and_sharpening_on_a_timm_resnet(resnet: torch.nn.Module) -> None:
    imgs = _random_images(6)
    batches = list(iter_cams(resnet, imgs, [1, 0, 1, 0, 1, 0], batch_size=4))
    assert [s for s, _, _ in batches] == [0, 4]
    raw = np.concatenate([r for _, r, _ in batches])
    sharp = np.concatenate([s for _, _, s in batches])
    assert raw.shape == sharp.shape == (6, 64, 64)
    assert raw.min() >= 0 and raw.max() <= 1 + 1e-6 and np.isfinite(raw).all()
    frac = (sharp > 0).mean(axis=(1, 2))
    for r, f in zip(raw, frac, strict=True):
        assert f <= 0.3 and (f >= 0.2 or (r > 0).mean() < 0.3)  # ~25%, fewer only if the CAM is sparse


def test_cam_peaks_on_the_region_the_network_responds_to() -> None:
    imgs, boxes = _spot_images()
    model = Spot()
    (_, raw, sharp), *_ = list(iter_cams(model, imgs, [1, 1, 1], batch_size=8, **PLAIN))
    for i, box in enumerate(boxes):
        inside = np.zeros((64, 64), dtype=bool)
        inside[box] = True
        peak = np.unravel_index(raw[i].argmax(), raw[i].shape)
        assert inside[peak]
        assert raw[i][inside].mean() > 5 * raw[i][~inside].mean()
        assert sharp[i][inside].mean() > sharp[i][~inside].mean()
    # the other class reads the green channel: its map avoids the square
    (_, other, _), *_ = list(iter_cams(model, imgs, [0, 0, 0], batch_size=8, **PLAIN))
    for i, box in enumerate(boxes):
        inside = np.zeros((64, 64), dtype=bool)
        inside[box] = True
        assert other[i][inside].mean() < other[i][~inside].mean()


def test_explain_images_writes_readable_pngs(tmp_path: Path, resnet: torch.nn.Module) -> None:
    imgs = _random_images(5)
    names = ["ISIC_1", "ISIC_2", "a/b", "d", "e"]
    paths = explain_images(resnet, imgs, None, tmp_path / "cams", names, batch_size=2)
    assert [p.name for p in paths] == ["ISIC_1.png", "ISIC_2.png", "a_b.png", "d.png", "e.png"]
    for p, img in zip(paths, imgs, strict=True):
        with Image.open(p) as im:
            assert im.mode == "RGB" and im.size == (3 * 64 + 8, 64)
            np.testing.assert_array_equal(np.asarray(im)[:, :64], img)  # first panel: the image itself
    (single,) = explain_images(resnet, imgs[:1], [1], tmp_path / "o", ["x"], layout="overlay")
    with Image.open(single) as im:
        assert im.size == (64, 64)


def test_bad_arguments_are_named(tmp_path: Path) -> None:
    imgs, _ = _spot_images()
    model = Spot()
    with pytest.raises(DataError, match="2 names for 3 images"):
        explain_images(model, imgs, None, tmp_path, ["a", "b"])
    with pytest.raises(DataError, match="repeated: a"):
        explain_images(model, imgs, None, tmp_path, ["a", "a", "b"])
    with pytest.raises(DataError, match="2 targets for 3 images"):
        explain_images(model, imgs, [0, 1], tmp_path, ["a", "b", "c"])
    with pytest.raises(DataError, match="uint8 RGB"):
        explain_images(model, imgs.astype(np.float32), None, tmp_path, ["a", "b", "c"])
    with pytest.raises(ConfigError, match="layout"):
        explain_images(model, imgs, None, tmp_path, ["a", "b", "c"], layout="grid")


def test_model_is_left_as_found(tmp_path: Path) -> None:
    model = Spot().train()
    model.fc.bias.requires_grad_(False)
    explain_images(model, _spot_images()[0], None, tmp_path, ["a", "b", "c"], **PLAIN)
    assert model.training
    assert [p.requires_grad for p in model.parameters()] == [True, True, True, False]
    assert all(p.grad is None for p in model.parameters())
    assert all(not m._forward_hooks and not m._backward_hooks for m in model.modules())


def _live_tensors() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if issubclass(type(o), torch.Tensor))


def test_memory_stays_flat_over_many_images(tmp_path: Path) -> None:
    model = Spot()
    tile, _ = _spot_images(3, 32)

    def growth(n: int) -> int:
        imgs = np.concatenate([tile] * (n // 3))
        gc.collect()
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            explain_images(
                model, imgs, None, tmp_path / str(n), [f"i{k}" for k in range(len(imgs))], 6, **PLAIN
            )
            return tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()

    before = _live_tensors()
    small, large = growth(12), growth(96)
    assert _live_tensors() == before  # no tensor outlives the call
    # 8x the images: CAMs kept for every image would add ~400 kB of float32 here
    assert large < small + 150_000


# --- real images ----------------------------------------------------------------------------


@pytest.mark.realdata
def test_explain_real_ham10000_images_writes_files(
    shared_data, tmp_path: Path, resnet: torch.nn.Module
) -> None:
    root = shared_data / "ham10000"
    meta = pd.read_csv(root / "HAM10000_metadata.csv").sort_values("image_id").head(3)
    imgs = np.stack(
        [
            np.asarray(Image.open(root / "images" / f"{i}.jpg").convert("RGB").resize((96, 72)))
            for i in meta["image_id"]
        ]
    )
    paths = explain_images(resnet, imgs, None, tmp_path, list(meta["image_id"]), batch_size=2)
    assert [p.stem for p in paths] == list(meta["image_id"])
    for p in paths:
        with Image.open(p) as im:
            arr = np.asarray(im)
        assert arr.shape == (72, 3 * 96 + 8, 3)
        assert not np.array_equal(arr[:, 100:196], arr[:, :96])  # the heat panel differs from the image
