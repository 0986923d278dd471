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
    for seed in (0, 1, 2):  # enough seeds to be ranked
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
        shown = "0.000" if std <= 1e-12 else "<0.001" if std < 0.001 else f"{std:.3f}"
        assert f"{np.mean(values):.3f} ± {shown}" in html
    entry = next((index.parent / "entry").rglob("index.html"))
    page = entry.read_text()
    section = page[page.index('<section id="selective">') : page.index('<section id="fairness">')]
    for r in records:
        assert f"{r['metrics']['val']['selective']['max_softmax']['aurc']:.3f}" in section
        assert f"{r['gate']['ood']['blank']['rejection_rate']:.3f}" in section
    assert 'src="risk_coverage.png"' in section and (entry.parent / "risk_coverage.png").is_file()


def test_a_spread_beside_a_mean_keeps_the_means_decimals():
    from dermbench.leaderboard.generic import spread

    assert spread(0.000386) == "<0.001"  # the board had printed "0.938 ± 0.000386"
    assert spread(0.0) == "0.000" and spread(1e-15) == "0.000"
    assert spread(0.0214) == "0.021" and spread(0.0004, digits=4) == "0.0004"


COMMITTED = Path(__file__).resolve().parents[1] / "leaderboards" / "runs"


def test_records_made_before_a_setting_existed_share_an_entry_with_records_at_its_old_value():
    """The committed sampler runs of paper 002 were made over three days: the oldest lack
    ``near_duplicates`` and ``image_memory``, the newest give their data as relative paths. Each
    sampler is one entry of three seeds, not four entries split by settings that changed nothing."""
    from dermbench.leaderboard.aggregate import build_boards
    from dermbench.leaderboard.config import LeaderboardConfig
    from dermbench.leaderboard.records import read_run

    folder = COMMITTED / "ham7-zoo002-samplers-cpu"
    runs = [read_run(p.parent) for p in folder.rglob("record.json")]
    configs = [r.record["config"] for r in runs]
    assert any("near_duplicates" not in c for c in configs) and any("image_memory" in c for c in configs)
    (board,) = build_boards(runs, LeaderboardConfig(n_boot=20))["ham7"]
    entries = {e.label: sorted(r.seed for r in e.runs) for x in board.entries for e in (x, *x.alternatives)}
    assert entries == {
        "zoo_squeezenet (sampler=balanced)": [0, 1, 2],
        "zoo_squeezenet (sampler=smote)": [0, 1, 2],
    }
    (shown,) = board.entries  # two settings of one method: one entry, chosen on validation
    assert len(shown.alternatives) == 1 and shown.selection["rule"].startswith("highest mean validation")
    # beside the same SqueezeNet without a sampler ("": the method's own), and ResNet-50's three
    # seeds of two days (near_duplicates absent, then off) are one entry
    gated = [read_run(p.parent) for p in (COMMITTED / "ham7-zoo002-gate-cpu").rglob("record.json")]
    (board,) = build_boards(runs + gated, LeaderboardConfig(n_boot=20))["ham7"]
    entries = {e.label: sorted(r.seed for r in e.runs) for x in board.entries for e in (x, *x.alternatives)}
    assert entries["zoo_squeezenet (sampler=default)"] == [0, 1, 2]
    assert entries["zoo_resnet50"] == [0, 1, 2]


def test_a_setting_left_out_at_its_former_value_is_labelled_with_that_value():
    """CE's records made before --head-init read "head_init=model" (what they did), not
    "head_init=default", which would read as today's default, fan_in."""
    from dermbench.leaderboard.aggregate import build_boards
    from dermbench.leaderboard.config import LeaderboardConfig
    from dermbench.leaderboard.records import read_run

    folder = COMMITTED / "ham7-imbalance-imagenet-cpu" / "ham7" / "ce"
    runs = [read_run(p.parent) for p in folder.rglob("record.json")]
    (board,) = build_boards(runs, LeaderboardConfig(n_boot=20))["ham7"]
    labels = {e.label for x in board.entries for e in (x, *x.alternatives)}
    assert (
        "ce (head_init=model, init=imagenet)" in labels and "ce (head_init=fan_in, init=imagenet)" in labels
    )
    assert not any("head_init=default" in label for label in labels)


