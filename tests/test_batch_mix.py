"""Mixup and CutMix as batch transforms: the mixing, the weights, the loss, a real run."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dermbench.errors import ConfigError
from dermbench.plugins import load_plugins
from dermbench.plugins.contract import BatchContext
from dermbench.stages.supervised import mixed_loss
from dermbench.testing import run_tiny


def _indexed_batch(n: int = 8, size: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """Image i is the constant i and has label i, so a mix can be read off its pixels."""
    y = torch.arange(n)
    return y.float().view(n, 1, 1, 1).expand(n, 3, size, size).clone(), y


def _build(name: str, **options):
    return load_plugins(autoload=False).registries.batch_transforms.build(name, options, BatchContext(8))


def test_mixup_is_a_convex_combination_with_its_own_weights():
    x, y = _indexed_batch()
    out = _build("mixup", alpha="0.4")(x, y, torch.Generator().manual_seed(3))
    (ya, lam), (yb, rest) = out.targets
    assert torch.equal(ya, y) and lam + rest == pytest.approx(1.0) and 0 < lam < 1
    expected = lam * y.float() + rest * yb.float()
    assert torch.allclose(out.images[:, 0, 0, 0], expected)
    assert sorted(yb.tolist()) == y.tolist()  # a permutation of the batch


def test_cutmix_weights_are_the_areas_actually_kept():
    x, y = _indexed_batch(size=16)
    out = _build("cutmix")(x, y, torch.Generator().manual_seed(5))
    (ya, kept), (yb, pasted) = out.targets
    own = (out.images[:, 0] == y.float().view(-1, 1, 1)).float().mean(dim=(1, 2))
    moved = yb != y  # where an image was paired with itself every pixel is its own
    assert torch.allclose(own[moved], torch.full_like(own[moved], kept))
    assert kept + pasted == pytest.approx(1.0)


def test_the_same_generator_mixes_the_same_way():
    x, y = _indexed_batch()
    a = _build("mixup")(x, y, torch.Generator().manual_seed(1))
    b = _build("mixup")(x, y, torch.Generator().manual_seed(1))
    assert torch.equal(a.images, b.images)


def test_mixed_cross_entropy_equals_cross_entropy_on_soft_targets():
    logits = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    ya, yb, lam = torch.tensor([0, 1, 2, 0, 1]), torch.tensor([2, 2, 0, 1, 1]), 0.3
    soft = lam * F.one_hot(ya, 3).float() + (1 - lam) * F.one_hot(yb, 3).float()
    got = mixed_loss(torch.nn.CrossEntropyLoss(), logits, ((ya, lam), (yb, 1 - lam)))
    assert got.item() == pytest.approx(F.cross_entropy(logits, soft).item(), rel=1e-6)


def test_bad_options_are_refused_naming_them():
    with pytest.raises(ConfigError, match="mixup: alpha must be > 0"):
        _build("mixup", alpha="0")
    with pytest.raises(ConfigError, match="cutmix: p must lie in"):
        _build("cutmix", p="2")


def test_a_run_trains_with_mixup_and_cutmix(tmp_path):
    plain = run_tiny(tmp_path / "plain")
    for name in ("mixup", "cutmix"):
        record = run_tiny(tmp_path / name, options={"stage.batch_transform": name})
        assert record["status"] == "complete"
        assert record["history"][0]["train_loss"] != plain["history"][0]["train_loss"]
