"""The HTML side shared by sites and single-run reports: templates, static files, output folders.

Autoescaping is on for every template and no template marks record data ``|safe``: any string
from a run record or a plugin reaches the page as text. Pages carry a Content-Security-Policy
that allows scripts and styles from the site's own files only, so even markup that escaped
escaping could not run inline script.
"""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from dermbench import __version__
from dermbench.errors import ConfigError

MARKER = ".dermbench-site"
CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:"
STATIC = ("style.css", "sort.js", "favicon.svg")


def num(v: Any, digits: int = 3) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("dermbench.leaderboard", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = num
    env.globals.update(csp=CSP, dermbench_version=__version__)
    return env


def prepare_out(out: Path) -> None:
    """An empty output folder with the static files; a previous build there is replaced.

    A folder that holds anything but an earlier build is refused rather than emptied: ``--out .``
    must not delete a checkout.
    """
    if out.exists():
        if not out.is_dir():
            raise ConfigError(f"--out {out} exists and is not a folder")
        if any(out.iterdir()):
            if not (out / MARKER).is_file():
                raise ConfigError(
                    f"--out {out} is not empty and was not built by dermbench: choose a new or empty folder"
                )
            shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text(
        f"built by dermbench {__version__}; this folder is replaced on the next build\n"
    )
    static = out / "static"
    static.mkdir()
    src = resources.files("dermbench.leaderboard") / "static"
    for name in STATIC:
        (static / name).write_bytes((src / name).read_bytes())


def write_page(env: jinja2.Environment, template: str, path: Path, **context: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(env.get_template(template).render(**context), encoding="utf-8")
    return path
