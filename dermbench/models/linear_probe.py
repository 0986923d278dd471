"""A linear probe: whether a backbone's weights carry what they claim.

Frozen pooled features of real images, then a lesion-grouped k-fold logistic regression on them.
ImageNet weights give features that separate dermatology classes far better than random weights
do; weights that claim to be ImageNet's and score like random ones are not what they claim. Used
by the packaged-weights test and by ``benchmarks/weights_probe.py``, which chooses between timm's
architectures and normalisations for a weights file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def ham10000_sample(
    folder: Path, classes: Sequence[str], per_class: int, size: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``per_class`` HAM10000 images of each of ``classes`` (uint8 NHWC at ``size``), their class
    indices and lesion ids, drawn with ``seed``."""
    meta = pd.read_csv(folder / "HAM10000_metadata.csv")
    rows = [
        meta[meta["dx"] == name].sample(n=per_class, random_state=seed).assign(y=i)
        for i, name in enumerate(classes)
    ]
    sample = pd.concat(rows, ignore_index=True)
    images = np.stack([_read(folder / "images" / f"{image_id}.jpg", size) for image_id in sample["image_id"]])
    return images, sample["y"].to_numpy(), sample["lesion_id"].to_numpy()


def _read(path: Path, size: int) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB").resize((size, size), Image.BILINEAR))


@torch.no_grad()
def pooled_features(
    model: torch.nn.Module,
    images: np.ndarray,
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int = 32,
) -> np.ndarray:
    """The model's pooled pre-classifier features of uint8 NHWC ``images``, normalised by ``mean``/``std``."""
    model.eval()
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    out = []
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(images[start : start + batch_size]).permute(0, 3, 1, 2).float() / 255.0
        out.append(model.forward_head(model.forward_features((x - m) / s), pre_logits=True))
    return torch.cat(out).numpy()


def probe_score(features: np.ndarray, labels: np.ndarray, groups: np.ndarray, folds: int = 4) -> float:
    """Balanced accuracy of a logistic regression on ``features``, out of fold over ``folds``
    lesion-grouped stratified folds (no lesion in both a fold's training and scored part)."""
    predicted = np.empty_like(labels)
    for train, held in StratifiedGroupKFold(folds, shuffle=True, random_state=0).split(
        features, labels, groups
    ):
        probe = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
        probe.fit(features[train], labels[train])
        predicted[held] = probe.predict(features[held])
    return float(balanced_accuracy_score(labels, predicted))
