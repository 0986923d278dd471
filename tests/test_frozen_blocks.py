"""The frozen-block schedule, its block maps, class-stratified batches, and the paper's input pipeline."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import timm
import torch
from PIL import Image

from dermbench.builtin.samplers import ClassStratifiedSampler
from dermbench.errors import ConfigError
from dermbench.models.blocks import HEAD, block_map, set_trainable, trainable_at
from dermbench.stages.augment import augment
from dermbench.testing import run_tiny


def _names(model: torch.nn.Module, *prefixes: str) -> set[str]:
    return {n for n, _ in model.named_parameters() if any(n.startswith(p + ".") for p in prefixes)}


def test_the_resnet50_map_is_the_head_and_its_four_modules():
    model = timm.create_model("resnet50", pretrained=False, num_classes=4)
    blocks = block_map(model, "resnet50.tv_in1k")
    assert [b.name for b in blocks] == [HEAD, "layer4", "layer3", "layer2", "layer1"]
    assert blocks[0].params == _names(model, "fc")
    assert blocks[2].params == _names(model, "layer3")
    in_map = set().union(*(b.params for b in blocks))
    assert {n for n, _ in model.named_parameters()} - in_map == _names(model, "conv1", "bn1")  # the stem


def test_the_efficientnet_b3_map_is_the_head_and_six_modules():
    model = timm.create_model("efficientnet_b3", pretrained=False, num_classes=13)
    blocks = block_map(model, "efficientnet_b3")
    assert len(blocks) == 7
    assert blocks[1].params == _names(model, "blocks.6", "conv_head", "bn2")
    assert [blocks[i].params for i in range(2, 7)] == [_names(model, f"blocks.{j}") for j in (5, 4, 3, 2, 1)]


def test_the_mobilenetv2_map_groups_blocks_as_the_paper_a_to_d():
    model = timm.create_model("mobilenetv2_100", pretrained=False, num_classes=5)
    blocks = block_map(model, "mobilenetv2_100")
    assert [b.name for b in blocks] == [HEAD, "A", "B", "C", "D"]
    # inverted-residual blocks 0-16 lie in timm's stages of 1, 2, 3, 4, 3, 3, 1 blocks
    assert [len(s) for s in model.blocks] == [1, 2, 3, 4, 3, 3, 1]
    assert blocks[4].params == _names(model, "blocks.3")  # D = blocks 6-9
    assert blocks[2].params == _names(model, "blocks.5")  # B = blocks 13-15


def test_any_other_timm_model_uses_its_feature_stages_top_first():
    model = timm.create_model("convnext_atto", pretrained=False, num_classes=3)
    blocks = block_map(model, "convnext_atto")
    assert [b.name for b in blocks] == [HEAD, "stage3", "stage2", "stage1", "stage0"]
    assert _names(model, "stages.0") <= blocks[4].params


def test_a_block_map_naming_a_module_the_model_lacks_is_an_error_naming_it():
    model = timm.create_model("resnet18", pretrained=False, num_classes=3)
    assert [b.name for b in block_map(model, "resnet18", "layer4,layer3+layer2")] == [
        HEAD,
        "layer4",
        "layer3+layer2",
    ]
    with pytest.raises(ConfigError, match="blocks='layer4,layer5': model ResNet has no module 'layer5'"):
        block_map(model, "resnet18", "layer4,layer5")
    with pytest.raises(ConfigError, match="expected MODULE"):
        block_map(model, "resnet18", "layer4,,layer3")


def test_the_schedule_unfreezes_one_block_from_the_top_every_n_epochs():
    model = timm.create_model("resnet18", pretrained=False, num_classes=3)
    blocks = block_map(model, "resnet18")
    names = [[b.name for b in trainable_at(blocks, e, 3)] for e in range(1, 17)]
    assert names[0:3] == [[HEAD]] * 3
    assert names[3] == [HEAD, "layer4"] and names[6] == [HEAD, "layer4", "layer3"]
    assert names[12] == names[15] == [HEAD, "layer4", "layer3", "layer2", "layer1"]
    count = set_trainable(model, trainable_at(blocks, 4, 3))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == _names(model, "fc", "layer4")
    assert count == sum(p.numel() for n, p in model.named_parameters() if n in trainable)


def test_a_run_records_which_blocks_trained_each_epoch_and_the_rest_stay_put(tmp_path):
    record = run_tiny(
        tmp_path, model="resnet18", epochs=5, synthetic_n=90, batch_size=16,
        options={"stage.unfreeze_every": 2, "stage.backbone_lr_scale": 0.1},
    )  # fmt: skip
    rows = record["history"]
    assert [r["trainable_blocks"] for r in rows] == [
        [HEAD], [HEAD], [HEAD, "layer4"], [HEAD, "layer4"], [HEAD, "layer4", "layer3"],
    ]  # fmt: skip
    model = timm.create_model("resnet18", pretrained=False, num_classes=3)
    fc = sum(p.numel() for n, p in model.named_parameters() if n.startswith("fc."))
    l4 = sum(p.numel() for n, p in model.named_parameters() if n.startswith("layer4."))
    assert [r["trainable_params"] for r in rows[:3]] == [fc, fc, fc + l4]
    stage = record["resolved"]["stages"][0]
    assert stage["blocks"] == {
        "unfreeze_every": 2,
        "top_first": [HEAD, "layer4", "layer3", "layer2", "layer1"],
    }


def test_frozen_layers_do_not_change_and_trained_ones_do(tmp_path):
    from dermbench.stages.options import SupervisedOptions
    from dermbench.stages.supervised import run_supervised

    torch.manual_seed(0)
    model = timm.create_model("resnet18", pretrained=False, num_classes=3)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    stats = model.layer1[0].bn1.running_mean.clone()
    ctx = _stage_ctx(tmp_path, model, epochs=2)
    run_supervised(SupervisedOptions(unfreeze_every=1), ctx)  # epoch 1: head; epoch 2: head + layer4
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert {n.split(".")[0] for n in changed} == {"fc", "layer4"}
    assert torch.equal(model.layer1[0].bn1.running_mean, stats)  # a frozen batch norm keeps its statistics


def _stage_ctx(tmp_path, model, epochs):
    from dataclasses import replace

    from dermbench.components import StageRecipe
    from dermbench.data.split_data import SplitData
    from dermbench.plugins.contract import StageContext
    from dermbench.run.config import resolve_config
    from dermbench.testing import make_plugins

    pl = make_plugins()
    reg = pl.registries
    task = reg.tasks.get("tiny3")
    cfg = resolve_config(task, reg.methods.get("erm"), {}, {"profile": "smoke", "batch_size": 8, "lr": 1e-2})
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, (24, 32, 32, 3), dtype=np.uint8))
    split = SplitData(
        "train", images, np.arange(24) % 3, pd.DataFrame({"image_id": [str(i) for i in range(24)]})
    )
    return StageContext(
        model=model, train=split, val=replace(split, name="val"), task=task, cfg=cfg,
        recipe=StageRecipe("s", epochs=epochs), stage_index=0, registries=reg, device=torch.device("cpu"),
        checkpoint_dir=tmp_path, seed=0, progress=False,
    )  # fmt: skip


def test_the_schedule_refuses_to_be_combined_with_a_fixed_freeze(tmp_path):
    with pytest.raises(ConfigError, match="unfreeze_every sets what trains itself"):
        run_tiny(tmp_path, model="resnet18", options={"stage.unfreeze_every": 1, "stage.freeze": "backbone"})


def test_reset_head_gives_the_classifier_fresh_weights_from_the_seed():
    from dermbench.stages.supervised import reset_classifier

    model = timm.create_model("resnet18", pretrained=False, num_classes=3)
    with torch.no_grad():
        model.fc.weight.fill_(1.0)
    reset_classifier(model, 7)
    first = model.fc.weight.detach().clone()
    assert not torch.equal(first, torch.ones_like(first))
    reset_classifier(model, 7)
    assert torch.equal(model.fc.weight, first)


# --- class-stratified batches --------------------------------------------------------------------


@pytest.mark.parametrize("batch", [5, 7, 13, 16])
def test_every_batch_of_the_stratified_sampler_holds_every_class(batch):
    labels = np.array([0] * 200 + [1] * 30 + [2] * 7 + [3] * 3 + [4] * 1)
    sampler = ClassStratifiedSampler(labels, batch)
    order = sampler.epoch_indices(seed=3)
    assert len(order) == -(-len(labels) // batch) * batch
    for start in range(0, len(order), batch):
        chunk = labels[order[start : start + batch]]
        assert set(chunk) == {0, 1, 2, 3, 4}
        counts = np.bincount(chunk, minlength=5)
        assert counts.min() >= batch // 5 and counts.max() <= batch // 5 + 1
    # within a class every image is used before any is repeated: usage differs by one at most
    for cls in range(5):
        uses = np.bincount(order[labels[order] == cls], minlength=len(labels))[labels == cls]
        assert uses.max() - uses.min() <= 1
    assert np.array_equal(order, sampler.epoch_indices(seed=3))


def test_the_stratified_sampler_needs_a_batch_that_holds_every_class():
    with pytest.raises(ConfigError, match="a batch of 3 cannot hold all 5 classes"):
        ClassStratifiedSampler(np.arange(10) % 5, 3)
    assert len(ClassStratifiedSampler(np.arange(100) % 4, 8, max_epoch_images=20).epoch_indices(0)) == 24


# --- the paper's augmentations and nearest-neighbour resize ----------------------------------------


def test_affine_brightness_darkens_within_the_printed_range_and_is_seeded():
    x = torch.full((64, 3, 16, 16), 0.5)
    out = augment(x, "affine_brightness", torch.Generator().manual_seed(0))
    means = out.mean(dim=(1, 2, 3))
    assert (means >= 0.5 * 0.2 - 1e-6).all() and (means <= 0.5 * 0.8 + 1e-6).all()
    again = augment(x, "affine_brightness", torch.Generator().manual_seed(0))
    assert torch.equal(out, again)


def test_nearest_resize_is_cached_apart_and_equals_pillow_nearest(tmp_path):
    from dermbench.data.cache import cache_key, load_images
    from dermbench.data.records import DatasetRecords

    rng = np.random.default_rng(1)
    img = Image.fromarray(rng.integers(0, 256, (37, 53, 3), dtype=np.uint8))

    rec = DatasetRecords("one", None, pd.DataFrame({"image_id": ["a"], "label": ["x"], "group": ["a"]}),
                         "task", lambda row: img, identity="one-v1")  # fmt: skip
    near, _, _ = load_images(rec, np.array([0]), 16, tmp_path, progress=False, resize="nearest")
    bil, _, _ = load_images(rec, np.array([0]), 16, tmp_path, progress=False)
    assert np.array_equal(near[0], np.asarray(img.resize((16, 16), Image.Resampling.NEAREST)))
    assert not np.array_equal(near[0], bil[0])
    assert cache_key(rec, 16, "nearest") != cache_key(rec, 16)


def test_layer_wise_rates_rise_geometrically_from_the_stem_to_the_head():
    from dermbench.stages.options import SupervisedOptions
    from dermbench.stages.supervised import param_groups

    model = timm.create_model("resnet18", pretrained=False, num_classes=3)
    groups = param_groups(model, SupervisedOptions(layer_lr_min_scale=0.1), 1e-3, "resnet18")
    assert [g["block"] for g in groups] == ["layer1", "layer2", "layer3", "layer4", HEAD]
    assert [g["lr"] for g in groups] == pytest.approx(
        [1e-4, 1e-4 * 10**0.25, 1e-4 * 10**0.5, 1e-4 * 10**0.75, 1e-3]
    )
    names = {id(p): n for n, p in model.named_parameters()}
    first = {names[id(p)] for p in groups[0]["params"]}
    assert _names(model, "conv1", "bn1", "layer1") == first  # the stem trains with the lowest block
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    with pytest.raises(ConfigError, match="layer_lr_min_scale replaces backbone_lr_scale"):
        param_groups(
            model, SupervisedOptions(layer_lr_min_scale=0.1, backbone_lr_scale=0.5), 1e-3, "resnet18"
        )


def test_a_run_with_layer_wise_rates_records_each_blocks_rate(tmp_path):
    record = run_tiny(tmp_path, model="resnet18", image_size=32, synthetic_n=90,
                      options={"stage.layer_lr_min_scale": "0.01"})  # fmt: skip
    rates = record["resolved"]["stages"][0]["lr_groups"]
    assert list(rates) == ["layer1", "layer2", "layer3", "layer4", HEAD]
    assert rates[HEAD] == pytest.approx(record["resolved"]["stages"][0]["lr"])
    assert rates["layer1"] == pytest.approx(0.01 * rates[HEAD])
