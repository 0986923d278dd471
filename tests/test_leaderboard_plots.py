"""Every plot the site draws has a title and labelled axes; epoch axes tick whole epochs; a legend
over several seeds gives their mean AUC, not the first seed's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dermbench.leaderboard import build_site, plots
from dermbench.stages import pretrain_plots


def _plotted_axes(fig) -> list:
    """The axes that show data; a twin (a second y axis over the same box) shares its host's title
    and x label, so it counts as its host."""
    out, boxes = [], set()
    for ax in fig.axes:
        box = tuple(np.round(ax.get_position().bounds, 4))
        if ax.get_label() != "<colorbar>" and box not in boxes and (ax.lines or ax.images or ax.collections):
            out.append(ax)
        boxes.add(box)
    return out


def _unlabelled(fig, name: str) -> list[str]:
    title = fig._suptitle.get_text() if fig._suptitle else ""
    out = []
    for n, ax in enumerate(_plotted_axes(fig)):
        for what, text in (
            ("title", ax.get_title() or title),
            ("x label", ax.get_xlabel()),
            ("y label", ax.get_ylabel()),
        ):
            if not text.strip():
                out.append(f"{name} axes {n}: no {what}")
    return out


@pytest.fixture(scope="module")
def drawn(tmp_path_factory: pytest.TempPathFactory, records_fixture) -> dict[str, list]:
    fx = records_fixture
    base = tmp_path_factory.mktemp("plots")
    fx.write_tree(base / "runs")
    (base / "leaderboard.toml").write_text("n_boot = 50\n")
    figures: dict[str, list] = {}
    original = plots._save

    def keep(fig, path):
        figures.setdefault(Path(path).name.split("_")[0].removesuffix(".png"), []).append(fig)
        return original(fig, path)

    plots._save = keep
    try:
        build_site(base / "runs", base / "site", base / "leaderboard.toml")
    finally:
        plots._save = original
    return figures


def test_the_site_draws_each_kind_of_plot(drawn):
    assert {"per", "confusion", "learning", "roc"} <= set(drawn), sorted(drawn)


def test_every_plot_has_a_title_and_labelled_axes(drawn):
    missing = [m for name, figs in drawn.items() for fig in figs for m in _unlabelled(fig, name)]
    assert missing == []


def test_epoch_axes_tick_whole_epochs(drawn):
    for fig in drawn["learning"]:
        for ax in _plotted_axes(fig):
            ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
            assert ticks and all(float(t).is_integer() for t in ticks), ticks


def test_a_legend_over_seeds_gives_the_mean_auc_of_all_of_them():
    fpr = np.array([0.0, 1.0])
    curves = [plots.Curve("mel", fpr, fpr, fpr, fpr, auc) for auc in (0.70, 0.80, 0.90)]
    curves.append(plots.Curve("nv", fpr, fpr, fpr, fpr, 0.6))
    legend = plots.auc_legend(curves)
    assert legend["mel"] == f"mel (AUC 0.800 ± {np.std([0.7, 0.8, 0.9], ddof=1):.3f}, 3 seeds)"
    assert legend["nv"] == "nv (AUC 0.600)"


def test_pretraining_loss_curves_are_labelled(tmp_path, monkeypatch):
    figures = []
    monkeypatch.setattr(pretrain_plots.Figure, "savefig", lambda self, path, **kw: figures.append(self))
    history = [
        {"epoch": e, "reconstruction": 10.0 / e, "kl": 1.0 * e, "beta": 0.1 * e, "loss": 11.0}
        for e in (1, 2, 3)
    ]
    pretrain_plots.loss_curves(history, tmp_path / "c.png", "VAE")
    (fig,) = figures
    assert _unlabelled(fig, "pretraining") == []
