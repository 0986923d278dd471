"""The imbalance plugin is found through its entry point and its recipes name real components."""

from __future__ import annotations

from importlib import metadata

import pytest

import dermbench_imbalance
import dermbench_imbalance.plugin as plugin
from dermbench.plugins import load_plugins
from dermbench.run.config import resolve_config

LOSSES = {"wce", "bwcce", "focal", "ldam", "lmf"}
METHODS = {"ce", "wce", "bwcce", "focal", "ldam", "lmf"}


def test_found_through_the_entry_point():
    eps = {ep.name: ep for ep in metadata.entry_points(group="dermbench")}
    assert "imbalance" in eps, "pip install -e plugins/dermbench-imbalance"
    assert eps["imbalance"].value == "dermbench_imbalance.plugin"
    assert eps["imbalance"].dist.version == dermbench_imbalance.__version__


def test_load_plugins_registers_it_under_its_entry_point_name(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("DERMBENCH_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.delenv("DERMBENCH_LOAD_PLUGINS", raising=False)
    loaded = load_plugins()
    info = {p.name: p for p in loaded.info}
    assert info["imbalance"].error is None and info["imbalance"].source == "entry-point"
    reg = loaded.registries
    assert {c.name for c in reg.losses if c.plugin == "imbalance"} == LOSSES
    assert {m.name for m in reg.methods if m.plugin == "imbalance"} == METHODS
    assert reg.losses.get("ce").plugin != "imbalance"  # the core's, not registered again


def test_recipes_resolve_against_the_registries(dermbench_plugins):
    reg = dermbench_plugins(("imbalance", plugin)).registries
    if "adam" not in reg.optimizers or "step" not in reg.schedulers:
        pytest.skip("the core's optimizer 'adam' / scheduler 'step' are not registered yet")
    for name in METHODS:
        method = reg.methods.get(name)
        assert method.plugin == "imbalance" and method.paper == plugin.PAPER
        (stage,) = method.stages
        assert stage.loss.name == name
        reg.losses.get(stage.loss.name).make_options(stage.loss.options)
        adam = reg.optimizers.get(stage.optimizer.name).make_options(stage.optimizer.options)
        assert (adam.lr, adam.weight_decay) == (1e-4, 5e-4)
        step = reg.schedulers.get(stage.scheduler.name).make_options(stage.scheduler.options)
        assert (step.step_size, step.gamma) == (30, 0.1)


def test_paper_profile_is_the_published_protocol(dermbench_plugins):
    reg = dermbench_plugins(("imbalance", plugin)).registries
    cfg = resolve_config(reg.tasks.get("ham7"), reg.methods.get("lmf"), {}, {"profile": "paper"})
    assert (cfg.model, cfg.init, cfg.image_size) == ("tf_efficientnetv2_s.in1k", "imagenet", 224)
    assert (cfg.epochs, cfg.batch_size, cfg.select, cfg.augment) == (100, 32, "val_macro_f1", "none")


def test_lmf_trains_one_epoch_on_the_tiny_task(dermbench_run):
    record = dermbench_run(method="lmf", plugins=[("imbalance", plugin)], epochs=2)
    assert record["status"] == "complete"
    assert record["method"]["plugin"] == "imbalance"
    losses = [row["train_loss"] for row in record["history"]]
    assert len(losses) == 2 and all(loss > 0 for loss in losses)


def test_the_plugin_registers_without_torch_and_names_the_reductions_of_its_losses():
    import dermbench_imbalance.losses as losses
    import dermbench_imbalance.plugin as plugin

    assert plugin.REDUCTIONS == losses.REDUCTIONS
