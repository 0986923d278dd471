"""--precision: the plan chosen by timing, numbers that stay right in bf16, and a record and board
that never mix precisions silently.

Tolerances. bfloat16 keeps 8 significant bits, so one rounding is off by at most 2^-9 (0.2%)
relative. Under autocast a linear layer rounds its inputs and weights to bf16 and accumulates in
fp32, so its outputs carry about two such roundings; the losses are computed in fp32 from logits
cast back to fp32, so their values differ from fp32 by the logits' rounding times the loss's
slope: 2% of the loss covers that with room for the exp/log of a softmax. Over one epoch of
training the rounding also moves the weights, and the difference compounds step by step; one
epoch of the tiny task (a handful of Adam steps) stays within 0.01 of fp32's loss (measured:
2e-4), well below the loss's own fall over that epoch.
"""

from __future__ import annotations

import pytest
import torch

import dermbench_imbalance.plugin as imbalance
from dermbench.leaderboard.records import Run
from dermbench.plugins.contract import LossContext
from dermbench.stages import precision
from dermbench.stages.device import to_model_layout
from dermbench.stages.precision import Plan, choose_plan, pick_fastest, use_plan
from dermbench.testing import make_plugins, run_tiny

LOSSES = ("ce", "wce", "bwcce", "focal", "ldam", "lmf")


