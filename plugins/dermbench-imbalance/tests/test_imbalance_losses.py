"""Each loss against values worked out by hand on three samples of three classes.

Counts [1, 4, 20] (N = 25, K = 3) include a class with a single training image. Every expected
value below is written out with ``math`` from the formulas in the plugin README, independently of
the code under test.
"""

from __future__ import annotations

import math

import pytest
import torch

import dermbench_imbalance.plugin as plugin
from dermbench.components import LossContext
from dermbench.errors import ConfigError
from dermbench_imbalance.losses import balanced_weights, inverse_frequency_weights, ldam_margins

COUNTS = [1, 4, 20]
CLASSES = ["rare", "mid", "common"]
LOGITS = [[0.5, -0.2, 0.1], [0.0, 0.3, -0.4], [0.2, 0.1, 0.6]]
TARGETS = [0, 1, 2]

# margins: m_c = 0.5 * n_c^(-1/4) / max_j n_j^(-1/4); n^(-1/4) = 1, 1/sqrt(2), 20^(-1/4); max = 1
M = [0.5, 0.5 / math.sqrt(2.0), 0.5 * 20**-0.25]  # 0.5, 0.353553, 0.236435
REL = 1e-6  # the losses keep their class weights in float32, the hand values are float64


def build(name: str, counts: list[int] = COUNTS, classes: list[str] = CLASSES, **options: object):
    ctx = LossContext(num_classes=len(counts), class_counts=counts, classes=classes)
    component = next(c for c in plugin.LOSSES if c.name == name)
    return component.build(options, ctx)


def value(loss: torch.nn.Module, logits=LOGITS, targets=TARGETS) -> float:
    return loss(torch.tensor(logits, dtype=torch.float64), torch.tensor(targets)).item()


def ce(z: list[float], y: int) -> float:
    """-log softmax(z)_y = log(sum_j e^z_j) - z_y."""
    return math.log(sum(math.exp(v) for v in z)) - z[y]


def test_weights_and_margins_by_hand():
    assert inverse_frequency_weights(COUNTS).tolist() == pytest.approx([25 / 3, 25 / 12, 25 / 60])
    # (1 - n/N) / (K - 1): (24/25)/2, (21/25)/2, (5/25)/2; they sum to 1
    assert balanced_weights(COUNTS).tolist() == pytest.approx([0.48, 0.42, 0.10])
    assert ldam_margins(COUNTS).tolist() == pytest.approx([0.5, 0.3535534, 0.2364354], abs=1e-6)
    assert ldam_margins(COUNTS, max_m=1.0).tolist() == pytest.approx([2 * m for m in M])


def test_wce_by_hand():
    w = [25 / 3, 25 / 12, 25 / 60]
    terms = [w[y] * ce(z, y) for z, y in zip(LOGITS, TARGETS, strict=True)]
    # ce per sample: 0.77330, 0.80532, 0.82279
    assert value(build("wce")) == pytest.approx(sum(terms) / sum(w), rel=REL)
    assert value(build("wce", reduction="mean")) == pytest.approx(sum(terms) / 3, rel=REL)


def test_bwcce_by_hand():
    w = [0.48, 0.42, 0.10]
    terms = [w[y] * ce(z, y) for z, y in zip(LOGITS, TARGETS, strict=True)]
    assert value(build("bwcce")) == pytest.approx(sum(terms) / sum(w), rel=REL)
    assert value(build("bwcce", reduction="mean")) == pytest.approx(sum(terms) / 3, rel=REL)


def focal_by_hand(gamma: float = 1.5, alpha: list[float] | None = M) -> float:
    total = 0.0
    for z, y in zip(LOGITS, TARGETS, strict=True):
        p_t = math.exp(z[y]) / sum(math.exp(v) for v in z)
        a = alpha[y] if alpha is not None else 1.0
        total += -a * (1 - p_t) ** gamma * math.log(p_t)
    return total / 3  # plain batch mean


def test_focal_by_hand():
    # sample 1: p_t = e^0.5 / (e^0.5 + e^-0.2 + e^0.1) = 0.46149, (1 - p_t)^1.5 = 0.39518, -log p_t = 0.77330
    # sample 2: p_t = 0.44695, 0.41129, 0.80532; sample 3: p_t = 0.43920, 0.41996, 0.82279
    written_out = (0.5 * 0.39518 * 0.77330 + 0.353553 * 0.41129 * 0.80532 + 0.236435 * 0.41996 * 0.82279) / 3
    assert focal_by_hand() == pytest.approx(written_out, rel=1e-4)
    assert value(build("focal")) == pytest.approx(focal_by_hand(), rel=REL)
    assert value(build("focal", gamma=2.0, alpha="none")) == pytest.approx(focal_by_hand(2.0, None), rel=REL)
    # gamma 0 without alpha is plain cross-entropy
    plain = sum(ce(z, y) for z, y in zip(LOGITS, TARGETS, strict=True)) / 3
    assert value(build("focal", gamma=0.0, alpha="none")) == pytest.approx(plain, rel=REL)


