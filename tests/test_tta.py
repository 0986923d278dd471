"""Test-time augmentation: an orientation-invariant model is unchanged, and a model that reads the
four corners gets the average of the softmaxes of the corner permutations worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dermbench.errors import ConfigError, DataError
from dermbench.predict.tta import tta_predict, tta_views


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


class Corners(torch.nn.Module):
    """Logits = channel 0 at the corners (top-left, top-right, bottom-left, bottom-right)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(1.0))
        self.drop = torch.nn.Dropout(0.9)  # must be off at prediction time

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x[:, 0]
        return self.drop(
            self.scale * torch.stack([c[:, 0, 0], c[:, 0, -1], c[:, -1, 0], c[:, -1, -1]], dim=1)
        )


# Where each corner goes, worked out on paper: the logits of a view as indices into (tl, tr, bl, br).
# Flips mirror; rot90 turns counter-clockwise (the top-right corner becomes the top-left one).
BY_HAND = {
    "identity": [0, 1, 2, 3],
    "hflip": [1, 0, 3, 2],
    "vflip": [2, 3, 0, 1],
    "rot90": [1, 3, 0, 2],
    "rot180": [3, 2, 1, 0],
    "rot270": [2, 0, 3, 1],
}


@pytest.fixture
def images() -> torch.Tensor:
    return torch.randn(7, 3, 5, 6, generator=torch.Generator().manual_seed(0))


def test_invariant_model_gives_identical_output(images: torch.Tensor) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, 4))
    with torch.no_grad():
        plain = torch.softmax(model(images), dim=1).numpy()
    for mode in ("none", "flips", "flips_rot90"):
        np.testing.assert_allclose(tta_predict(model, images, mode=mode, batch_size=3), plain, atol=1e-6)


@pytest.mark.parametrize(
    ("mode", "views"),
    [
        ("none", ["identity"]),
        ("flips", ["identity", "hflip", "vflip"]),
        ("flips_rot90", ["identity", "hflip", "vflip", "rot90", "rot180", "rot270"]),
    ],
)
def test_corner_model_gets_the_hand_computed_average(
    images: torch.Tensor, mode: str, views: list[str]
) -> None:
    assert list(tta_views(mode)) == views
    c = images[:, 0].numpy().astype(np.float64)
    corners = np.stack([c[:, 0, 0], c[:, 0, -1], c[:, -1, 0], c[:, -1, -1]], axis=1)
    expected = np.mean([_softmax(corners[:, BY_HAND[v]]) for v in views], axis=0)
    model = Corners().train()
    got = tta_predict(model, images, mode=mode, batch_size=2)
    assert got.dtype == np.float32 and got.shape == (7, 4)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert model.training  # put back as it was
    if mode != "none":  # the views really differ, so averaging is not a no-op here
        assert np.abs(got - _softmax(corners)).max() > 1e-3


def test_batch_size_does_not_change_probabilities(images: torch.Tensor) -> None:
    model = Corners()
    a = tta_predict(model, images, mode="flips_rot90", batch_size=1)
    b = tta_predict(model, images, mode="flips_rot90", batch_size=100)
    np.testing.assert_allclose(a, b, atol=1e-7)
    np.testing.assert_allclose(a.sum(axis=1), 1.0, atol=1e-6)


def test_bad_mode_and_input() -> None:
    model = Corners()
    with pytest.raises(ConfigError, match="flips_rot90"):
        tta_predict(model, torch.zeros(1, 3, 4, 4), mode="d4")
    with pytest.raises(DataError, match=r"\(N, C, H, W\)"):
        tta_predict(model, torch.zeros(3, 4, 4))
    with pytest.raises(DataError, match=r"\(N, C, H, W\)"):
        tta_predict(model, torch.zeros(1, 3, 4, 4, dtype=torch.uint8))
    with pytest.raises(ConfigError, match="batch_size"):
        tta_predict(model, torch.zeros(1, 3, 4, 4), batch_size=0)
