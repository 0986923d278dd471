"""The leaderboard site, built from fixture run records, against those records and scikit-learn."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import f1_score

from dermbench.errors import ConfigError, DataError
from dermbench.leaderboard import build_report, build_site

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "records" / "make_records.py"
N_BOOT = 200


def _load_fixture_module() -> Any:
    spec = importlib.util.spec_from_file_location("dermbench_fixture_records", FIXTURES)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


fx = _load_fixture_module()
VOID = {"meta", "link", "img", "br", "hr", "input", "source", "col", "wbr"}


class Node:
    def __init__(self, tag: str, attrs: dict[str, str | None]) -> None:
        self.tag, self.attrs, self.children, self.parts = tag, attrs, [], []

    @property
    def text(self) -> str:
        out = []
        for c in self.parts:
            out.append(c if isinstance(c, str) else c.text)
        return re.sub(r"\s+", " ", "".join(out)).strip()

    def iter(self, tag: str | None = None, cls: str | None = None):
        for c in self.children:
            if (tag is None or c.tag == tag) and (cls is None or cls in (c.attrs.get("class") or "").split()):
                yield c
            yield from c.iter(tag, cls)

    def find(self, tag: str | None = None, cls: str | None = None) -> Node:
        return next(self.iter(tag, cls))


class Tree(HTMLParser):
    """Just enough of a DOM: every element with its attributes, children and text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#root", {})
        self.stack = [self.root]
        self.starttags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        node = Node(tag, dict(attrs))
        self.starttags.append((tag, dict(attrs)))
        self.stack[-1].children.append(node)
        self.stack[-1].parts.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.stack.pop()

    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                break

    def handle_data(self, data):
        self.stack[-1].parts.append(data)


def parse(path: Path) -> Tree:
    t = Tree()
    t.feed(path.read_text(encoding="utf-8"))
    return t


def boards(page: Path) -> list[dict[str, Any]]:
    """Each leaderboard table on a task page: its group heading, columns and rows of cells."""
    tree = parse(page)
    out = []
    for section in tree.root.iter("section", "group"):
        tables = list(section.iter("table", "board"))  # the ranked table, then the entries not ranked
        head = [
            th.attrs.get("data-metric") or th.text.rstrip(" ↕") for th in tables[0].find("thead").iter("th")
        ]
        rows = []
        for table in tables:
            for tr in table.find("tbody").iter("tr"):
                rows.append([(td.attrs, td.text, td) for td in tr.iter("td")])
        out.append({"heading": section.find("h2").text, "section": section, "columns": head, "rows": rows})
    return out


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("leaderboard")
    results = base / "runs"
    fx.write_tree(results)
    config = base / "leaderboard.toml"
    config.write_text(
        f'title = "Test boards"\nn_boot = {N_BOOT}\n[tasks.binary]\ntitle = "Screening"\n'
        '[tasks.ham7]\ncolumns = ["accuracy", "macro_f1", "macro_auc", "per_class.mel.f1"]\n'
    )
    out = base / "site"
    index = build_site(results, out, config)
    return {"results": results, "out": out, "index": index, "config": config}


TITLES = {"binary": "Screening", "ham7": "ham7"}  # binary is titled by the test config


def task_page(site: dict[str, Path], task: str) -> Path:
    tree = parse(site["index"])
    for a in tree.root.iter("a"):
        if a.attrs.get("href", "").startswith("task/") and a.text == TITLES[task]:
            return site["out"] / a.attrs["href"]
    raise AssertionError(f"no link to task {task}")


def _std(vals: list[float]) -> float:
    return float(np.std(vals, ddof=1))


def test_index_lists_tasks_in_config_order_and_counts_skipped(site):
    tree = parse(site["index"])
    links = [a.text for a in tree.root.iter("a") if a.attrs.get("href", "").startswith("task/")]
    assert links == ["Screening", "ham7"]  # [tasks.binary] listed first, ham7 by its columns entry
    complete = [
        p for p in site["results"].rglob("record.json") if json.loads(p.read_text())["status"] == "complete"
    ]
    text = next(p.text for p in tree.root.iter("p") if p.attrs.get("id") == "skipped-count")
    assert f"{len(complete)} complete run records shown; 1 record skipped" in text
    running = next(
        p for p in site["results"].rglob("record.json") if json.loads(p.read_text())["status"] == "running"
    )
    run_id = json.loads(running.read_text())["run_id"]
    all_html = "".join(p.read_text() for p in site["out"].rglob("*.html"))
    assert str(running.relative_to(site["results"])) in all_html  # listed as skipped ...
    assert all_html.count(run_id) == 1  # ... and nowhere else


