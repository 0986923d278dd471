"""The transfer plugin: the four strategies as the paper, each runs on the CPU, and the report."""

from __future__ import annotations

from importlib import metadata

import dermbench_transfer.plugin as plugin
import numpy as np
import pytest
from dermbench_transfer.report import build_report, main

from dermbench.errors import ConfigError
from dermbench.run.config import resolve_config
from dermbench.testing import run_tiny

PLUGINS = [("transfer", plugin)]
CHAIN = {
    "chain": ("edra:synthetic", "dermofit:synthetic"),
    "options": {"data.edra.seed": 1, "data.edra.n": 40, "data.dermofit.seed": 2, "data.dermofit.n": 40},
}
SMOKE = {"model": "resnet18", "synthetic_n": 60, "batch_size": 8, "epochs": 2, "image_size": 16}


def test_found_through_the_entry_point():
    eps = {ep.name: ep.value for ep in metadata.entry_points(group="dermbench")}
    assert eps.get("transfer") == "dermbench_transfer.plugin"


def test_paper_profile_is_the_published_protocol(dermbench_plugins):
    reg = dermbench_plugins(*PLUGINS).registries
    task = reg.tasks.get("dermai13")
    cfg = resolve_config(task, reg.methods.get("seqft"), {}, {"profile": "paper"})
    assert (cfg.model, cfg.init, cfg.image_size, cfg.resize) == (
        "efficientnet_b3",
        "imagenet",
        300,
        "nearest",
    )
    assert (cfg.batch_size, cfg.epochs, cfg.augment) == (13, 21, "affine_brightness")  # 7 blocks x 3 epochs
    for stage in reg.methods.get("seqft").stages:
        assert stage.optimizer.name == "adam" and stage.optimizer.options["lr"] == 1e-4
        assert stage.options["backbone_lr_scale"] == 0.1  # 1e-5 for all but the head
        assert stage.options["unfreeze_every"] == 3 and stage.options["reset_head"] is True
        assert stage.loss.name == "ce" and stage.sampler.name == "class_stratified"
    assert [s.data for s in reg.methods.get("seqft").stages] == ["chain", "target"]
    assert [s.data for s in reg.methods.get("merged").stages] == ["merged"]
    scratch = resolve_config(task, reg.methods.get("scratch"), {}, {"profile": "paper"})
    assert scratch.init == "random" and "unfreeze_every" not in reg.methods.get("scratch").stages[0].options


def test_every_strategy_runs_on_the_cpu_and_records_its_stages(tmp_path):
    records = {}
    for method in ("seqft", "merged", "target_only", "scratch"):
        chain = CHAIN if method in ("seqft", "merged") else {}
        records[method] = run_tiny(tmp_path, method=method, plugins=PLUGINS, **SMOKE, **chain)
        assert records[method]["status"] == "complete"
    stages = [(r["stage"], r["dataset"], r["epoch"]) for r in records["seqft"]["history"]]
    assert stages == [
        ("source:edra", "edra", 1), ("source:edra", "edra", 2), ("source:dermofit", "dermofit", 1),
        ("source:dermofit", "dermofit", 2), ("target", "synthetic", 1), ("target", "synthetic", 2),
    ]  # fmt: skip
    assert all(r["trainable_blocks"][:1] == ["head"] for r in records["seqft"]["history"])
    assert [r["trainable_blocks"] for r in records["target_only"]["history"]] == [
        ["head"],
        ["head", "layer4"],
    ]
    assert "trainable_blocks" not in records["scratch"]["history"][0]
    assert {r["dataset"] for r in records["merged"]["history"]} == {"synthetic+edra+dermofit"}

    text = build_report(tmp_path / "runs")
    f1 = {m: r["metrics"]["test"]["macro_f1"] for m, r in records.items()}
    gain = 100 * (f1["seqft"] - f1["target_only"])
    assert "| seqft [edra -> dermofit] | 1 |" in text and "flags (seeds)" in text
    assert (
        "over target_only" not in text
    )  # a two-dataset chain's step before is the one-dataset chain, not run
    assert f"{100 * f1['scratch']:.2f} ± 0.00" in text
    assert "### tiny3, seqft [edra -> dermofit]: per class" in text
    assert np.isfinite(gain)


def test_the_report_gives_the_gain_of_each_chain_step(tmp_path):
    edra = {"data.edra.seed": 1, "data.edra.n": 40}
    one = run_tiny(tmp_path, method="seqft", plugins=PLUGINS, **SMOKE, chain=CHAIN["chain"][:1], options=edra)
    base = run_tiny(tmp_path, method="target_only", plugins=PLUGINS, **SMOKE)
    text = build_report(tmp_path / "runs")
    gain = 100 * (one["metrics"]["test"]["macro_f1"] - base["metrics"]["test"]["macro_f1"])
    assert f"{gain:+.2f} (over target_only)" in text


def test_the_report_of_a_missing_folder_is_a_one_line_error(tmp_path, capsys):
    assert main([str(tmp_path / "nothing")]) == 2
    assert "error: results folder" in capsys.readouterr().err


def test_seqft_without_a_chain_says_what_to_name(tmp_path):
    with pytest.raises(ConfigError, match="name at least one with --chain"):
        run_tiny(tmp_path, method="seqft", plugins=PLUGINS, **SMOKE)


def test_a_class_never_predicted_has_precision_zero_and_an_absent_class_is_blank(tmp_path):
    from dermbench_transfer.report import Arm, per_class_table

    from dermbench.leaderboard.records import Run

    def run(precision):
        per_class = {"a": {"precision": precision, "recall": 0.0, "f1": None if precision is None else 0.0, "support": 3},
                     "b": {"precision": None, "recall": None, "f1": None, "support": 0}}  # fmt: skip
        return Run(tmp_path, {"task": {"classes": ["a", "b"]}, "metrics": {"test": {"per_class": per_class}}})

    lines = per_class_table(Arm("t", "seqft", ("x",)), [run(None), run(0.5)])
    assert "| a | 3 | 0.00 ± 0.00 | 25.00 ± 35.36 | 0.00 ± 0.00 |" in lines
    assert "| b | 0 |  |  |  |" in lines