def ldam_by_hand(s: float = 30.0, weighted: bool = True, m: list[float] = M) -> float:
    num = den = 0.0
    for z, y in zip(LOGITS, TARGETS, strict=True):
        shifted = [s * (v - (m[y] if j == y else 0.0)) for j, v in enumerate(z)]
        w = m[y] if weighted else 1.0
        num += w * ce(shifted, y)
        den += w
    return num / den


def test_ldam_by_hand():
    # sample 1 (class "rare", one image): 30 * [0.5 - 0.5, -0.2, 0.1] = [0, -6, 3]
    assert ce([0.0, -6.0, 3.0], 0) == pytest.approx(math.log(1 + math.exp(-6) + math.exp(3)))
    assert value(build("ldam")) == pytest.approx(ldam_by_hand(), rel=REL)
    assert value(build("ldam", weighted=False)) == pytest.approx(ldam_by_hand(weighted=False), rel=REL)
    small = [0.2 * n**-0.25 / 1.0 for n in COUNTS]  # max_m 0.2; max_j n_j^(-1/4) = 1, the one-image class
    assert value(build("ldam", s=10.0, max_m=0.2)) == pytest.approx(ldam_by_hand(10.0, True, small), rel=REL)


def test_lmf_by_hand_with_the_official_defaults():
    assert value(build("lmf")) == pytest.approx(1.5 * ldam_by_hand() + 1.0 * focal_by_hand(), rel=REL)


@pytest.mark.parametrize("alpha,beta", [(1.0, 2.0), (0.5, 1.3), (0.0, 1.0)])
def test_lmf_is_alpha_ldam_plus_beta_focal(alpha: float, beta: float):
    torch.manual_seed(0)
    logits, targets = torch.randn(16, 3, dtype=torch.float64) * 3, torch.randint(0, 3, (16,))
    lmf = build("lmf", alpha=alpha, beta=beta, gamma=2.0, s=20.0, max_m=0.4)(logits, targets)
    ldam = build("ldam", s=20.0, max_m=0.4)(logits, targets)
    focal = build("focal", gamma=2.0, max_m=0.4)(logits, targets)
    assert lmf.item() == pytest.approx(alpha * ldam.item() + beta * focal.item(), rel=1e-12)


@pytest.mark.parametrize("name", ["wce", "bwcce", "focal", "ldam", "lmf"])
def test_gradients_are_finite_even_for_saturated_logits(name: str):
    logits = torch.tensor([[40.0, -40.0, 0.0], [0.0, 0.0, 0.0], [-30.0, 25.0, 60.0]], requires_grad=True)
    targets = torch.tensor([0, 1, 2])  # the first and last are classified with p_t == 1 in float32
    loss = build(name)(logits, targets)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    assert logits.grad.abs().sum() > 0  # the uncertain middle sample still pushes


def test_margins_follow_the_class_order_of_the_counts():
    perm = [2, 0, 1]
    counts = [COUNTS[i] for i in perm]
    assert ldam_margins(counts).tolist() == pytest.approx([M[i] for i in perm])
    assert inverse_frequency_weights(counts).tolist() == pytest.approx([25 / (3 * n) for n in counts])
    # relabelling the classes consistently (counts, logit columns, targets) leaves every loss unchanged
    where = {old: new for new, old in enumerate(perm)}
    logits = [[z[i] for i in perm] for z in LOGITS]
    targets = [where[y] for y in TARGETS]
    classes = [CLASSES[i] for i in perm]
    for name in ("wce", "bwcce", "focal", "ldam", "lmf"):
        assert value(build(name, counts, classes), logits, targets) == pytest.approx(
            value(build(name)), rel=1e-12
        )


@pytest.mark.parametrize("name", ["wce", "bwcce", "focal", "ldam", "lmf"])
def test_a_class_without_training_images_is_a_config_error_naming_it(name: str):
    with pytest.raises(ConfigError, match=r"class 'mid' has no training images"):
        build(name, [3, 0, 20])


def test_bad_options_are_config_errors_naming_the_option():
    with pytest.raises(ConfigError, match="reduction"):
        build("wce", reduction="sum")
    with pytest.raises(ConfigError, match="option s "):
        build("ldam", s=0.0)
    with pytest.raises(ConfigError, match="alpha"):
        build("focal", alpha="inverse")
    with pytest.raises(ConfigError, match="max_m"):
        build("lmf", max_m=-1.0)
    with pytest.raises(ConfigError, match="unknown option"):
        build("lmf", gama=2.0)


def test_cli_strings_are_parsed_into_typed_options():
    lmf = build("lmf", alpha="1.0", beta="2", ldam_weighted="false")
    assert (lmf.alpha, lmf.beta, lmf.ldam.weighted) == (1.0, 2.0, False)


def test_class_tensors_move_with_the_module():
    loss = build("lmf").to(torch.float64)
    assert loss.ldam.margins.dtype == torch.float64 and loss.focal.alpha.dtype == torch.float64
    assert {n for n, _ in loss.named_buffers()} == {"ldam.margins", "focal.alpha"}