def test_groups_are_never_mixed_and_ranking_matches_records(site):
    for task in ("ham7", "binary"):
        expected = fx.expected_groups(site["results"])[task]
        got = boards(task_page(site, task))
        assert len(got) == len(expected)
        for board in got:
            fp = board["section"].find("code", "fp").attrs["title"]
            (exp,) = [g for g in expected if g["key"][5] == fp and g["key"][1] in board["heading"]]
            primary = exp["primary_metric"]
            assert board["columns"][2] == primary  # rank, method, then the primary metric
            methods = [row[1][2].find("a").text for row in board["rows"]]
            assert methods == [e["method"] for e in exp["entries"]]
            for row, entry in zip(board["rows"], exp["entries"], strict=True):
                assert row[0][1] == (str(entry["rank"]) if entry["rank"] else "—")
                if entry["rank"] is None:
                    assert f"not ranked: {len(entry['records'])} seed" in row[1][1]
                cells = {
                    attrs.get("data-metric"): (attrs, text)
                    for attrs, text, _ in row
                    if attrs.get("data-metric")
                }
                for m, (attrs, text) in cells.items():
                    vals = [fx.metric(r, m) for r in entry["records"]]
                    assert float(attrs["data-value"]) == pytest.approx(np.mean(vals), abs=1e-12)
                    assert text.startswith(f"{np.mean(vals):.3f}")
                    if len(vals) > 1:
                        assert f"± {_std(vals):.3f}" in text
                    else:
                        assert "±" not in text
                seeds_cell = row[len(board["columns"]) - 2]
                assert seeds_cell[1] == str(len(entry["records"]))


def test_separate_groups_for_protocol_synthetic_and_dataset(site):
    got = boards(task_page(site, "ham7"))
    headings = [b["heading"] for b in got]
    assert headings[0].startswith("real data ham10000, protocol quick")  # the largest real group first
    assert headings[-1].startswith("SYNTHETIC data synthetic")  # synthetic last
    assert any("protocol paper" in h for h in headings)
    assert any(fx.XSS_DATASET in h for h in headings)
    sizes = sorted(len(b["rows"]) for b in got)
    assert sizes == [1, 1, 1, 3]  # erm, focal (one entry for its two settings), the escaped method


def test_settings_of_one_method_are_one_entry_chosen_on_validation(site):
    main = boards(task_page(site, "ham7"))[0]
    labels = [row[1][1] for row in main["rows"]]
    (focal,) = [label for label in labels if label.startswith("focal")]
    assert focal.startswith("focal loss.gamma=2") and "chosen on validation from 2 settings" in focal
    page = _entry_page(site, "ham7", "focal loss.gamma=2")
    table = parse(page).root.find("table", "settings-searched")
    rows = [[td.text for td in tr.iter("td")] for tr in table.find("tbody").iter("tr")]
    assert [(r[0], r[2], r[3]) for r in rows] == [
        ("loss.gamma=2", "3", "yes"),
        ("loss.gamma=1", "1", ""),
    ] or [(r[0], r[2], r[3]) for r in rows] == [("loss.gamma=1", "1", ""), ("loss.gamma=2", "3", "yes")]
    link = next(a for a in table.iter("a") if a.text == "loss.gamma=1")
    other = (page.parent / link.attrs["href"]).resolve()
    assert other.is_file() and "a setting not chosen on validation" in parse(other).root.find("section").text


