"""The plugin contract as code: every kind has a hookspec, a docs row and a signature the core keeps.

A spy plugin registers one component of every factory kind, each wrapping a real one and
recording the arguments the core hands to the factory and to what it returns. One real run (and
one ``explain``) goes through the core, and every recorded call is checked against the kind's
``Protocol`` in :mod:`dermbench.plugins.contract`. Tests at the end break the contract on purpose
and show the checks fail.
"""

from __future__ import annotations

import inspect
import re
import types
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from dermbench import hookspecs
from dermbench.builtin.losses import CEOptions, make_ce
from dermbench.builtin.optim import AdamOptions, make_adam
from dermbench.builtin.tinycnn import TinyCNN
from dermbench.components import Component, Method, Ref, StageRecipe, SweepPreset
from dermbench.data.synthetic import SyntheticOptions, load_synthetic
from dermbench.explain.run import explain_run
from dermbench.hookspecs import hookimpl
from dermbench.plugins import contract
from dermbench.plugins.contract import CONTRACTS, ContractError, MixedBatch, StageResult, check_call, describe
from dermbench.stages.supervised import SupervisedOptions, run_supervised
from dermbench.testing import TINY_TASK, run_tiny

DOCS = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"


class Recorder:
    """The arguments of the first call of each (kind, role) the core made."""

    def __init__(self) -> None:
        self.calls: dict[tuple[str, str], tuple] = {}

    def note(self, kind: str, role: str, args: tuple) -> None:
        self.calls.setdefault((kind, role), args)


@dataclass(frozen=True)
class LrOptions:
    lr: float = 1e-3


def spy_plugin(rec: Recorder) -> types.SimpleNamespace:
    """A plugin registering a recording component of every factory kind, and a method using them."""

    def factory(kind, make):
        def build(options, *args):
            rec.note(kind, "factory", (options, *args))
            return make(options, *args)

        return build

    class SpyLoss(torch.nn.Module):
        def __init__(self, ctx):
            super().__init__()
            self.inner = make_ce(CEOptions(), ctx)

        def forward(self, logits, targets):
            rec.note("losses", "product", (logits, targets))
            return self.inner(logits, targets)

    class SpySampler:
        def __init__(self, labels):
            self.n = len(labels)

        def epoch_indices(self, seed):
            rec.note("samplers", "product", (seed,))
            return np.random.default_rng(seed).permutation(self.n)

    def mix(images, targets, gen):
        rec.note("batch_transforms", "product", (images, targets, gen))
        return MixedBatch(images, ((targets, 1.0),))

    class SpyStep:
        key = "spy_posthoc"

        def fit(self, y, probs, frame):
            rec.note("posthoc", "fit", (y, probs, frame))

        def apply(self, y, probs, frame):
            rec.note("posthoc", "product", (y, probs, frame))
            return {"n": len(y)}

    def predict(model, images, batch_size):
        rec.note("predictors", "product", (model, images, batch_size))
        with torch.no_grad():
            return torch.softmax(model(images).float(), 1).cpu().numpy()

    def explain(model, images, targets, out_dir, names):
        rec.note("explainers", "product", (model, images, targets, out_dir, names))
        return [Path(out_dir) / f"{n}.png" for n in names]

    def metric(y, probs, frame):
        rec.note("metrics", "product", (y, probs, frame))
        return float(len(y))

    class SpyLauncher:
        def __init__(self, ctx):
            self.ctx = ctx

        def launch(self, jobs, progress):
            from dermbench.launch.jobs import run_job

            rec.note("launchers", "product", (jobs, progress))
            progress.started(len(jobs))
            outcomes = [run_job(job, self.ctx.plugins) for job in jobs]
            for o in outcomes:
                progress.finished(o)
            return outcomes

    class SpySegmenter:
        def __init__(self, ctx):
            self.model, self.resolved = torch.nn.Identity(), {"spy": True}

        def fit(self, images, masks):
            return [{"epoch": 1, "train_loss": 0.0}]

        def predict(self, images):
            rec.note("segmenters", "product", (images,))
            return images.mean(axis=-1) > 128

    makers = {
        "segmenters": lambda o, ctx: SpySegmenter(ctx),
        "datasets": lambda o, path: load_synthetic(
            SyntheticOptions(n=120, label_source="task", priors=dict(TINY_TASK.synthetic_priors))
        ),
        "models": lambda o, ctx: TinyCNN(ctx.num_classes, width=8),
        "losses": lambda o, ctx: SpyLoss(ctx),
        "optimizers": lambda o, groups, ctx: make_adam(AdamOptions(lr=o.lr), groups, ctx),
        "schedulers": lambda o, opt, ctx: torch.optim.lr_scheduler.StepLR(opt, 1),
        "samplers": lambda o, labels, ctx: SpySampler(labels),
        "batch_transforms": lambda o, ctx: mix,
        "stages": lambda o, ctx: run_supervised(
            SupervisedOptions(batch_transform="spy_batch_transforms"), ctx
        ),
        "posthoc": lambda o, ctx: SpyStep(),
        "predictors": lambda o, ctx: predict,
        "explainers": lambda o, ctx: explain,
        "metrics": lambda o, task: metric,
        "launchers": lambda o, ctx: SpyLauncher(ctx),
    }
    options = {"optimizers": LrOptions}
    stage = StageRecipe(
        runner="spy_stages",
        loss=Ref("spy_losses"),
        optimizer=Ref("spy_optimizers"),
        scheduler=Ref("spy_schedulers"),
        sampler=Ref("spy_samplers"),
    )
    method = Method(
        "spy",
        "every component a spy",
        stages=(stage,),
        posthoc=(Ref("spy_posthoc"),),
        predictor=Ref("spy_predictors"),
    )
    ns = types.SimpleNamespace(__name__="spy")
    for kind, make in makers.items():
        comp = Component(
            f"spy_{kind}",
            factory(kind, make),
            f"spy {kind}",
            **({"options": options[kind]} if kind in options else {}),
        )
        setattr(ns, f"dermbench_register_{kind}", hookimpl(_registering(comp, f"dermbench_register_{kind}")))
    ns.dermbench_register_methods = hookimpl(_registering(method, "dermbench_register_methods"))
    preset = SweepPreset("spy_sweep", "a preset", tasks=("tiny3",), methods=("spy",))
    ns.dermbench_register_sweeps = hookimpl(_registering(preset, "dermbench_register_sweeps"))
    return ns


