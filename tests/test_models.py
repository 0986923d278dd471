"""Model creation: timm by name, local weight files, a clear error when ImageNet weights are missing."""

from __future__ import annotations

import pytest
import timm
import torch

from dermbench.components import ModelContext
from dermbench.errors import ConfigError
from dermbench.models.build import build_model, create_timm_model
from dermbench.plugins import load_plugins


def test_timm_model_by_name_with_task_outputs_and_options():
    model = create_timm_model(
        "resnet18", ModelContext(num_classes=7, image_size=32, init="random"), drop_rate=0.4
    )
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 7)
    assert model.drop_rate == 0.4


def test_unknown_model_and_bad_option_are_config_errors():
    reg = load_plugins(autoload=False).registries.models
    ctx = ModelContext(num_classes=3, image_size=32, init="random")
    with pytest.raises(ConfigError, match="unknown model 'resnet_nope'"):
        build_model("resnet_nope", ctx, reg)
    with pytest.raises(ConfigError, match="bad model option"):
        build_model("resnet18", ctx, reg, {"no_such_kwarg": "1"})


def test_init_from_a_local_weights_file_keeps_the_backbone(tmp_path):
    source = timm.create_model("test_resnet", pretrained=False, num_classes=1000)
    path = tmp_path / "weights.pth"
    torch.save(source.state_dict(), path)
    model = create_timm_model("test_resnet", ModelContext(num_classes=5, image_size=32, init=str(path)))
    assert model.get_classifier().out_features == 5
    src, dst = source.state_dict(), model.state_dict()
    backbone = [k for k in src if not k.startswith("fc.")]
    assert backbone and all(torch.equal(src[k], dst[k]) for k in backbone)


def test_init_from_a_missing_or_incompatible_file_is_named(tmp_path):
    ctx = ModelContext(num_classes=5, image_size=32, init=str(tmp_path / "nope.pth"))
    with pytest.raises(ConfigError, match="nope.pth"):
        create_timm_model("test_resnet", ctx)
    wrong = tmp_path / "wrong.pth"
    torch.save({"conv.weight": torch.zeros(1)}, wrong)
    with pytest.raises(ConfigError, match="wrong.pth: cannot load these weights"):
        create_timm_model("test_resnet", ModelContext(num_classes=5, image_size=32, init=str(wrong)))


def test_imagenet_weights_offline_say_what_to_do(monkeypatch):
    import huggingface_hub.constants as hf_constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", "/nonexistent-dermbench-test")
    with pytest.raises(ConfigError, match="--init PATH"):
        create_timm_model("test_resnet", ModelContext(num_classes=5, image_size=32, init="imagenet"))


def test_imagenet_weights_fail_at_once_when_not_cached_and_the_hub_is_unreachable(tmp_path, monkeypatch):
    import socket

    import timm
    from huggingface_hub import constants

    from dermbench.models.build import hub_weights_reachable

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)

    def unreachable(*args, **kwargs):
        raise OSError("no route to host")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    calls = []
    monkeypatch.setattr(timm, "create_model", lambda *a, **k: calls.append(k) or None)
    with pytest.raises(
        ConfigError, match="cannot load ImageNet weights for 'convnext_atto' .*hub cannot be reached"
    ):
        build_model("convnext_atto", ModelContext(3, 32, "imagenet"), {}, {})
    assert calls == []  # no download attempted, so no retries
    snapshot = tmp_path / "hub" / "models--timm--convnext_atto.d2_in1k"
    (snapshot / "refs").mkdir(parents=True)
    (snapshot / "refs" / "main").write_text("abc")
    (snapshot / "snapshots" / "abc").mkdir(parents=True)
    (snapshot / "snapshots" / "abc" / "model.safetensors").write_bytes(b"")
    assert hub_weights_reachable("convnext_atto")  # cached: no network needed
