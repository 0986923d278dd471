"""The zoo plugin: found through its entry point, each architecture runs on the CPU, the recipe as the paper."""

from __future__ import annotations

from importlib import metadata

import dermbench_zoo.plugin as plugin
import pytest
import torch

from dermbench.errors import ConfigError
from dermbench.plugins.contract import ModelContext
from dermbench.run.config import resolve_config
from dermbench.testing import run_tiny

PLUGINS = [("zoo", plugin)]


def test_found_through_the_entry_point():
    eps = {ep.name: ep.value for ep in metadata.entry_points(group="dermbench")}
    assert eps.get("zoo") == "dermbench_zoo.plugin"


@pytest.mark.parametrize("method", sorted(plugin.ZOO))
def test_every_architecture_runs_under_the_smoke_profile_on_the_cpu(tmp_path, method):
    record = run_tiny(tmp_path, method=method, plugins=PLUGINS, model=plugin.ZOO[method][0],
                      image_size=plugin.ZOO[method][2], synthetic_n=48, batch_size=16)  # fmt: skip
    assert record["status"] == "complete"
    assert record["config"]["model"] == plugin.ZOO[method][0]
    assert record["history"][0]["lr"] == pytest.approx(1e-3)


def test_the_paper_profile_is_the_published_recipe_behind_the_gate(dermbench_plugins):
    reg = dermbench_plugins(*PLUGINS).registries
    cfg = resolve_config(reg.tasks.get("ham7"), reg.methods.get("zoo_inception_v3"), {}, {"profile": "paper"})
    assert (cfg.model, cfg.image_size, cfg.gate, cfg.batch_size) == (
        "inception_v3.tv_in1k",
        299,
        "autoencoder",
        16,
    )
    assert (cfg.early_stopping, cfg.select, cfg.augment) == (5, "val_loss", "blur_affine")
    assert (cfg.split_fractions, cfg.max_per_class) == ((0.83, 0.10, 0.07), 2000)
    (stage,) = reg.methods.get("zoo_resnet50").stages
    assert stage.optimizer.options["lr"] == 1e-3 and stage.scheduler.name == "plateau"


def test_torchvision_models_name_their_classifier_and_refuse_too_small_images(dermbench_plugins):
    reg = dermbench_plugins(*PLUGINS).registries
    model = reg.models.build("alexnet", {}, ModelContext(num_classes=5, image_size=64, init="random"))
    assert model(torch.rand(2, 3, 64, 64)).shape == (2, 5)
    assert model.get_classifier().out_features == 5
    squeeze = reg.models.build("squeezenet1_1", {}, ModelContext(num_classes=3, image_size=32, init="random"))
    assert squeeze(torch.rand(2, 3, 32, 32)).shape == (2, 3)
    with pytest.raises(ConfigError, match="model alexnet: images of at least 63 px are needed, got 32"):
        reg.models.build("alexnet", {}, ModelContext(num_classes=5, image_size=32, init="random"))


def test_torchvision_weights_from_a_file_load_strictly(dermbench_plugins, tmp_path):
    import torchvision

    reg = dermbench_plugins(*PLUGINS).registries
    path = tmp_path / "squeezenet.pt"
    torch.save(torchvision.models.squeezenet1_1(weights=None).state_dict(), path)  # ImageNet's 1000 classes
    model = reg.models.build("squeezenet1_1", {}, ModelContext(num_classes=3, image_size=32, init=str(path)))
    assert model.get_classifier().out_channels == 3  # the 1000-class head is left out, freshly made
    bad = tmp_path / "bad.pt"
    torch.save({"features.0.weight": torch.zeros(1)}, bad)
    with pytest.raises(ConfigError, match="cannot load these weights into 'squeezenet1_1'"):
        reg.models.build("squeezenet1_1", {}, ModelContext(num_classes=3, image_size=32, init=str(bad)))