def _logits_both_ways(n: int = 64, features: int = 48, classes: int = 5):
    gen = torch.Generator().manual_seed(0)
    layer = torch.nn.Linear(features, classes)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(classes, features, generator=gen) * 0.3)
    x = torch.randn(n, features, generator=gen)
    y = torch.randint(0, classes, (n,), generator=gen)
    with torch.no_grad():
        fp32 = layer(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = layer(x)
    return fp32, bf16, y


@pytest.mark.parametrize("name", LOSSES)
def test_each_loss_in_bf16_autocast_equals_fp32_within_two_percent(name):
    fp32, bf16, y = _logits_both_ways()
    assert bf16.dtype == torch.bfloat16 and not torch.equal(bf16.float(), fp32)  # autocast did round
    reg = make_plugins(("imbalance", imbalance)).registries
    counts = [40, 12, 6, 4, 2]
    ctx = LossContext(5, counts, [f"c{i}" for i in range(5)], "cpu")
    loss_fn = reg.losses.call(name, reg.losses.get(name).make_options({}), ctx)
    exact = float(loss_fn(fp32, y))
    rounded = loss_fn(bf16.float(), y)  # as training computes it: the logits cast back to fp32
    assert rounded.dtype == torch.float32
    assert float(rounded) == pytest.approx(exact, rel=0.02)


def test_auto_without_native_bf16_is_fp32_without_timing(monkeypatch):
    monkeypatch.setattr(precision, "bf16_native", lambda device: False)

    def never():
        raise AssertionError("timed although there is no choice")

    plan = choose_plan("auto", torch.device("cpu"), never)
    assert (plan.dtype, plan.channels_last, plan.candidates) == ("fp32", None, ())
    assert "no native bf16" in plan.set_by


def test_auto_times_every_candidate_and_leaves_the_rng_as_it_was(monkeypatch):
    monkeypatch.setattr(precision, "bf16_native", lambda device: True)
    seen: list[tuple[str, bool | None]] = []

    def make_step():
        def step():
            plan = precision.current_plan(torch.device("cpu"))
            seen.append((plan.dtype, plan.channels_last))
            torch.rand(3)  # a step draws from the global RNG, as dropout does

        return step

    torch.manual_seed(5)
    plan = choose_plan("auto", torch.device("cpu"), make_step)
    after = torch.rand(2)
    torch.manual_seed(5)
    assert torch.equal(after, torch.rand(2))
    pairs = {("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True)}
    assert set(seen) == pairs and len(seen) == 4 * (1 + precision.TIMING_ROUNDS * precision.STEPS_PER_ROUND)
    assert {(c["dtype"], c["channels_last"]) for c in plan.candidates} == pairs
    assert all(c["ms_per_step"] >= 0 for c in plan.candidates)


def test_the_fastest_wins_only_by_more_than_the_margin():
    def timings(*ms):
        pairs = [("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True)]
        return [
            {"dtype": d, "channels_last": c, "ms_per_step": m} for (d, c), m in zip(pairs, ms, strict=True)
        ]

    chosen = pick_fastest("auto", timings(100.0, 90.0, 60.0, 55.0))
    assert (chosen.dtype, chosen.channels_last) == ("bf16", True)
    chosen = pick_fastest("auto", timings(100.0, 97.0, 99.0, 98.0))  # within 5%: noise, fp32 NCHW stays
    assert (chosen.dtype, chosen.channels_last) == ("fp32", False)
    assert len(chosen.candidates) == 4


def test_the_plan_sets_the_layout_and_autocast():
    x = torch.zeros(2, 3, 16, 16)
    with use_plan(Plan("bf16", True)):
        assert to_model_layout(x).is_contiguous(memory_format=torch.channels_last)
        with precision.autocast(torch.device("cpu")):
            assert torch.nn.Linear(4, 2)(torch.zeros(1, 4)).dtype == torch.bfloat16
    with use_plan(Plan("fp32", False)):
        assert to_model_layout(x.to(memory_format=torch.channels_last)).is_contiguous()
        with precision.autocast(torch.device("cpu")):
            assert torch.nn.Linear(4, 2)(torch.zeros(1, 4)).dtype == torch.float32


def test_one_epoch_in_bf16_follows_fp32_and_each_record_names_its_precision(tmp_path):
    fp32 = run_tiny(tmp_path / "fp32", precision="fp32", synthetic_n=160)
    bf16 = run_tiny(tmp_path / "bf16", precision="bf16", synthetic_n=160)
    assert fp32["environment"]["precision"]["dtype"] == "fp32"
    assert bf16["environment"]["precision"]["dtype"] == "bf16"
    assert fp32["run_id"] != bf16["run_id"]  # a different computation, a different run
    for key in ("train_loss", "val_loss"):
        assert bf16["history"][0][key] == pytest.approx(fp32["history"][0][key], abs=0.01), key
    assert bf16["history"][0]["train_loss"] != fp32["history"][0]["train_loss"]  # bf16 did run


def test_an_auto_run_records_the_candidates_and_the_choice(tmp_path, monkeypatch):
    monkeypatch.setattr(precision, "bf16_native", lambda device: True)
    record = run_tiny(tmp_path, synthetic_n=120)
    described = record["environment"]["precision"]
    assert described["requested"] == "auto" and len(described["candidates"]) == 4
    fastest = min(described["candidates"], key=lambda c: c["ms_per_step"])
    reference = described["candidates"][0]
    chosen = (described["dtype"], described["channels_last"])
    assert chosen in {(fastest["dtype"], fastest["channels_last"]), ("fp32", False)}
    assert record["environment"]["memory_layout"]["set_by"] == described["set_by"]
    assert reference["dtype"] == "fp32" and reference["channels_last"] is False


def test_a_resumed_run_keeps_the_precision_it_started_in(tmp_path):
    earlier = Plan("bf16", True, "auto", "timed").describe()
    assert Plan.from_record(earlier).dtype == "bf16" and Plan.from_record(earlier).channels_last is True


def test_runs_in_two_precisions_are_two_entries_and_two_budgets():
    def record(device, dtype):
        env = {"device": device, **({"precision": {"dtype": dtype}} if dtype else {})}
        return {"config": {"model": "m", "epochs": 2, "seed": 0}, "environment": env}

    old_cpu, old_gpu = (
        Run(dir=None, record=record("cpu", None)),
        Run(dir=None, record=record("cuda:H100", None)),
    )
    new_fp32, new_bf16 = (
        Run(dir=None, record=record("cpu", "fp32")),
        Run(dir=None, record=record("cpu", "bf16")),
    )
    assert old_cpu.precision() == "fp32" and old_gpu.precision() == "bf16"
    assert old_cpu.variant_id == new_fp32.variant_id != new_bf16.variant_id
    assert new_fp32.budget()["precision"] == "fp32" and new_bf16.budget()["precision"] == "bf16"
