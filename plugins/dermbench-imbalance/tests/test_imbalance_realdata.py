"""On HAM10000's real training split, every class-dependent constant lands on the right class.

The official LMF code counted classes in directory-listing order while its loader sorted them;
here the margins and weights must follow the task's class order. The check reads the real
metadata (no image is decoded), splits it as a run does, and compares each class's margin with
the one worked out from that class's own count, looked up by name.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import dermbench_imbalance.plugin as plugin
from dermbench.components import LossContext
from dermbench.data.splits import make_splits
from dermbench.data.tasking import apply_task

REPO = Path(__file__).resolve().parents[3]
HAM = REPO.parent / "shared" / "data" / "ham10000"


@pytest.mark.realdata
def test_margins_and_weights_follow_the_task_class_order_on_ham10000(dermbench_plugins):
    if not (HAM / "HAM10000_metadata.csv").is_file():
        pytest.skip(f"../shared/data is absent: no HAM10000 metadata at {HAM}")
    reg = dermbench_plugins(("imbalance", plugin)).registries
    task = reg.tasks.get("ham7")
    frame, dropped = apply_task(reg.datasets.get("ham10000").build({}, str(HAM)), task)
    assert dropped == {}
    train = frame.iloc[make_splits(frame, seed=0)["train"]]
    by_name = train["dx"].value_counts().to_dict()  # counted by the label's own name
    counts = np.bincount(train["y"].to_numpy(), minlength=task.num_classes).tolist()  # as a run does
    ctx = LossContext(num_classes=task.num_classes, class_counts=counts, classes=list(task.classes))

    lmf = reg.losses.get("lmf").build({}, ctx)
    fewest = min(by_name.values())
    for i, name in enumerate(task.classes):
        expected = 0.5 * (by_name[name] / fewest) ** -0.25
        assert lmf.ldam.margins[i].item() == pytest.approx(expected, rel=1e-6), name
        assert lmf.focal.alpha[i].item() == pytest.approx(expected, rel=1e-6), name
    margins = dict(zip(task.classes, lmf.ldam.margins.tolist(), strict=True))
    assert max(margins, key=margins.get) == "df" and min(margins, key=margins.get) == "nv"

    total = sum(by_name.values())
    wce = reg.losses.get("wce").build({}, ctx)
    bwcce = reg.losses.get("bwcce").build({}, ctx)
    for i, name in enumerate(task.classes):
        assert wce.weight[i].item() == pytest.approx(total / (7 * by_name[name]), rel=1e-6), name
        assert bwcce.weight[i].item() == pytest.approx((1 - by_name[name] / total) / 6, rel=1e-6), name