def test_bootstrap_interval_is_the_paired_seed_mean_interval(site):
    """The macro-F1 interval of focal (3 seeds) recomputed with scikit-learn on lesion resamples."""
    main = boards(task_page(site, "ham7"))[0]
    exp = fx.expected_groups(site["results"])["ham7"]
    entry = next(
        e for g in exp for e in g["entries"] if e["method"] == "focal" and e["options"]["loss.gamma"] == 2
    )
    row = next(r for r in main["rows"] if r[1][1].startswith("focal loss.gamma=2"))
    cell = next(td for attrs, _, td in row if attrs.get("data-metric") == "macro_f1")
    ci = cell.find("span", "ci").text
    import pandas as pd

    run_dirs = {json.loads(p.read_text())["run_id"]: p.parent for p in site["results"].rglob("record.json")}
    frames = [pd.read_csv(run_dirs[r["run_id"]] / "predictions" / "test.csv") for r in entry["records"]]
    classes = entry["records"][0]["task"]["classes"]
    y = frames[0]["label"].to_numpy()
    preds = [f[[f"p_{c}" for c in classes]].to_numpy().argmax(axis=1) for f in frames]
    lesions = sorted(set(frames[0]["group"]))  # whole lesions are resampled, in sorted id order
    members = [np.flatnonzero(frames[0]["group"].to_numpy() == g) for g in lesions]
    draws = np.random.default_rng(0).integers(0, len(lesions), size=(N_BOOT, len(lesions)))
    idx = [np.concatenate([members[u] for u in d]) for d in draws]
    means = [np.mean([f1_score(y[i], p[i], average="macro") for p in preds]) for i in idx]
    low, high = np.quantile(means, [0.025, 0.975])
    assert ci == f"[{low:.3f}, {high:.3f}]"


def test_interval_withheld_when_predictions_disagree_with_record(tmp_path):
    results = tmp_path / "runs"
    run = fx.write_run(results, {"task": "ham7", "method": "erm", "seed": 0, "strength": 1.0})
    rec = json.loads((run / "record.json").read_text())
    rec["metrics"]["test"]["accuracy"] += 0.01
    (run / "record.json").write_text(json.dumps(rec))
    build_site(results, tmp_path / "site")
    page = next((tmp_path / "site" / "task").glob("*.html"))
    row = boards(page)[0]["rows"][0]
    acc = next(td for attrs, _, td in row if attrs.get("data-metric") == "accuracy")
    f1 = next(td for attrs, _, td in row if attrs.get("data-metric") == "macro_f1")
    assert "do not reproduce the recorded value" in acc.find("span", "ci").attrs["title"]
    assert f1.find("span", "ci").text.startswith("[")


def test_record_strings_are_escaped_and_pages_carry_csp(site):
    pages = list(site["out"].rglob("*.html"))
    assert len(pages) > 10
    for page in pages:
        raw = page.read_text()
        assert "<script>window" not in raw and "<img src=x" not in raw and "<b>V-VI" not in raw
        tree = parse(page)
        metas = [
            a for t, a in tree.starttags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"
        ]
        assert metas and metas[0]["content"] == (
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:"
        )
        for tag, attrs in tree.starttags:
            assert not any(k.startswith("on") for k in attrs), (page, tag, attrs)
            assert "style" not in attrs and tag != "style"
            if tag == "script":
                assert attrs["src"].endswith("static/sort.js")
    all_html = "".join(p.read_text() for p in pages)
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in all_html
    assert "&lt;img src=x onerror=window.__pwned=2&gt;" in all_html


def test_every_link_and_image_resolves(site):
    for page in site["out"].rglob("*.html"):
        tree = parse(page)
        for tag, attrs in tree.starttags:
            ref = (
                attrs.get("src")
                if tag in ("img", "script")
                else attrs.get("href")
                if tag in ("a", "link")
                else None
            )
            if not ref or ref.startswith("#"):
                continue
            target = (page.parent / ref.split("#")[0]).resolve()
            assert target.is_file(), (page, ref)
            assert site["out"].resolve() in target.parents
            if tag == "img":
                with Image.open(target) as im:
                    assert min(im.size) >= 16 and im.format == "PNG"


def _entry_page(site, task: str, label: str) -> Path:
    page = task_page(site, task)
    for board in boards(page):
        for row in board["rows"]:
            if row[1][1].startswith(label):  # then its notes
                return (page.parent / row[1][2].find("a").attrs["href"]).resolve()
    raise AssertionError(label)


