"""The device path: torch.compile as a stage option, the host-to-GPU copy of a batch, and the
memory layout a batch is fed in."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dermbench.errors import ConfigError
from dermbench.stages.augment import flips
from dermbench.stages.device import (
    CPU_CHANNELS_LAST_FROM,
    LAYOUT_ENV,
    layout_rule,
    to_float01,
    to_model_layout,
)
from dermbench.testing import run_tiny


def test_a_compiled_network_trains_to_the_same_metrics_and_says_so(tmp_path):
    plain = run_tiny(tmp_path / "plain", epochs=2, synthetic_n=120)
    compiled = run_tiny(tmp_path / "compiled", epochs=2, synthetic_n=120, options={"stage.compile": "eager"})
    assert compiled["metrics"]["test"]["macro_f1"] == pytest.approx(plain["metrics"]["test"]["macro_f1"])
    assert compiled["history"][-1]["train_loss"] == pytest.approx(
        plain["history"][-1]["train_loss"], rel=1e-5
    )
    stages = compiled["resolved"]["stages"]
    assert [s.get("compile") for s in stages] == ["eager"] and "compile" not in plain["resolved"]["stages"][0]


def test_an_unknown_compile_backend_is_a_one_line_error_naming_the_option(tmp_path):
    with pytest.raises(ConfigError, match=r"option compile='nosuch': InvalidBackend"):
        run_tiny(tmp_path, epochs=1, synthetic_n=120, options={"stage.compile": "nosuch"})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_batch_reaches_the_gpu_with_the_values_of_the_host_path():
    batch = torch.randint(0, 256, (4, 8, 8, 3), dtype=torch.uint8)
    on_gpu = to_float01(batch, torch.device("cuda"))
    torch.cuda.synchronize()
    assert torch.equal(on_gpu.cpu(), to_float01(batch, torch.device("cpu")))


def _flipped_batch(size: int) -> torch.Tensor:
    """A batch as the flips augmentation leaves it: every image transposed, so its strides are
    permuted (neither contiguous NCHW nor channels-last)."""
    x = to_float01(torch.randint(0, 256, (4, size, size, 3), dtype=torch.uint8), torch.device("cpu"))
    return flips(x, torch.tensor([[1.0, 1.0, 0.0]] * 4))


def test_a_large_cpu_batch_is_fed_channels_last_and_a_small_one_contiguous_with_its_values():
    large, small = _flipped_batch(CPU_CHANNELS_LAST_FROM), _flipped_batch(CPU_CHANNELS_LAST_FROM // 2)
    # the state the rule mends: the transposed batch is in neither layout (the slow convolutions)
    assert not large.is_contiguous() and not large.is_contiguous(memory_format=torch.channels_last)
    fed_large, fed_small = to_model_layout(large), to_model_layout(small)
    assert fed_large.is_contiguous(memory_format=torch.channels_last) and not fed_large.is_contiguous()
    assert fed_small.is_contiguous()
    assert torch.equal(fed_large, large) and torch.equal(fed_small, small)
    features = torch.randn(4, 10)
    assert to_model_layout(features) is features  # not an image batch: left as it is


def test_the_environment_moves_the_cpu_layout_crossover_and_the_record_says_so(monkeypatch):
    large, small = _flipped_batch(CPU_CHANNELS_LAST_FROM), _flipped_batch(CPU_CHANNELS_LAST_FROM // 2)
    assert layout_rule(torch.device("cpu"))["set_by"] == "dermbench"
    monkeypatch.setenv(LAYOUT_ENV, "0")  # always channels-last
    assert to_model_layout(small).is_contiguous(memory_format=torch.channels_last)
    assert layout_rule(torch.device("cpu")) == {
        "layout": "channels_last from cpu_channels_last_from_px up, contiguous NCHW below",
        "cpu_channels_last_from_px": 0,
        "set_by": f"the environment ({LAYOUT_ENV})",
    }
    monkeypatch.setenv(LAYOUT_ENV, "100000")  # never
    assert to_model_layout(large).is_contiguous()
    for bad in ("big", "\u00b2"):  # a word, and a digit that int() refuses
        monkeypatch.setenv(LAYOUT_ENV, bad)
        with pytest.raises(ConfigError, match=f"{LAYOUT_ENV}={bad!r}: expected a side in pixels"):
            to_model_layout(large)


def test_a_malformed_layout_setting_fails_the_run_before_its_folder_exists(tmp_path, monkeypatch, capsys):
    from dermbench.cli.main import main

    monkeypatch.setenv(LAYOUT_ENV, "-5")
    argv = ["run", "--task", "ham7", "--method", "erm", "--profile", "smoke", "--synthetic-n", "60"]
    assert main([*argv, "--out", str(tmp_path / "runs"), "--quiet"]) == 2
    assert f"{LAYOUT_ENV}='-5': expected a side in pixels" in capsys.readouterr().err
    assert not (tmp_path / "runs" / "ham7").exists()


def test_the_layout_benchmark_runs_in_smoke_mode_and_names_the_layout_fed():
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "layout.py"
    out = subprocess.run(
        [sys.executable, str(script), "--smoke"], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    rows = [line.split() for line in out.stdout.splitlines()[2:4]]
    assert [r[0] for r in rows] == ["16", "32"]
    for _size, contiguous, channels_last, ratio, fed in rows:
        assert float(contiguous) > 0 and float(channels_last) > 0
        assert float(ratio) == pytest.approx(float(channels_last) / float(contiguous), abs=0.06)
        assert fed == "contiguous"  # below CPU_CHANNELS_LAST_FROM on the CPU
