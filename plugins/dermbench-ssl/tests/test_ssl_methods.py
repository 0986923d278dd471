"""The ssl plugin: found through its entry point, recipes as the paper, the three arms run."""

from __future__ import annotations

from importlib import metadata

import dermbench_ssl.plugin as plugin
import pytest

import dermbench_imbalance.plugin as imbalance
from dermbench.errors import ConfigError
from dermbench.run.config import resolve_config

PLUGINS = [("ssl", plugin), ("imbalance", imbalance)]


def test_found_through_the_entry_point():
    eps = {ep.name: ep.value for ep in metadata.entry_points(group="dermbench")}
    assert eps.get("ssl") == "dermbench_ssl.plugin"


def test_recipes_resolve_against_the_registries(dermbench_plugins):
    reg = dermbench_plugins(*PLUGINS).registries
    for method in plugin.METHODS:
        m = reg.methods.get(method.name)
        assert m.plugin == "ssl"
        for stage in m.stages:
            options = reg.stages.get(stage.runner).make_options(stage.options)
            if stage.runner == "supervised":
                reg.losses.get(stage.loss.name).make_options(stage.loss.options)
                assert stage.optimizer.name in reg.optimizers and options.freeze == "backbone"
    assert [s.name for s in reg.methods.get("ssl_vae").stages] == ["pretrain", "frozen", "finetune"]
    assert [s.name for s in reg.methods.get("ssl_random").stages] == ["frozen", "finetune"]


def test_paper_profile_is_the_published_protocol(dermbench_plugins):
    reg = dermbench_plugins(*PLUGINS).registries
    cfg = resolve_config(reg.tasks.get("triage3"), reg.methods.get("ssl_vae"), {}, {"profile": "paper"})
    assert (cfg.model, cfg.init, cfg.image_size, cfg.select) == ("convnext_tiny", "random", 224, "last")
    assert cfg.options["stage.pretrain.lr"] == 1e-8  # as printed (Section III), see the notes
    assert (cfg.options["model.head_hidden"], cfg.options["model.head_dropout"]) == (256, 0.5)
    pre, frozen, fine = reg.methods.get("ssl_vae").stages
    assert (pre.epochs, frozen.epochs, fine.epochs) == (300, 30, 40)  # unfrozen at epoch 30, to 70
    assert frozen.optimizer.name == "adamw_schedulefree" and frozen.optimizer.options["lr"] == 1e-5
    assert fine.options == {"freeze": "backbone", "train_last_stages": 1}
    img = resolve_config(reg.tasks.get("triage3"), reg.methods.get("ssl_imagenet"), {}, {"profile": "quick"})
    assert img.init == "imagenet"
    assert "misprint" in reg.methods.get("ssl_vae").notes


def test_random_arm_runs_frozen_then_fine_tuned(dermbench_run):
    record = dermbench_run(
        method="ssl_random", plugins=PLUGINS, model="convnext_atto", image_size=32,
        options={"stage.frozen.epochs": 2, "stage.finetune.epochs": 2, "model.head_hidden": 16},
    )  # fmt: skip
    assert record["status"] == "complete"
    assert [r["stage"] for r in record["history"]] == ["frozen", "frozen", "finetune", "finetune"]
    report = record["overfitting"]
    assert [s["stage"] for s in report["stages"]] == ["frozen", "finetune"]
    assert set(report["series"]["val_loss"]["slope_per_stage"]) == {"frozen", "finetune"}
    assert [s["loss"]["name"] for s in record["resolved"]["stages"]] == ["focal", "focal"]


def test_imagenet_arm_offline_stops_with_the_weights_message(dermbench_run, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # read at download time: no network retries
    with pytest.raises(ConfigError, match="cannot load ImageNet weights for 'convnext_atto'.*--init PATH"):
        dermbench_run(method="ssl_imagenet", plugins=PLUGINS, model="convnext_atto", image_size=32)
