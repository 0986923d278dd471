"""The shape of the package, read from its source: folders by concept, no arrow from the core into
``builtin/``, no built-in named in a string in the core, modules and functions of readable size."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dermbench"
CORE = sorted(p for p in PACKAGE.rglob("*.py") if "builtin" not in p.relative_to(PACKAGE).parts)
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60
# A module may name what it implements itself (its error messages say which component failed).
IMPLEMENTS = {
    "data/synthetic.py": {"synthetic"},
    "stages/batch_mix.py": {"mixup", "cutmix"},
    "stages/pretrain_vae.py": {"vae_pretrain"},
    "launch/submitit_launcher.py": {"local"},  # submitit's name of its local executor, not the launcher
    "launch/ray_launcher.py": {"local"},  # Ray's address for a cluster of the sweep's own, not the launcher
}
FOLDERS = ("builtin", "cli", "data", "evaluation", "explain", "gate", "launch", "leaderboard", "models",
           "plugins", "predict", "run", "segmentation", "stages")  # fmt: skip


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _imports(tree: ast.Module) -> set[str]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return out


def test_the_package_has_a_folder_per_concept():
    assert {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()} == set(FOLDERS)
    top = {p.stem for p in PACKAGE.glob("*.py")}
    assert top == {"__init__", "components", "errors", "hookspecs", "tasks", "testing"}


@pytest.mark.parametrize("path", CORE, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_the_core_never_imports_builtin(path):
    bad = sorted(
        m for m in _imports(_tree(path)) if m == "dermbench.builtin" or m.startswith("dermbench.builtin.")
    )
    assert not bad, f"{path.name} imports {bad}"


def test_the_core_names_no_builtin_component_in_a_string():
    import dermbench.builtin.defaults as defaults
    from dermbench.plugins import load_plugins

    reg = load_plugins(autoload=False).registries
    from dermbench.run.config import FIELDS

    builtin_names = {c.name for kind in ("losses", "optimizers", "stages", "posthoc", "predictors",
                                         "explainers", "methods", "samplers", "batch_transforms")
                     for c in reg.of(kind)} | set(defaults.DEFAULTS.values())  # fmt: skip
    found = []
    for path in CORE:
        if path.parts[-2] == "leaderboard":
            continue  # reads records; it builds no component
        tree = _tree(path)
        keys = {id(k) for n in ast.walk(tree) if isinstance(n, ast.Dict) for k in n.keys if k is not None}
        keys |= {id(n.slice) for n in ast.walk(tree) if isinstance(n, ast.Subscript)}  # record fields
        for node in ast.walk(tree):
            own = (
                IMPLEMENTS.get(str(path.relative_to(PACKAGE)), set()) | FIELDS
            )  # settings are not components
            if isinstance(node, ast.Constant) and node.value in builtin_names - own and id(node) not in keys:
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.value!r}")
    assert not found


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_and_functions_fit_on_a_few_screens(path):
    assert len(path.read_text().splitlines()) <= MAX_MODULE_LINES
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(_tree(path))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long