def _registering(item, name):
    def hook(register):
        register(item)

    hook.__name__ = name
    return hook


@pytest.fixture(scope="module")
def spied(tmp_path_factory) -> Recorder:
    """One real run and one explain of the spy method; what the core called, with what."""
    from dermbench.plugins import manager

    tmp = tmp_path_factory.mktemp("spy")
    rec = Recorder()
    plugin = spy_plugin(rec)
    (tmp / "data").mkdir()
    record = run_tiny(
        tmp,
        method="spy",
        plugins=[("spy", plugin)],
        data={"spy_datasets": str(tmp / "data")},
        model="spy_models",
        select="val_loss",
    )
    assert record["status"] == "complete"
    assert record["metrics"]["test"]["spy_posthoc"]["n"] == record["metrics"]["test"]["n"]
    saved, manager._cached = manager._cached, run_tiny_plugins(plugin)
    try:
        run_dir = next((tmp / "runs").rglob("record.json")).parent
        explain_run(run_dir, n=1, progress=False, log=lambda *a: None, explainer="spy_explainers")
    finally:
        manager._cached = saved
    from dermbench.launch.sweep import SweepRequest, run_sweep

    settings = {"profile": "smoke", "model": "tinycnn", "synthetic_n": 120, "out": str(tmp / "sweep"),
                "cache_dir": str(tmp / "cache"), "device": "cpu"}  # fmt: skip
    request = SweepRequest(
        tasks=("tiny3",), methods=("erm",), settings=settings, quiet=True, launcher="spy_launchers"
    )
    result = run_sweep(request, run_tiny_plugins(plugin), log=lambda *a: None)
    assert result.failures == [] and len(result.records) == 1
    _spy_segmentation(tmp, plugin)
    return rec


def _spy_segmentation(tmp: Path, plugin) -> None:
    """One ``dermbench segment`` run of the spy segmenter on a few written masks."""
    import numpy as np
    from PIL import Image

    from dermbench.segmentation.run import SegmentationConfig, run_segmentation

    root = tmp / "isic_task1"
    root.mkdir()
    for i in range(10):
        Image.new("RGB", (16, 16), (40 * (i % 5), 90, 160)).save(root / f"ISIC_{i:07d}.jpg")
        Image.fromarray(np.eye(16, dtype=np.uint8) * 255).save(root / f"ISIC_{i:07d}_segmentation.png")
    cfg = SegmentationConfig(method="spy_segmenters", masks=f"isic2018_task1={root}", image_size=16, n_boot=5,
                             out=str(tmp / "seg"))  # fmt: skip
    record, _ = run_segmentation(cfg, run_tiny_plugins(plugin).registries)
    assert record["resolved"]["spy"] is True


def run_tiny_plugins(plugin):
    from dermbench.testing import make_plugins

    return make_plugins(("spy", plugin))