def test_method_page_per_class_confusion_fairness(site):
    page = _entry_page(site, "ham7", "focal loss.gamma=2")
    tree = parse(page)
    exp = fx.expected_groups(site["results"])["ham7"]
    recs = next(
        e for g in exp for e in g["entries"] if e["method"] == "focal" and e["options"]["loss.gamma"] == 2
    )["records"]
    per_class = tree.root.find("table", "per-class")
    for tr in per_class.find("tbody").iter("tr"):
        cls = tr.find("th").text
        cells = [td.text for td in tr.iter("td")]
        vals = [r["metrics"]["test"]["per_class"][cls]["f1"] for r in recs]
        assert cells[0] == str(recs[0]["metrics"]["test"]["per_class"][cls]["support"])
        assert cells[1:] == [f"{v:.3f}" for v in vals] + [f"{np.mean(vals):.3f}"]
    cm = tree.root.find("table", "confusion")
    got = [[int(td.text) for td in tr.iter("td")] for tr in cm.find("tbody").iter("tr")]
    assert got == np.sum([r["metrics"]["test"]["confusion_matrix"] for r in recs], axis=0).tolist()
    fairness = next(s for s in tree.root.iter("section") if s.attrs.get("id") == "fairness")
    audit = recs[0]["fairness"]["groupings"]["skin_type"]
    table = next(t for t in fairness.iter("table") if t.find("caption").text.endswith("skin_type / groups"))
    got = {tr.find("td").text: [td.text for td in tr.iter("td")] for tr in table.find("tbody").iter("tr")}
    for row in audit["groups"]:  # "<b>V-VI</b>" among them: shown as text, escaped in the markup
        assert got[row["group"]][1:4] == [str(row["n"]), str(row["positives"]), f"{row['recall']:.3f}"]
    assert "Lin et al., Focal Loss" in tree.root.find("dd", "paper").text
    imgs = [a["src"] for t, a in tree.starttags if t == "img"]
    assert {"per_class_f1.png", "confusion.png", "learning_curves.png", "roc_pr_0.png"} <= set(imgs)


def test_gradcam_gallery_copies_listed_images(site):
    page = _entry_page(site, "ham7", "erm")
    tree = parse(page)
    gallery = [a for t, a in tree.starttags if t == "img" and a["src"].startswith("cams/")]
    assert len(gallery) == 3  # two from seed 0's cams/ folder, one listed by seed 1
    section = next(s for s in tree.root.iter("section") if s.attrs.get("id") == "cams")
    captions = [fc.text for fc in section.iter("figcaption")]
    assert captions == ["ISIC_test_00000", "ISIC_test_00001", "image_id: ISIC_test_00003, label: <i>nv</i>"]
    for a in gallery:
        assert (page.parent / a["src"]).is_file()


def test_decision_task_shows_operating_point(site):
    got = boards(task_page(site, "binary"))
    assert got[0]["columns"][2] == "operating_point.f1"
    page = _entry_page(site, "binary", "recall_ce")
    tree = parse(page)
    section = next(s for s in tree.root.iter("section") if s.attrs.get("id") == "operating-point")
    rows = [[td.text for td in tr.iter("td")] for tr in section.find("tbody").iter("tr")]
    exp = fx.expected_groups(site["results"])["binary"][0]
    recs = next(e for e in exp["entries"] if e["method"] == "recall_ce")["records"]
    assert [r[3] for r in rows] == [
        f"{r['metrics']['test']['operating_point']['threshold']:.3f}" for r in recs
    ]
    assert [r[7] for r in rows] == [f"{r['metrics']['test']['operating_point']['f1']:.3f}" for r in recs]


def test_build_report_for_one_run(site, tmp_path):
    run = next(p.parent for p in site["results"].rglob("record.json") if "recall_ce" in p.read_text())
    index = build_report(run, tmp_path / "report")
    tree = parse(index)
    rec = json.loads((run / "record.json").read_text())
    assert tree.root.find("h1").text == "recall_ce on binary"
    assert rec["run_id"] in index.read_text()
    for t, a in tree.starttags:
        if t == "img":
            assert (index.parent / a["src"]).is_file()
    assert (tmp_path / "report" / "static" / "sort.js").is_file()


def test_rebuild_replaces_a_previous_site_but_refuses_other_folders(site, tmp_path):
    out = tmp_path / "site"
    build_site(site["results"], out, site["config"])
    (out / "stale.html").write_text("old")
    build_site(site["results"], out, site["config"])
    assert not (out / "stale.html").exists()
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty and was not built by dermbench"):
        build_site(site["results"], other)
    assert (other / "keep.txt").read_text() == "mine"


def _one_run(tmp_path: Path) -> Path:
    return fx.write_run(tmp_path / "runs", {"task": "binary", "method": "erm", "seed": 0, "strength": 1.0})


def test_a_broken_record_is_skipped_named_and_counted_not_fatal(tmp_path):
    run = _one_run(tmp_path)
    (run / "record.json").write_text("{not json")
    index = build_site(tmp_path / "runs", tmp_path / "site")
    page = index.read_text()
    assert "record.json" in page and "unreadable" in page and "not valid JSON" in page
    (run / "record.json").write_text(json.dumps({"schema": "dermbench.run/1", "status": "complete"}))
    page = build_site(tmp_path / "runs", tmp_path / "site").read_text()
    assert "field run_id is missing" in page


