"""Freezing by feature stage, the MLP head, per-stage options and each backbone's own normalisation."""

from __future__ import annotations

import pytest
import timm
import torch

from dermbench.components import Method, StageRecipe
from dermbench.errors import ConfigError
from dermbench.models.build import build_model
from dermbench.models.parts import MLPHead, stage_param_names
from dermbench.plugins.contract import ModelContext
from dermbench.run.config import RunConfig
from dermbench.run.fitting import stage_values
from dermbench.stages.device import IMAGENET_MEAN, input_stats
from dermbench.stages.supervised import SupervisedOptions, param_groups


def _convnext(head=None):
    options = {"head_hidden": head[0], "head_dropout": head[1]} if head else {}
    return build_model("convnext_atto", ModelContext(3, 32, "random"), {}, options)


def _trainable(model) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_stages_of_a_timm_model_are_its_group_matcher_stages():
    model = _convnext()
    stages = stage_param_names(model)
    assert len(stages) == 4
    assert all(n.startswith("stages.3.") or n.startswith("head.") for n in stages[-1])
    assert "head.norm.weight" in stages[-1] and not any(n.startswith("stem") for s in stages for n in s)
    resnet = timm.create_model("resnet18", pretrained=False, num_classes=3)
    assert [s[0].split(".")[0] for s in stage_param_names(resnet)] == ["layer1", "layer2", "layer3", "layer4"]


def test_trainable_parameters_before_and_after_the_unfreeze_epoch():
    model = _convnext(head=(16, 0.5))
    frozen = param_groups(model, SupervisedOptions(freeze="backbone"), 1e-5)
    head = {n for n in _trainable(model)}
    assert head == {"head.fc.0.weight", "head.fc.0.bias", "head.fc.3.weight", "head.fc.3.bias"}
    assert sum(len(g["params"]) for g in frozen) == 4
    unfrozen = param_groups(model, SupervisedOptions(freeze="backbone", train_last_stages=1), 1e-5)
    now = _trainable(model)
    assert head < now
    assert {n for n in now - head} == {n for n in stage_param_names(model)[-1] if not n.startswith("head.fc")}
    assert not any(n.startswith(("stem", "stages.0", "stages.1", "stages.2")) for n in now)
    assert sum(len(g["params"]) for g in unfrozen) == len(now)
    param_groups(model, SupervisedOptions(), 1e-5)  # a later unfrozen stage trains everything again
    assert _trainable(model) == {n for n, _ in model.named_parameters()}


def test_unfreezing_needs_a_frozen_backbone_and_enough_stages():
    model = _convnext()
    with pytest.raises(ConfigError, match="train_last_stages needs freeze=backbone"):
        param_groups(model, SupervisedOptions(train_last_stages=1), 1e-5)
    with pytest.raises(ConfigError, match="has 4 feature stages"):
        param_groups(model, SupervisedOptions(freeze="backbone", train_last_stages=5), 1e-5)


def test_mlp_head_is_768_256_c_shaped_and_is_the_classifier():
    model = _convnext(head=(256, 0.5))
    head = model.get_classifier()
    assert isinstance(head, MLPHead)
    assert [type(m).__name__ for m in head] == ["Linear", "ReLU", "Dropout", "Linear"]
    assert (head[0].in_features, head[0].out_features, head[3].out_features) == (320, 256, 3)
    assert head[2].p == 0.5
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 3)
    with pytest.raises(ConfigError, match="head_dropout needs head_hidden"):
        build_model("convnext_atto", ModelContext(3, 32, "random"), {}, {"head_dropout": 0.5})


def test_weights_file_loads_into_a_model_with_an_mlp_head(tmp_path):
    plain = timm.create_model("convnext_atto", pretrained=False, num_classes=1000)
    path = tmp_path / "w.pth"
    torch.save(plain.state_dict(), path)
    model = build_model("convnext_atto", ModelContext(3, 32, str(path)), {}, {"head_hidden": 8})
    assert torch.equal(model.state_dict()["stem.0.weight"], plain.state_dict()["stem.0.weight"])
    assert isinstance(model.get_classifier(), MLPHead)


def test_a_backbone_is_fed_the_normalisation_of_its_own_weights():
    effnet = timm.create_model("tf_efficientnetv2_s", pretrained=False, num_classes=3)
    assert input_stats(effnet) == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert input_stats(_convnext())[0] == IMAGENET_MEAN
    assert input_stats(torch.nn.Linear(2, 2))[0] == IMAGENET_MEAN  # no pretrained_cfg: ImageNet's


def test_stage_options_address_one_stage_or_all():
    method = Method(
        "m", "", stages=(StageRecipe(name="a", epochs=3), StageRecipe(name="b", options={"x": 1}))
    )
    cfg = RunConfig(options={"stage.freeze": "backbone", "stage.b.x": "2", "stage.a.epochs": "5"})
    assert stage_values(cfg, method, method.stages[0]) == ({"freeze": "backbone"}, 5)
    assert stage_values(cfg, method, method.stages[1]) == ({"x": "2", "freeze": "backbone"}, None)
    with pytest.raises(ConfigError, match="has no stage 'c'"):
        stage_values(RunConfig(options={"stage.c.x": 1}), method, method.stages[0])
    with pytest.raises(ConfigError, match="stage.a.epochs must be >= 1"):
        stage_values(RunConfig(options={"stage.a.epochs": 0}), method, method.stages[0])
