"""Cosine annealing: its length is the stage's epochs as the run resolves them, and the record says so."""

from __future__ import annotations

import math
import types

import pytest

from dermbench.components import Method, Ref, StageRecipe
from dermbench.hookspecs import hookimpl
from dermbench.testing import run_tiny


@hookimpl
def dermbench_register_methods(register):
    register(
        Method("cosine_test", "Adam with cosine annealing", stages=(StageRecipe(scheduler=Ref("cosine")),))
    )


PLUGIN = ("cosine_method", types.SimpleNamespace(dermbench_register_methods=dermbench_register_methods))


def _expected(lr: float, epochs: int) -> list[float]:
    """CosineAnnealingLR(T_max=epochs, eta_min=0) stepped once per epoch: epoch e runs at this rate."""
    return [lr * (1 + math.cos(math.pi * (e - 1) / epochs)) / 2 for e in range(1, epochs + 1)]


@pytest.mark.parametrize("epochs", [2, 4])
def test_the_schedule_spans_the_epochs_the_run_asks_for(tmp_path, epochs):
    record = run_tiny(
        tmp_path, method="cosine_test", plugins=[PLUGIN], epochs=epochs, synthetic_n=90, lr=1e-3
    )
    assert [row["lr"] for row in record["history"]] == pytest.approx(_expected(1e-3, epochs))
    stage = record["resolved"]["stages"][0]
    assert stage["scheduler"] == {"name": "cosine", "options": {}, "epochs": epochs}


def test_a_stage_without_a_scheduler_records_none(tmp_path):
    record = run_tiny(tmp_path, epochs=1, synthetic_n=60)
    assert record["resolved"]["stages"][0]["scheduler"] is None
