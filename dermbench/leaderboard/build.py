"""``build_site``: a static leaderboard site from a folder tree of run records.

Layout of the output folder::

    index.html                                   tasks, with what was skipped and why
    task/<task>.html                             one table per comparable group
    entry/<task>/<group>/<method>/index.html     the method page (all seeds), with its images
    static/                                      style.css, sort.js, favicon.svg
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dermbench.errors import DataError
from dermbench.leaderboard import selective_view
from dermbench.leaderboard.aggregate import Board, build_boards
from dermbench.leaderboard.config import LeaderboardConfig, read_config
from dermbench.leaderboard.records import load_runs, slug
from dermbench.leaderboard.render import environment, prepare_out, write_page
from dermbench.leaderboard.report import entry_page
from dermbench.leaderboard.segmentation_view import METRICS as SEGMENTATION_METRICS
from dermbench.leaderboard.segmentation_view import PAGE as SEGMENTATION_PAGE
from dermbench.leaderboard.segmentation_view import load_segmentation_records, segmentation_boards


def _task_title(cfg: LeaderboardConfig, task: str, boards: list[Board]) -> tuple[str, str]:
    view = cfg.tasks.get(task)
    rec = boards[0].entries[0].runs[0].task
    title = (view.title if view else None) or rec.get("title") or task
    description = (view.description if view else None) or rec.get("description") or ""
    return str(title), str(description)


def standing(e: Any, board: Board, task_slug: str) -> dict[str, Any]:
    """Where the entry stands under the board's rules, for its page: rank or reasons, how its
    setting was chosen, and links to the settings searched beside it."""
    chooser = next((x for x in board.entries if e is x or any(e is a for a in x.alternatives)), e)
    return {
        "rank": e.rank,
        "unranked": e.unranked if e is chooser else [f"a setting not chosen on validation (chosen: {chooser.label})"],
        "selection": chooser.selection,
        "settings": [
            {"label": x.variant or "default", "href": f"../{x.slug}/index.html", "here": x is e}
            for x in (chooser, *chooser.alternatives)
        ] if chooser.alternatives else [],
        "rules": board.rules,
    }  # fmt: skip


def _entry_pages(
    env: Any, cfg: LeaderboardConfig, out: Path, task_slug: str, title: str, boards: list[Board]
) -> None:
    for board in boards:
        for e in board.all_entries:
            entry_page(
                env,
                cfg,
                e.runs,
                out / "entry" / task_slug / board.slug / e.slug,
                root="../../../../",
                crumbs=[("../../../../index.html", cfg.title), (f"../../../../task/{task_slug}.html", title)],
                columns=board.columns,
                label=e.label,
                cells=e.cells,
                standing=standing(e, board, task_slug),
            )


def _task_pages(
    env: Any, cfg: LeaderboardConfig, out: Path, task: str, boards: list[Board], common: dict
) -> dict:
    """The task's page and its entries' pages; the task's line on the index."""
    task_slug = slug(task)
    title, description = _task_title(cfg, task, boards)
    _entry_pages(env, cfg, out, task_slug, title, boards)
    write_page(
        env,
        "task.html",
        out / "task" / f"{task_slug}.html",
        root="../",
        crumbs=[("../index.html", cfg.title)],
        title=title,
        description=description,
        task=task,
        task_slug=task_slug,
        boards=boards,
        selective={b.slug: selective_view.board_table(b.entries, cfg.digits) for b in boards},
        **common,
    )
    return {
        "name": task,
        "title": title,
        "description": description,
        "href": f"task/{task_slug}.html",
        "groups": len(boards),
        "entries": sum(len(b.entries) for b in boards),
        "runs": sum(len(b.runs) for b in boards),
        "boards": boards,
    }


def _segmentation_page(env: Any, results: Path, out: Path) -> dict[str, Any] | None:
    """The segmentation page, when there are segmentation records; what the index links."""
    found = load_segmentation_records(results)
    if not found:
        return None
    boards = segmentation_boards(found)
    write_page(env, "segmentation.html", out / SEGMENTATION_PAGE, root="", crumbs=[("index.html", "Leaderboard")],
               title="Lesion segmentation", boards=boards, metrics=SEGMENTATION_METRICS)  # fmt: skip
    return {"href": SEGMENTATION_PAGE, "boards": len(boards), "runs": len(found)}


def build_site(results: Path, out: Path, config: Path | None = None) -> Path:
    """Build the site for every complete run record under ``results`` into ``out``.

    Returns the path of ``out/index.html``. ``config`` is a leaderboard TOML file (see
    ``leaderboards/leaderboard.toml``); without one, every task found is shown with default
    columns.
    """
    results, out = Path(results), Path(out)
    cfg = read_config(Path(config) if config is not None else None)
    loaded = load_runs(results)
    res, site = results.resolve(), out.resolve()
    if site == res or res in site.parents or site in res.parents:
        raise DataError(f"--out {out} and the results folder {results} overlap: build the site elsewhere")
    if not loaded.runs and not loaded.skipped and not load_segmentation_records(results):
        raise DataError(f"results folder {results}: no run record under it (record.json): nothing to build")
    boards = build_boards(loaded.runs, cfg)
    prepare_out(out)
    env = environment()
    common = {"digits": cfg.digits, "metric_label": cfg.label, "site_title": cfg.title}
    tasks = [_task_pages(env, cfg, out, task, task_boards, common) for task, task_boards in boards.items()]
    segmentation = _segmentation_page(env, results, out)
    seg_paths = {p for p, _ in load_segmentation_records(results)}
    skipped = [
        {"path": str(s.path.relative_to(results)), "status": s.status}
        for s in loaded.skipped
        if s.path not in seg_paths  # ranked on their own page
    ]
    return write_page(
        env,
        "index.html",
        out / "index.html",
        root="",
        crumbs=[],
        title=cfg.title,
        description=cfg.description,
        tasks=tasks,
        skipped=skipped,
        segmentation=segmentation,
        n_runs=len(loaded.runs),
        **common,
    )
