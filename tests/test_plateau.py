"""Reduce-on-plateau: a scheduler any method can use, stepped on a validation value."""

from __future__ import annotations

import types

import pytest
import torch

from dermbench.components import Method, Ref, StageRecipe
from dermbench.errors import ConfigError
from dermbench.hookspecs import hookimpl
from dermbench.plugins.contract import OptimContext
from dermbench.testing import make_plugins, run_tiny


def _scheduler(**options):
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([param], lr=1.0)
    reg = make_plugins().registries
    return opt, reg.schedulers.build("plateau", options, opt, OptimContext(None, None, 10, 1))


def test_the_rate_drops_after_the_stated_patience_and_not_before():
    opt, sched = _scheduler(patience=2, factor=0.5)
    lrs = []
    for value in (1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.1):
        sched.step(value)
        lrs.append(opt.param_groups[0]["lr"])
    # epoch 1 sets the best; 2-3 are the two epochs of patience; epoch 4 is the third without
    # improvement: the rate halves, and the count starts again
    assert lrs == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25]


def test_a_monitor_it_cannot_watch_is_an_error_naming_it():
    with pytest.raises(
        ConfigError, match="option monitor must be one of val_loss, val_macro_f1, val_accuracy"
    ):
        _scheduler(monitor="train_loss")


def test_a_run_steps_it_on_the_validation_loss_after_each_epoch(tmp_path):
    never_enough = Ref(
        "plateau", {"patience": 0, "factor": 0.1, "threshold": 10.0}
    )  # no later epoch improves

    @hookimpl
    def dermbench_register_methods(register):
        register(
            Method(
                "plateau_test", "Adam with reduce on plateau", stages=(StageRecipe(scheduler=never_enough),)
            )
        )

    plugin = ("plateau_method", types.SimpleNamespace(dermbench_register_methods=dermbench_register_methods))
    record = run_tiny(tmp_path, method="plateau_test", plugins=[plugin], epochs=3, synthetic_n=90, lr=1e-3)
    assert [row["lr"] for row in record["history"]] == pytest.approx([1e-3, 1e-4, 1e-5])