def test_missing_or_malformed_predictions_are_errors(tmp_path):
    run = _one_run(tmp_path)
    csv = run / "predictions" / "test.csv"
    text = csv.read_text()
    csv.write_text(text.replace("p_malignant", "p_other"))
    with pytest.raises(DataError, match=r"test\.csv: missing column\(s\) p_malignant"):
        build_site(tmp_path / "runs", tmp_path / "site")
    lines = text.splitlines()
    parts = lines[3].split(",")
    parts[2] = "9"  # label column: not a class index of a 2-class task
    lines[3] = ",".join(parts)
    csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="row 4, column label"):
        build_site(tmp_path / "runs", tmp_path / "site")
    csv.unlink()
    with pytest.raises(DataError, match="predictions/test.csv, which does not exist"):
        build_site(tmp_path / "runs", tmp_path / "site")


def test_record_cannot_pull_files_from_outside_its_run(tmp_path):
    run = _one_run(tmp_path)
    rec = json.loads((run / "record.json").read_text())
    rec["artifacts"]["cams"] = ["../../../../secret.png"]
    (run / "record.json").write_text(json.dumps(rec))
    with pytest.raises(DataError, match="points outside the run folder"):
        build_site(tmp_path / "runs", tmp_path / "site")


def test_config_errors_name_the_file_and_key(tmp_path):
    _one_run(tmp_path)
    cfg = tmp_path / "lb.toml"
    cfg.write_text("colums = 1\n")
    with pytest.raises(ConfigError, match=r"lb\.toml: unknown key\(s\) colums"):
        build_site(tmp_path / "runs", tmp_path / "site", cfg)
    cfg.write_text('[tasks.binary]\ncolumns = "f1"\n')
    with pytest.raises(ConfigError, match=r"\[tasks\.binary\] columns: expected list"):
        build_site(tmp_path / "runs", tmp_path / "site", cfg)
    cfg.write_text("n_boot = 3\n")
    with pytest.raises(ConfigError, match="n_boot must be at least 10"):
        build_site(tmp_path / "runs", tmp_path / "site", cfg)


