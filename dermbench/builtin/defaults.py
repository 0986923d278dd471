"""Which built-in component a run uses where it names none; a plugin may answer first."""

from __future__ import annotations

from dermbench.hookspecs import hookimpl

DEFAULTS = {
    "tasks": "ham7",
    "methods": "erm",
    "datasets": "synthetic",
    "stages": "supervised",
    "losses": "ce",
    "optimizers": "adam",
    "explainers": "gradcampp",
    "launchers": "local",
    "segmenters": "unet",
}


@hookimpl
def dermbench_default_component(kind: str) -> str | None:
    return DEFAULTS.get(kind)
