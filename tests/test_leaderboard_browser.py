"""The built site in a real headless Chromium (Debian's), served over HTTP on 127.0.0.1.

Checks what only a browser can: the page as rendered ranks and shows the numbers of the records,
the sort script re-orders rows, nothing logs a console error (a CSP violation would), every image
loads, and a script tag inside a method or dataset name never runs.
"""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dermbench.leaderboard import build_site

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="Debian's chromium is absent: run scripts/install-test-system.sh"
    ),
]
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "records" / "make_records.py"


def _fixture_module() -> Any:
    spec = importlib.util.spec_from_file_location("dermbench_fixture_records_browser", FIXTURES)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


fx = _fixture_module()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    base = tmp_path_factory.mktemp("browser")
    fx.write_tree(base / "runs")
    config = base / "leaderboard.toml"
    config.write_text("n_boot = 100\n")
    build_site(base / "runs", base / "site", config)
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "http.server",
            str(port),
            "--bind",
            "127.0.0.1",
            "--directory",
            str(base / "site"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield {
            "url": f"http://127.0.0.1:{port}",
            "results": base / "runs",
            "site": base / "site",
            "tmp": base,
        }
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture(scope="module")
def page(served: dict[str, Any]) -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        pg = browser.new_page(viewport={"width": 1400, "height": 1000})
        problems: list[str] = []
        pg.on(
            "console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None
        )
        pg.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        # a request the next navigation aborts (the favicon, fetched after load) is not a missing file:
        # a missing file answers 404, caught below
        pg.on(
            "requestfailed",
            lambda r: (
                None
                if r.failure == "net::ERR_ABORTED"
                else problems.append(f"request failed: {r.url} ({r.failure})")
            ),
        )
        pg.on("response", lambda r: problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)
        pg.problems = problems
        yield pg
        browser.close()


def _visit(page: Any, url: str) -> None:
    page.goto(url)
    page.wait_for_load_state("load")
    assert page.evaluate("typeof window.__pwned") == "undefined", url


def _rows(page: Any, table: Any) -> list[dict[str, Any]]:
    return table.evaluate(
        """t => Array.from(t.tBodies[0].rows, r => ({
            method: r.cells[1].querySelector('a').textContent,
            label: r.cells[1].innerText.replace(/\\s+/g, ' ').trim(),
            rank: r.cells[0].textContent.trim(),
            values: Object.fromEntries(Array.from(r.querySelectorAll('td[data-metric]'),
                c => [c.dataset.metric, c.querySelector('.mean').textContent])),
        }))"""
    )


def _main_ham7_entries(results: Path) -> tuple[list[dict], str]:
    groups = fx.expected_groups(results)["ham7"]
    main = max(groups, key=lambda g: sum(len(e["records"]) for e in g["entries"]))
    return main["entries"], main["primary_metric"]


def test_ranking_numbers_and_resorting_in_chromium(served, page):
    _visit(page, served["url"] + "/index.html")
    page.get_by_role("link", name="ham7").click()
    page.wait_for_load_state("load")
    assert page.evaluate("typeof window.__pwned") == "undefined"
    table = page.locator("table.board").first
    everything, primary = _main_ham7_entries(served["results"])
    entries = [e for e in everything if e["rank"]]  # the first table holds the ranked ones
    rows = _rows(page, table)
    assert [r["method"] for r in rows] == [e["method"] for e in entries]
    assert [r["rank"] for r in rows] == [str(i) for i in range(1, len(entries) + 1)]
    for row, entry in zip(rows, entries, strict=True):
        for m, shown in row["values"].items():
            assert shown == f"{np.mean([fx.metric(r, m) for r in entry['records']]):.3f}", (
                entry["method"],
                m,
            )
    unranked = _rows(page, page.locator("table.board.unranked").first)
    assert [r["method"] for r in unranked] == [e["method"] for e in everything if not e["rank"]]
    assert any(r["method"] == fx.XSS_METHOD for r in unranked)  # shown as text, not run

    def by(metric: str) -> list[str]:
        vals = [(np.mean([fx.metric(r, metric) for r in e["records"]]), e) for e in entries]
        return [e["method"] for _, e in sorted(vals, key=lambda t: -t[0])]

    table.locator("th[data-metric='accuracy'] button").click()
    assert [r["method"] for r in _rows(page, table)] == by("accuracy")
    assert table.locator("th[data-metric='accuracy']").get_attribute("aria-sort") == "descending"
    table.locator("th[data-metric='accuracy'] button").click()
    assert [r["method"] for r in _rows(page, table)] == by("accuracy")[::-1]
    table.get_by_role("button", name="Method").click()
    labels = [r["label"] for r in _rows(page, table)]
    assert labels == sorted(labels) and labels != [r["label"] for r in rows]
    table.get_by_role("button", name="Rank").click()  # rank sorts ascending first: the ranking again
    assert table.locator("th").first.get_attribute("aria-sort") == "ascending"
    assert [r["method"] for r in _rows(page, table)] == [e["method"] for e in entries]
    assert page.problems == []
    page.screenshot(path=str(served["tmp"] / "ham7.png"), full_page=True)


def test_every_page_loads_clean_with_all_images(served, page):
    site: Path = served["site"]
    pages = sorted(site.rglob("*.html"))
    assert len(pages) > 10
    for p in pages:
        _visit(page, f"{served['url']}/{p.relative_to(site).as_posix()}")
        broken = page.evaluate(
            "Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).length"
        )
        assert broken == 0, p
        assert page.evaluate("document.querySelectorAll('img[onerror], script:not([src])').length") == 0
    assert page.problems == []


def test_skipped_count_and_xss_dataset_group(served, page):
    _visit(page, served["url"] + "/index.html")
    assert "1 record skipped because the run is not complete" in page.locator("#skipped-count").inner_text()
    page.get_by_role("link", name="ham7").click()
    page.wait_for_load_state("load")
    headings = page.locator("section.group h2").all_inner_texts()
    assert sum(fx.XSS_DATASET in h for h in headings) == 1
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.problems == []


LAYOUT_CHECK = (Path(__file__).resolve().parent / "fixtures" / "browser" / "layout_check.js").read_text()
OLD_DEFECTS = """() => {  // the styles the pages had when these defects were seen (set through the CSSOM: CSP allows it)
  for (const e of document.querySelectorAll('th, td')) e.style.overflowWrap = 'anywhere';
  for (const e of document.querySelectorAll('.cols')) e.style.alignItems = 'stretch';
}"""
NO_SCROLL_BOX = """() => {  // wide tables without the box that scrolls them
  for (const e of document.querySelectorAll('td')) e.style.whiteSpace = 'nowrap';
  for (const e of document.querySelectorAll('.scroll')) e.style.overflowX = 'visible';
}"""


def _layout_problems(page: Any, served: dict[str, Any], width: int) -> dict[str, list[str]]:
    site: Path = served["site"]
    page.set_viewport_size({"width": width, "height": 900})
    found = {}
    try:
        for p in sorted(site.rglob("*.html")):
            _visit(page, f"{served['url']}/{p.relative_to(site).as_posix()}")
            if problems := page.evaluate(LAYOUT_CHECK):
                found[p.relative_to(site).as_posix()] = sorted(set(problems))[:5]
    finally:
        page.set_viewport_size({"width": 1400, "height": 1000})
    return found


@pytest.mark.parametrize("width", [800, 1400])
def test_every_page_holds_its_layout_at_two_widths(served, page, width):
    """No word broken inside a header or cell, no page or box wider than its room (wide tables
    scroll in their own box), no box stretched past its content."""
    assert _layout_problems(page, served, width) == {}
    assert page.problems == []


def test_the_layout_check_finds_the_defects_it_guards_against(served, page):
    site: Path = served["site"]
    entry = next(p for p in sorted(site.rglob("entry/**/index.html")) if "Component options" in p.read_text())
    problems = []
    try:
        for width, restyle in ((800, OLD_DEFECTS), (1400, OLD_DEFECTS), (800, NO_SCROLL_BOX)):
            page.set_viewport_size({"width": width, "height": 900})
            _visit(page, f"{served['url']}/{entry.relative_to(site).as_posix()}")
            page.evaluate(restyle)
            problems += [f"{width}: {p}" for p in page.evaluate(LAYOUT_CHECK)]
    finally:
        page.set_viewport_size({"width": 1400, "height": 1000})
    assert any(p.startswith("800: word broken in th") for p in problems), problems
    assert any(p.startswith("1400: ") and "taller than its content" in p for p in problems), problems
    assert any(p.startswith("800: page ") and "wide in a 800px window" in p for p in problems), problems
