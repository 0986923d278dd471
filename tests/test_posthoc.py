"""The recall_threshold post-hoc step: registered, fit on validation only, applied unchanged."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score, recall_score

from dermbench.errors import ConfigError
from dermbench.evaluation.metrics import choose_threshold
from dermbench.plugins import load_plugins
from dermbench.plugins.contract import PosthocContext

BINARY = ["benign", "malignant"]
TRIAGE = ["priority_1", "priority_2", "priority_3"]


@pytest.fixture(scope="module")
def component():
    registry = load_plugins(autoload=False).registries.posthoc
    assert "recall_threshold" in registry.names()
    return registry.get("recall_threshold")


def sample(n: int, k: int, seed: int):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y] += 1.0
    p = np.exp(logits)
    return y, p / p.sum(axis=1, keepdims=True)


def test_registered_with_typed_options(component):
    options = {o["name"]: o for o in component.describe_options()}
    assert options["step"]["default"] == 0.02
    assert options["recall_constraint"]["default"] is None
    assert component.paper and "Rumale" in component.paper
    assert component.make_options({"recall_constraint": "0.9"}).recall_constraint == 0.9
    assert component.make_options({"recall_constraint": "none"}).recall_constraint is None
    with pytest.raises(ConfigError, match="gamma"):
        component.make_options({"gamma": 0.9})


def test_fit_on_validation_apply_on_test(component):
    ctx = PosthocContext(classes=BINARY, positive_class="malignant", recall_constraint=0.85)
    step = component.build({}, ctx)
    assert step.key == "operating_point"
    y_val, p_val = sample(300, 2, seed=0)
    y_test, p_test = sample(300, 2, seed=1)
    step.fit(y_val, p_val, None)
    chosen = choose_threshold(y_val, p_val, BINARY, "malignant", 0.85)
    op = step.apply(y_test, p_test, None)
    t = chosen["threshold"]
    assert op["threshold"] == t and op["feasible"] is chosen["feasible"]
    assert op["recall_constraint"] == 0.85 and op["positive_class"] == "malignant"
    decided = p_test[:, 1] >= t
    assert op["recall"] == pytest.approx(recall_score(y_test == 1, decided))
    assert op["f1"] == pytest.approx(f1_score(y_test == 1, decided))
    assert op["tp"] + op["fn"] == int(np.sum(y_test == 1))
    # on validation itself the step reproduces the chosen recall
    assert step.apply(y_val, p_val, None)["recall"] == pytest.approx(chosen["val_recall"])


def test_test_labels_never_move_the_threshold(component):
    ctx = PosthocContext(classes=TRIAGE, positive_class="priority_1", recall_constraint=0.85)
    y_val, p_val = sample(200, 3, seed=2)
    y_test, p_test = sample(200, 3, seed=3)
    step = component.build({}, ctx)
    step.fit(y_val, p_val, None)
    first = step.apply(y_test, p_test, None)
    rng = np.random.default_rng(0)
    for _ in range(5):
        other = step.apply(rng.integers(0, 3, len(y_test)), p_test, None)
        assert other["threshold"] == first["threshold"]
    assert other["tp"] + other["fn"] != first["tp"] + first["fn"] or other["f1"] != first["f1"]


def test_option_overrides_the_task_constraint(component):
    ctx = PosthocContext(classes=BINARY, positive_class="malignant", recall_constraint=0.85)
    y_val, p_val = sample(300, 2, seed=4)
    strict = component.build({"recall_constraint": 0.99, "step": 0.05}, ctx)
    strict.fit(y_val, p_val, None)
    op = strict.apply(y_val, p_val, None)
    expected = choose_threshold(y_val, p_val, BINARY, "malignant", 0.99, step=0.05)
    assert op["threshold"] == expected["threshold"] and op["recall_constraint"] == 0.99
    assert op["recall"] >= 0.99 or op["feasible"] is False


def test_needs_a_positive_class_and_a_fit(component):
    with pytest.raises(ConfigError, match="positive_class"):
        component.build({}, PosthocContext(classes=BINARY))
    with pytest.raises(ConfigError, match="melanoma"):
        component.build({}, PosthocContext(classes=BINARY, positive_class="melanoma"))
    step = component.build({}, PosthocContext(classes=BINARY, positive_class="malignant"))
    y, p = sample(20, 2, seed=5)
    with pytest.raises(RuntimeError, match="fit"):
        step.apply(y, p, None)


def test_validation_without_positives_leaves_every_rate_undefined(component):
    step = component.build({}, PosthocContext(BINARY, "malignant", 0.85))
    _, p = sample(30, 2, seed=6)
    step.fit(np.zeros(30, dtype=int), p, None)
    y_test, p_test = sample(30, 2, seed=7)
    op = step.apply(y_test, p_test, None)
    assert op["threshold"] is None and op["f1"] is None and op["tp"] is None
    assert "no malignant" in op["undefined"]["f1"]
