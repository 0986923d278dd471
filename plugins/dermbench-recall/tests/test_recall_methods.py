"""The recall plugin is found through its entry point and its recipes name real components."""

from __future__ import annotations

from importlib import metadata

import dermbench_recall.plugin as plugin
from dermbench.run.config import resolve_config


def test_found_through_the_entry_point():
    eps = {ep.name: ep.value for ep in metadata.entry_points(group="dermbench")}
    assert eps.get("recall") == "dermbench_recall.plugin"


def test_recipes_resolve_against_the_registries(dermbench_plugins):
    reg = dermbench_plugins(("recall", plugin)).registries
    for method in plugin.METHODS:
        m = reg.methods.get(method.name)
        assert m.plugin == "recall"
        for stage in m.stages:
            assert stage.loss.name in reg.losses and stage.optimizer.name in reg.optimizers
            reg.losses.get(stage.loss.name).make_options(stage.loss.options)
            if stage.scheduler:
                assert stage.scheduler.name in reg.schedulers


def test_paper_profile_is_the_published_protocol(dermbench_plugins):
    reg = dermbench_plugins(("recall", plugin)).registries
    cfg = resolve_config(reg.tasks.get("binary"), reg.methods.get("recall_resnet"), {}, {"profile": "paper"})
    assert (cfg.model, cfg.init, cfg.image_size, cfg.batch_size) == ("resnet50.tv_in1k", "imagenet", 299, 32)
    assert (cfg.early_stopping, cfg.select, cfg.ensemble, cfg.tta) == (7, "val_loss", "cv3", "flips")
    assert cfg.options["model.drop_rate"] == 0.4


def test_full_pipeline_runs_on_the_tiny_task(dermbench_run):
    record = dermbench_run(method="recall_ls", plugins=[("recall", plugin)], epochs=2)
    assert record["status"] == "complete"
    assert len(record["history"]) == 2
    assert record["method"]["plugin"] == "recall"


def test_ablation_preset_produces_the_ladder_table(tmp_path, capsys, dermbench_process_plugins):
    from dermbench.cli.main import main
    from dermbench.plugins import load_plugins

    dermbench_process_plugins(load_plugins(extra=[("recall-inline", _no_op())]))
    args = [
        "sweep",
        "--preset",
        "ablation004",
        "--profile",
        "smoke",
        "--model",
        "tinycnn",
        "--synthetic-n",
        "300",
    ]
    args += ["--quiet", "--out", str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "cache")]
    assert main(args) == 0
    out = capsys.readouterr().out
    table = out[out.index("operating_point.fn") :].splitlines()
    methods = [line.split()[1] for line in table[2:] if line.startswith("binary")]
    assert methods == ["recall_baseline", "recall_dlr", "recall_ls", "recall_cv", "recall_resnet"]
    import json

    records = [json.loads(p.read_text()) for p in (tmp_path / "runs").rglob("record.json")]
    full = next(r for r in records if r["method"]["name"] == "recall_resnet")
    assert full["config"]["ensemble"] == "cv3" and full["config"]["tta"] == "flips"


def _no_op():
    import types

    return types.SimpleNamespace(__name__="nothing")