FACTORY_KINDS = [k for k, c in CONTRACTS.items() if c.factory is not None]
PRODUCT_KINDS = [k for k, c in CONTRACTS.items() if c.product is not None]


def test_the_spy_plugin_covers_every_factory_kind():
    ns = spy_plugin(Recorder())
    assert {k for k in CONTRACTS if hasattr(ns, f"dermbench_register_{k}")} == set(CONTRACTS) - {"tasks"}


@pytest.mark.parametrize("kind", FACTORY_KINDS)
def test_the_core_calls_each_factory_as_documented(spied, kind):
    args = spied.calls.get((kind, "factory"))
    assert args is not None, f"the run never built a {kind} component"
    assert check_call(CONTRACTS[kind].factory, args) == []


@pytest.mark.parametrize("kind", PRODUCT_KINDS)
def test_the_core_calls_each_product_as_documented(spied, kind):
    c = CONTRACTS[kind]
    args = spied.calls.get((kind, "product"))
    assert args is not None, f"the run never called what a {kind} factory returned"
    assert check_call(c.product, args, c.product_method) == []


def test_posthoc_fit_is_called_as_documented(spied):
    assert check_call(contract.PosthocStep, spied.calls[("posthoc", "fit")], "fit") == []


def test_every_kind_has_a_hookspec_with_a_param_line_per_argument():
    for kind in CONTRACTS:
        spec = getattr(hookspecs, f"dermbench_register_{kind}", None)
        assert spec is not None, f"no hookspec for {kind}"
    for name in (n for n in dir(hookspecs) if n.startswith("dermbench_")):
        fn = getattr(hookspecs, name)
        for param in inspect.signature(fn).parameters:
            assert f":param {param}:" in (fn.__doc__ or ""), f"{name} documents no :param {param}:"


def test_every_kind_has_a_docs_row_showing_the_signature_the_core_calls():
    rows = {
        m.group(1): m.group(0)
        for m in re.finditer(r"^\| `dermbench_register_(\w+)` \|.*$", DOCS.read_text(), re.M)
    }
    assert set(rows) == set(CONTRACTS)
    for kind, c in CONTRACTS.items():
        if c.factory is not None:
            assert f"`factory{describe(c.factory)}`" in rows[kind], (kind, describe(c.factory))
        if c.product is not None:
            assert describe(c.product, c.product_method) in rows[kind], (
                kind,
                describe(c.product, c.product_method),
            )


# --- breaking the contract on purpose ------------------------------------------------------------


class TwoArgPredictor:
    """A predictor signature the core does not keep: no batch size."""

    def __call__(self, model: torch.nn.Module, images: torch.Tensor, /) -> np.ndarray: ...


class ContextLossFactory:
    """A loss factory documented with a context the core does not pass."""

    def __call__(self, options: object, ctx: contract.ModelContext, /) -> torch.nn.Module: ...


def test_a_product_signature_the_core_does_not_keep_is_caught(spied):
    problems = check_call(TwoArgPredictor, spied.calls[("predictors", "product")])
    assert problems and "cannot take 3 argument(s)" in problems[0]


def test_a_factory_signature_the_core_does_not_keep_fails_the_run(tmp_path, monkeypatch):
    broken = dict(
        CONTRACTS, losses=contract.Contract("losses", "Component", ContextLossFactory, contract.Loss)
    )
    monkeypatch.setattr(contract, "CONTRACTS", broken)
    with pytest.raises(
        ContractError, match="losses factory breaks its contract.*ctx should be ModelContext, got LossContext"
    ):
        run_tiny(tmp_path)


def test_every_context_and_result_is_frozen():
    """Contexts are read, never written: a factory returns what it made instead."""
    import dataclasses

    shared = [v for k, v in vars(contract).items() if k.endswith(("Context", "Result")) or k == "MixedBatch"]
    assert len(shared) >= 9
    for cls in shared:
        assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen, cls.__name__
    with pytest.raises(dataclasses.FrozenInstanceError):
        StageResult(best_epoch=3).best_epoch = 4  # type: ignore[misc]


def test_the_api_reference_is_what_the_code_generates():
    """docs/api.md is generated (python -m dermbench.plugins.reference > docs/api.md): never stale."""
    from pathlib import Path

    from dermbench.plugins.reference import render

    committed = (Path(__file__).resolve().parents[1] / "docs" / "api.md").read_text()
    assert committed == render(), (
        "docs/api.md is stale: run python -m dermbench.plugins.reference > docs/api.md"
    )
    assert "### `dermbench_register_losses(" in committed and "### fixture `dermbench_run`" in committed
