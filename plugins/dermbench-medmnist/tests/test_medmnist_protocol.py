"""The MedMNIST protocol: the 28 px network's layer shapes, the milestones of 10 and 100 epochs as
the official script's MultiStepLR applies them, ACC/AUC equal to medmnist.Evaluator's, the
recorded normalisation and checkpoint rule, and a run on real DermaMNIST images."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import dermbench_medmnist.plugin as plugin
import numpy as np
import pandas as pd
import pytest
import torch
from dermbench_medmnist.models import build_resnet

from dermbench.builtin.optim import MultiStepOptions, make_multistep, multistep_milestones
from dermbench.errors import ConfigError
from dermbench.evaluation.metrics import classification_report
from dermbench.plugins.contract import OptimContext
from dermbench.testing import run_tiny

PLUGINS = [("medmnist", plugin)]
DERMAMNIST = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "dermamnist"


def test_found_through_the_entry_point():
    eps = {ep.name: ep.value for ep in metadata.entry_points(group="dermbench")}
    assert eps.get("medmnist") == "dermbench_medmnist.plugin"


def test_the_28_px_resnet18_keeps_28_x_28_in_layer1_and_ends_at_4_x_4():
    model = build_resnet("resnet18", 7, 28, "auto").net
    shapes = {}
    for name in ("conv1", "layer1", "layer2", "layer3", "layer4"):
        getattr(model, name).register_forward_hook(
            lambda m, i, o, name=name: shapes.__setitem__(name, tuple(o.shape[1:]))
        )
    assert model(torch.zeros(2, 3, 28, 28)).shape == (2, 7)
    assert shapes == {"conv1": (64, 28, 28), "layer1": (64, 28, 28), "layer2": (128, 14, 14),
                      "layer3": (256, 7, 7), "layer4": (512, 4, 4)}  # fmt: skip
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, torch.nn.Identity)
    # the CIFAR ResNet-18 of MedMNIST's models.py has 11,172,423 parameters for 7 classes
    assert sum(p.numel() for p in model.parameters()) == 11_172_423
    standard = build_resnet("resnet18", 7, 64, "auto").net
    assert standard.conv1.kernel_size == (7, 7) and isinstance(standard.maxpool, torch.nn.MaxPool2d)
    assert build_resnet("resnet18", 7, 64, "cifar").net.conv1.kernel_size == (3, 3)
    with pytest.raises(ConfigError, match="stem must be one of auto, cifar, torchvision"):
        build_resnet("resnet18", 7, 28, "wide")


@pytest.mark.parametrize(("epochs", "expected"), [(10, [5]), (100, [50, 75]), (8, [4, 6])])
def test_the_milestones_are_those_the_official_multisteplr_reaches(epochs, expected):
    assert multistep_milestones((0.5, 0.75), epochs) == expected

    def lrs(scheduler_of):
        opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
        sched = scheduler_of(opt)
        out = []
        for _ in range(epochs):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return out

    official = lrs(
        lambda o: torch.optim.lr_scheduler.MultiStepLR(o, milestones=[0.5 * epochs, 0.75 * epochs], gamma=0.1)
    )
    ours = lrs(lambda o: make_multistep(MultiStepOptions(), o, OptimContext(1e-3, None, epochs, 10)))
    assert ours == pytest.approx(official)


def test_acc_and_auc_equal_medmnist_evaluator_on_fixed_arrays(tmp_path):
    medmnist = pytest.importorskip("medmnist")
    rng = np.random.default_rng(0)
    y = np.concatenate([np.arange(7), rng.integers(0, 7, 193)])
    scores = rng.dirichlet(np.ones(7), len(y))
    scores[np.arange(len(y)), y] += rng.random(len(y)) * 0.5  # better than chance, not perfect
    scores /= scores.sum(1, keepdims=True)
    np.savez(tmp_path / "dermamnist.npz", test_labels=y.reshape(-1, 1), train_labels=y[:1].reshape(-1, 1),
             val_labels=y[:1].reshape(-1, 1))  # fmt: skip
    auc, acc = medmnist.Evaluator("dermamnist", "test", root=str(tmp_path)).evaluate(scores)
    ours = classification_report(y, scores, [str(c) for c in range(7)])
    assert ours["accuracy"] == pytest.approx(acc, abs=1e-12)
    assert ours["macro_auc"] == pytest.approx(auc, abs=1e-12)


def test_a_run_records_the_normalisation_and_scores_the_best_validation_auc(tmp_path):
    record = run_tiny(tmp_path, method="medmnist_resnet18", plugins=PLUGINS, model="medmnist_resnet18",
                      image_size=28, epochs=3, synthetic_n=150, batch_size=32)  # fmt: skip
    assert record["resolved"]["input_normalisation"]["mean"] == [0.5, 0.5, 0.5]
    assert record["config"]["select"] == "val_macro_auc" and record["config"]["augment"] == "none"
    aucs = [row["val_macro_auc"] for row in record["history"]]
    assert record["best_epoch"] == record["history"][int(np.argmax(aucs))]["epoch"]  # the first best
    assert [row["lr"] for row in record["history"]] == pytest.approx(
        [1e-3, 1e-3, 1e-3]
    )  # 1.5, 2.25: never whole
    with pytest.raises(ConfigError, match="trains from random weights"):
        run_tiny(tmp_path / "b", method="medmnist_resnet18", plugins=PLUGINS, model="medmnist_resnet18",
                 image_size=28, init="imagenet")  # fmt: skip


def test_real_dermamnist_images_train_on_the_official_split(tmp_path):
    src = DERMAMNIST
    if not (src / "labels.csv").is_file():
        pytest.skip(f"../shared/data is absent: no DermaMNIST at {src}")
    labels = pd.read_csv(src / "labels.csv")
    subset = labels.groupby(["split", "dx"]).head(20)  # every class in every split
    (tmp_path / "d").mkdir()
    subset.to_csv(tmp_path / "d" / "labels.csv", index=False)
    (tmp_path / "d" / "images").symlink_to(src / "images")
    record = run_tiny(tmp_path, task="ham7", method="medmnist_resnet18", plugins=PLUGINS, model="medmnist_resnet18",
                      image_size=28, epochs=1, batch_size=64, data={"dermamnist": str(tmp_path / "d")})  # fmt: skip
    assert record["data"]["splits"]["test"]["n"] == (subset["split"] == "test").sum()
    assert (
        "official" in str(record["data"].get("split_protocol", ""))
        or record["data"]["splits"]["train"]["n"] == 120
    )
    assert 0 <= record["metrics"]["test"]["accuracy"] <= 1
