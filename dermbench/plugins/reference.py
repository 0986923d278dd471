"""The plugin API reference (``docs/api.md``), generated from the code so that it cannot drift.

``python -m dermbench.plugins.reference > docs/api.md`` rewrites it; a test fails when the
committed file differs from what the code generates.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Iterator

HEADER = """# Plugin API reference

Generated from the code by `python -m dermbench.plugins.reference > docs/api.md`; do not edit by
hand (a test compares the two). The guide is [plugins.md](plugins.md).
"""


def _doc(obj: object) -> str:
    return inspect.cleandoc(obj.__doc__ or "").strip()


def _fields(cls: type) -> Iterator[str]:
    hints = typing.get_type_hints(cls) if not cls.__module__.startswith("dermbench.plugins.contract") else {}
    for f in dataclasses.fields(cls):
        if callable(f.default):
            default = " = (a function that does nothing)"
        elif f.default is not dataclasses.MISSING:
            default = f" = {f.default!r}"
        elif f.default_factory is not dataclasses.MISSING:
            default = f" = {f.default_factory.__name__}()"
        else:
            default = ""
        kind = hints.get(f.name, f.type)
        kind = kind if isinstance(kind, str) else getattr(kind, "__name__", str(kind))
        yield f"- `{f.name}: {kind}{default}`"


def _section(title: str, objects: list, describe) -> list[str]:
    out = [f"## {title}", ""]
    for obj in objects:
        out += describe(obj)
    return out


def _hook(fn) -> list[str]:
    sig = str(inspect.signature(fn)).replace("'", "")
    return [f"### `{fn.__name__}{sig}`", "", _doc(fn), ""]


def _dataclass(cls) -> list[str]:
    return [f"### `{cls.__name__}`", "", _doc(cls), "", *_fields(cls), ""]


def _function(fn) -> list[str]:
    sig = str(inspect.signature(fn)).replace("'", "")
    return [f"### `{fn.__qualname__}{sig}`", "", _doc(fn), ""]


def render() -> str:
    from dermbench import components, hookspecs, testing
    from dermbench.plugins import contract

    hooks = [getattr(hookspecs, n) for n in dir(hookspecs) if n.startswith("dermbench_")]
    hooks.sort(key=lambda f: inspect.getsourcelines(f)[1])
    contexts = [
        getattr(contract, n)
        for n in ("ModelContext", "LossContext", "OptimContext", "BatchContext", "StageContext", "StageResult",
                  "MixedBatch", "PosthocContext", "PredictorContext", "ExplainerContext")
    ]  # fmt: skip
    specs = [components.Component, components.Ref, components.StageRecipe, components.Method,
             components.SweepPreset]  # fmt: skip
    fixtures = [testing.run_tiny, testing.make_plugins, testing.tiny_task_plugin]
    named = [
        testing.dermbench_run,
        testing.dermbench_plugins,
        testing.dermbench_process_plugins,
        testing.tiny_task,
    ]
    lines = [HEADER]
    lines += _section("Hooks (`dermbench.hookspecs`)", hooks, _hook)
    lines += _section("Contexts and results (`dermbench.plugins.contract`)", contexts, _dataclass)
    lines += _section("What plugins register (`dermbench.components`)", specs, _dataclass)
    lines += _section(
        "Building a component", [components.Component.build, components.Component.make_options], _function
    )
    lines += ["## Testing fixtures (`dermbench.testing`, a pytest plugin)", ""]
    for fx in named:
        fn = getattr(fx, "__wrapped__", fx)
        lines += [f"### fixture `{fn.__name__}`", "", _doc(fn) or "(see the helpers below)", ""]
    lines += _section("Testing helpers", fixtures, _function)
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(render(), end="")
