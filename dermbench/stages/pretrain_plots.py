"""What a pretraining stage draws: its loss curves (reconstruction and KL apart) and a grid of
reconstructions (input row above output row), as PNGs in the encoder's store folder."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image

CURVES = "loss_curves.png"
GRID = "reconstructions.png"


def loss_curves(history: Sequence[dict], path: Path, title: str) -> Path:
    """Reconstruction, KL (with beta on a second axis) and the ELBO, per epoch."""
    fig = Figure(figsize=(11, 3.2), dpi=110)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3)
    epochs = [r["epoch"] for r in history]
    axes[0].plot(epochs, [r["reconstruction"] for r in history], marker=".")
    axes[0].set_title("Reconstruction (sum of squared errors per image)", fontsize=9)
    axes[1].plot(epochs, [r["kl"] for r in history], marker=".", color="tab:orange")
    axes[1].set_title("KL(q(z|x) || N(0, I)) per image", fontsize=9)
    beta = axes[1].twinx()
    beta.plot(epochs, [r["beta"] for r in history], color="grey", linestyle="--", linewidth=0.8)
    beta.set_ylabel("beta at epoch end (dashed)", fontsize=8)
    axes[2].plot(epochs, [r["loss"] for r in history], marker=".", color="tab:green")
    axes[2].set_title("ELBO loss = reconstruction + beta x KL", fontsize=9)
    for ax, ylabel in zip(axes, ("squared error per image", "KL per image", "loss per image"), strict=True):
        ax.set_xlabel("epoch", fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole
        ax.tick_params(labelsize=7)
    fig.suptitle(title.replace("$", r"\$"), fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    return path


def reconstruction_grid(inputs: np.ndarray, outputs: np.ndarray, path: Path) -> Path:
    """Inputs (top row) over their reconstructions (bottom row), uint8 NHWC each."""
    top = np.concatenate(list(inputs), axis=1)
    bottom = np.concatenate(list(outputs), axis=1)
    Image.fromarray(np.concatenate([top, bottom], axis=0)).save(path)
    return path