def test_cli_commands(tmp_path, capsys):
    from dermbench.cli.main import main

    run = _one_run(tmp_path)
    assert (
        main(["leaderboard", "build", "--results", str(tmp_path / "runs"), "--out", str(tmp_path / "s")]) == 0
    )
    assert (tmp_path / "s" / "index.html").is_file()
    assert main(["report", str(run), "--out", str(tmp_path / "r")]) == 0
    assert "run report:" in capsys.readouterr().out
    assert (
        main(["leaderboard", "build", "--results", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")])
        == 2
    )
    assert "results folder" in capsys.readouterr().err


def test_leaderboard_config_in_repo_is_valid():
    from dermbench.leaderboard.config import read_config

    cfg = read_config(Path(__file__).resolve().parents[1] / "leaderboards" / "leaderboard.toml")
    assert cfg.columns("binary", "operating_point.f1", True)[0] == "operating_point.f1"
    assert cfg.columns("ham7", "macro_f1", False)[0] == "macro_f1"


def test_an_empty_results_folder_is_an_error_and_builds_nothing(tmp_path):
    """An empty result is not a success: a site over a folder with no record said nothing was wrong."""
    (tmp_path / "runs").mkdir()
    with pytest.raises(DataError, match="no run record under it"):
        build_site(tmp_path / "runs", tmp_path / "site")
    assert not (tmp_path / "site").exists()


def test_report_of_a_run_still_in_progress(tmp_path):
    run = fx.write_run(
        tmp_path / "runs", {"task": "ham7", "method": "erm", "seed": 2, "strength": 1.0, "status": "running"}
    )
    rec = json.loads((run / "record.json").read_text())
    rec.update(metrics={}, predictions={}, history=[], overfitting=None, best_epoch=None)
    (run / "record.json").write_text(json.dumps(rec))
    index = build_report(run, tmp_path / "report")
    tree = parse(index)
    assert any("this run is not complete (status running)" in p.text for p in tree.root.iter("p", "warning"))
    assert [a for t, a in tree.starttags if t == "img"] == []
    assert "No training history recorded." in index.read_text()


def test_ties_and_wins_are_marked_from_paired_resamples(tmp_path):
    """Two entries with the same predictions are tied with the best; a much weaker one is not."""
    results = tmp_path / "runs"
    for method, strength, key in (("twin_a", 2.0, "same"), ("twin_b", 2.0, "same"), ("weak", 0.2, None)):
        for seed in (0, 1, 2):  # enough seeds to be ranked
            spec = {"task": "ham7", "method": method, "seed": seed, "strength": strength}
            fx.write_run(results, {**spec, **({"probs_key": key} if key else {})})
    build_site(results, tmp_path / "site")
    page = next((tmp_path / "site" / "task").glob("*.html"))
    (board,) = boards(page)
    marks = {}
    for row in board["rows"]:
        method = row[1][1].split()[0]
        primary = row[2][2]
        diff = row[3][1]  # the best minus this entry, with its paired interval, printed
        assert (
            diff == "—"
            if list(primary.iter("span", "best"))
            else re.fullmatch(r"-?\d\.\d{3} \[-?\d\.\d{3}, -?\d\.\d{3}\]", diff)
        ), diff
        marks[method] = ("best" if list(primary.iter("span", "best")) else "") + (
            "tie" if list(primary.iter("span", "tie")) else ""
        )
    assert sorted(marks.values()) == ["", "best", "tie"]
    assert marks["weak"] == ""


def test_an_entry_trained_under_another_budget_or_with_few_seeds_is_not_ranked(tmp_path):
    results = tmp_path / "runs"
    for method, epochs, seeds in (("a", 4, 3), ("b", 4, 3), ("short", 2, 3), ("few", 4, 2)):
        for seed in range(seeds):
            spec = {"task": "ham7", "method": method, "seed": seed, "strength": 1.5, "epochs": epochs}
            fx.write_run(results, spec)
    build_site(results, tmp_path / "site")
    (board,) = boards(next((tmp_path / "site" / "task").glob("*.html")))
    ranks = {row[1][1].split("not ranked")[0]: (row[0][1], row[1][1]) for row in board["rows"]}
    assert sorted(r for r, _ in ranks.values()) == ["1", "2", "—", "—"]
    assert {ranks["a"][0], ranks["b"][0]} == {"1", "2"}
    assert "not ranked: other training budget: epochs 2 (group: 4)" in ranks["short"][1]
    assert "not ranked: 2 seeds; ranking needs 3" in ranks["few"][1]
    assert sum("budget" in t for _, t in ranks.values()) == 1
    assert "4 epochs" in board["heading"]


def test_a_trivial_result_is_named_on_the_board(tmp_path):
    results = tmp_path / "runs"
    for method in ("fine", "everyone"):
        run_dir = fx.write_run(results, {"task": "binary", "method": method, "seed": 0, "strength": 1.2})
        if method == "everyone":
            record = json.loads((run_dir / "record.json").read_text())
            record["metrics"]["test"]["flags"] = [
                {"code": "all_positive", "message": "calls 100.0% of images positive"}
            ]
            (run_dir / "record.json").write_text(json.dumps(record))
    build_site(results, tmp_path / "site")
    (board,) = boards(next((tmp_path / "site" / "task").glob("*.html")))
    texts = [row[1][1] for row in board["rows"]]
    assert any(
        t.startswith("everyone") and "trivial (seed 0): calls 100.0% of images positive" in t for t in texts
    )
    assert not any(t.startswith("fine") and "trivial" in t for t in texts)


def test_two_records_of_one_seed_count_once(tmp_path):
    """The same run recorded twice (another --groups or --out) is one seed, not two."""
    results = tmp_path / "runs"
    first = fx.write_run(results / "a", {"task": "ham7", "method": "erm", "seed": 0, "strength": 1.5})
    copy = results / "b" / first.relative_to(results / "a")
    shutil.copytree(first, copy)
    build_site(results, tmp_path / "site")
    (board,) = boards(next((tmp_path / "site" / "task").glob("*.html")))
    (row,) = board["rows"]
    assert row[-2][1] == "1"  # seeds column
    assert f"not counted again: {'/'.join(copy.parts[-4:])}" in row[1][1]


def test_a_class_score_column_says_it_is_taken_at_the_top_class(site):
    """per_class.mel.f1 beside operating-point columns: its header names the threshold."""
    html = task_page(site, "ham7").read_text()
    assert '<button type="button">mel f1 (argmax)</button>' in html
    assert "taken at the top class (argmax)" in html