def test_a_setting_that_changes_results_still_splits_entries(tmp_path):
    """A later setting away from its old value (near-duplicate grouping on) is a variant; ``image_memory``
    never is (results are identical either way); out-of-distribution sets are compared by name."""
    import shutil

    from dermbench.leaderboard.records import read_run

    (src,) = (COMMITTED / "ham7-zoo002-samplers-cpu").rglob("*s1-8dedc9b099/record.json")

    def variant(**config):
        run_dir = tmp_path / str(len(list(tmp_path.iterdir())))
        shutil.copytree(src.parent, run_dir)
        record = json.loads((run_dir / "record.json").read_text())
        record["config"].update(config)
        (run_dir / "record.json").write_text(json.dumps(record))
        return read_run(run_dir).variant_id

    base = variant()
    assert variant(image_memory="resident") == base
    assert variant(near_duplicates="group") != base
    moved = {
        k: (f"/elsewhere/{k}" if v else v)
        for k, v in json.loads(src.read_text())["config"]["ood_data"].items()
    }
    assert variant(ood_data=moved) == base
    assert variant(ood_data={"noise": ""}) != base


def test_the_method_page_shows_every_setting_used_and_marks_overrides(tmp_path):
    """`--opt loss.label_smoothing=0.2 --lr 0.003` on a real run: the method page's settings table
    shows both values, marked as overridden by the run, beside the recipe's own settings."""
    record = run_tiny(tmp_path, method="erm", lr=0.003, options={"loss.label_smoothing": 0.2})
    index = build_site(tmp_path / "runs", tmp_path / "site", None)
    page = next((index.parent / "entry").rglob("index.html")).read_text()
    section = page[page.index("<h3>Settings used</h3>") : page.index('<section id="data">')]
    rows = re.findall(r"<tr><td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td></tr>", section)
    by_key = {(slot, key): (value, who) for slot, key, value, who in rows}
    assert by_key[("loss", "label_smoothing")] == (
        "0.200",
        "overridden by the run (--opt loss.label_smoothing)",
    )
    assert by_key[("optimizer", "lr")] == ("0.003", "overridden by the run (--lr)")
    assert by_key[("stage", "epochs")][0] == str(record["config"]["epochs"])
    assert all(
        who != "overridden by the run (--opt loss.label_smoothing)"
        for (s, k), (_, who) in by_key.items()
        if k != "label_smoothing"
    )


def test_a_group_names_its_chain_sources_and_the_classes_its_test_split_lacks(tmp_path, records_fixture):
    """The dermai13 heading named only the target, and said 13 classes where 7 occurred in test."""
    fx = records_fixture
    for method in ("erm", "seqft"):
        for seed in (0, 1, 2):
            run = fx.write_run(
                tmp_path / "runs", {"task": "ham7", "method": method, "seed": seed, "strength": 1.0}
            )
            record = json.loads((run / "record.json").read_text())
            record["data"]["splits"]["test"]["class_counts"]["df"] = 0
            if method == "seqft":
                record["data"]["datasets"].append({"name": "isic2019", "role": "chain-source"})
            (run / "record.json").write_text(json.dumps(record))
    index = build_site(tmp_path / "runs", tmp_path / "site", None)
    (page,) = (index.parent / "task").glob("ham7*.html")
    html = page.read_text()
    assert "(chains from isic2019)" in html and "also trained on by seqft" in html
    assert "6 of the task's 7 occur in the test split (akiec, bcc, bkl, mel, nv, vasc)" in html
    assert "ham10000, 64 px, protocol quick" in index.read_text()  # the index says which data


def test_entries_whose_records_predate_selective_metrics_are_left_out_and_counted():
    from types import SimpleNamespace as NS

    from dermbench.leaderboard.selective_view import board_table

    scored = {"metrics": {"test": {"selective": {"max_softmax": {"aurc": 0.1, "eaurc": 0.05}}}}}
    entries = [NS(label="new", runs=[NS(record=scored)])] + [
        NS(label=f"old{i}", runs=[NS(record={"metrics": {"test": {}}})]) for i in range(3)
    ]
    table = board_table(entries)
    assert [row[0] for row in table.rows] == ["new"]  # no rows of dashes
    assert table.columns == [
        "entry",
        "AURC, max softmax (lower is better)",
        "seeds",
    ]  # no gate: no gate columns
    assert "3 entries left out, whose records predate these metrics" in table.caption
    assert board_table(entries[1:]) is None


def test_a_column_with_no_value_in_any_entry_is_left_out(tmp_path, records_fixture):
    fx = records_fixture
    for seed in (0, 1, 2):
        fx.write_run(tmp_path / "runs", {"task": "ham7", "method": "erm", "seed": seed, "strength": 1.0})
    config = tmp_path / "lb.toml"
    config.write_text('[tasks.ham7]\ncolumns = ["macro_f1", "operating_point.recall", "accuracy"]\n')
    index = build_site(tmp_path / "runs", tmp_path / "site", config)
    (page,) = (index.parent / "task").glob("ham7*.html")
    html = page.read_text()
    assert 'data-metric="accuracy"' in html and 'data-metric="macro_f1"' in html
    assert 'data-metric="operating_point.recall"' not in html  # ham7 has no operating point
