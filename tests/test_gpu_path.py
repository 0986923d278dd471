"""The device path: torch.compile as a stage option, and the host-to-GPU copy of a batch."""

from __future__ import annotations

import pytest
import torch

from dermbench.errors import ConfigError
from dermbench.stages.device import to_float01
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
