"""Built-in sampler, predictor and explainer components."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dermbench.plugins import load_plugins
from dermbench.plugins.contract import ExplainerContext, OptimContext, PredictorContext
from dermbench.testing import run_tiny


@pytest.fixture(scope="module")
def reg():
    return load_plugins(autoload=False).registries


def test_balanced_sampler_equalises_classes_and_repeats_per_seed(reg):
    labels = np.array([0] * 900 + [1] * 90 + [2] * 10)
    ctx = OptimContext(lr=None, weight_decay=None, epochs=1, steps_per_epoch=1)
    sampler = reg.samplers.build("balanced", {}, labels, ctx)
    drawn = labels[np.concatenate([sampler.epoch_indices(s) for s in range(20)])]
    share = np.bincount(drawn, minlength=3) / len(drawn)
    assert np.allclose(share, 1 / 3, atol=0.02)
    assert np.array_equal(sampler.epoch_indices(7), sampler.epoch_indices(7))
    plain = reg.samplers.build("balanced", {"power": "0"}, labels, ctx)
    share0 = np.bincount(labels[plain.epoch_indices(0)], minlength=3) / len(labels)
    assert share0[0] == pytest.approx(0.9, abs=0.03)


def test_a_run_with_the_balanced_sampler(tmp_path):
    record = run_tiny(tmp_path, sampler="balanced", epochs=1)
    assert record["config"]["sampler"] == "balanced" and record["status"] == "complete"


def test_tta_predictor_averages_flip_views(reg):
    class LeftBright(torch.nn.Module):
        def forward(self, x):
            left = x[..., : x.shape[-1] // 2].mean(dim=(1, 2, 3))
            return torch.stack([left, torch.zeros_like(left)], 1)

    x = torch.zeros(1, 3, 4, 4)
    x[..., :2] = 1.0
    predict = reg.predictors.build("tta", {"mode": "flips"}, PredictorContext(["left", "none"]))
    got = predict(LeftBright(), x, 8)
    views = [x, x.flip(3), x.flip(2)]  # identity, horizontal, vertical
    expected = torch.stack([torch.softmax(LeftBright()(v), 1) for v in views]).mean(0).numpy()
    assert np.allclose(got, expected, atol=1e-6)
    with pytest.raises(Exception, match="nope"):
        reg.predictors.build("tta", {"mode": "nope"}, PredictorContext(["left", "none"]))


def test_gradcampp_explainer_writes_pngs(reg, tmp_path):
    from dermbench.builtin.tinycnn import TinyCNN

    explain = reg.explainers.build("gradcampp", {}, ExplainerContext(["a", "b"], 32))
    images = np.random.default_rng(0).integers(0, 255, (3, 32, 32, 3), dtype=np.uint8)
    paths = explain(TinyCNN(2).eval(), images, [0, 1, 0], tmp_path, ["a", "b", "c"])
    assert [p.name for p in paths] == ["a.png", "b.png", "c.png"] and all(p.is_file() for p in paths)
