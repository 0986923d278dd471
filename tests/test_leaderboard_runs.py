"""Leaderboards built from records that real (tiny, CPU) runs of the harness wrote.

The fixture records of test_leaderboard.py follow the documented schema; these check the contract
with the code that writes records: the saved predictions reproduce every recorded number the site
shows an interval for, and every page renders with all of its images.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from dermbench.leaderboard import build_report, build_site
from dermbench.testing import run_tiny


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("realruns")
    for seed in (0, 1):
        run_tiny(base, method="erm", seed=seed)
    run_tiny(base, method="erm", task="binary", seed=0)
    return base / "runs"


def _imgs_and_links(page: Path) -> list[str]:
    return re.findall(r'(?:src|href)="([^"#]+)"', page.read_text())


def test_site_from_real_runs_has_every_number_and_image(runs, tmp_path):
    config = tmp_path / "lb.toml"
    config.write_text("n_boot = 100\n")
    index = build_site(runs, tmp_path / "site", config)
    site = index.parent
    pages = list(site.rglob("*.html"))
    assert len(pages) == 1 + 2 + 2  # index, two tasks, one entry per task
    for page in pages:
        for ref in _imgs_and_links(page):
            assert (page.parent / ref).is_file(), (page, ref)
        assert "no interval" not in page.read_text(), page  # predictions reproduce the records
    records = [json.loads(p.read_text()) for p in runs.rglob("record.json")]
    tiny = [r for r in records if r["task"]["name"] == "tiny3"]
    (task_page,) = [p for p in (site / "task").glob("tiny3*.html")]
    html = task_page.read_text()
    for metric in ("macro_f1", "balanced_accuracy", "accuracy"):
        mean = np.mean([r["metrics"]["test"][metric] for r in tiny])
        cell = re.search(rf'data-metric="{metric}" data-value="([^"]+)"', html)
        assert float(cell.group(1)) == pytest.approx(mean, abs=1e-12)
    entry = next((site / "entry").rglob("index.html"))
    assert {"per_class_f1.png", "confusion.png", "learning_curves.png", "roc_pr_0.png"} <= {
        p.name for p in entry.parent.glob("*.png")
    }


def test_report_of_a_real_decision_run(runs, tmp_path):
    run = next(p.parent for p in runs.rglob("record.json") if '"binary"' in p.read_text())
    record = json.loads((run / "record.json").read_text())
    index = build_report(run, tmp_path / "report")
    html = index.read_text()
    op = record["metrics"]["test"]["operating_point"]
    assert f"{op['threshold']:.3f}" in html
    for ref in _imgs_and_links(index):
        assert (index.parent / ref).is_file(), ref


def test_selective_prediction_on_the_task_and_method_pages(tmp_path):
    """Two seeds behind the gate: the task page's selective table is the seeds' mean ± std of what
    the records hold, and the method page shows each seed's values, its OOD sets and the curve."""
    gate = {"gate.epochs": 1, "gate.depth": 3, "gate.latent_dim": 16}
    for seed in (0, 1):
        run_tiny(tmp_path, seed=seed, image_size=32, gate="autoencoder", options=gate, ood_data={"blank": ""})
    records = [json.loads(p.read_text()) for p in sorted((tmp_path / "runs").rglob("record.json"))]
    index = build_site(tmp_path / "runs", tmp_path / "site", None)
    (task_page,) = (index.parent / "task").glob("tiny3*.html")
    html = task_page.read_text()
    assert "Selective prediction on the test split" in html
    aurc = [r["metrics"]["test"]["selective"]["max_softmax"]["aurc"] for r in records]
    coverage = [r["gate"]["splits"]["test"]["coverage"] for r in records]
    for values in (aurc, coverage):
        std = np.std(values, ddof=1)
        assert f"{np.mean(values):.3f} ± {std if std > 1e-12 else 0.0:.3f}" in html
    entry = next((index.parent / "entry").rglob("index.html"))
    page = entry.read_text()
    section = page[page.index('<section id="selective">') : page.index('<section id="fairness">')]
    for r in records:
        assert f"{r['metrics']['val']['selective']['max_softmax']['aurc']:.3f}" in section
        assert f"{r['gate']['ood']['blank']['rejection_rate']:.3f}" in section
    assert 'src="risk_coverage.png"' in section and (entry.parent / "risk_coverage.png").is_file()
