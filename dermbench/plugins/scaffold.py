"""``dermbench plugin new NAME``: a ready plugin package, installable with ``pip install -e``.

It writes ``dermbench-NAME/`` with a ``pyproject.toml`` declaring the ``dermbench`` entry point,
one module registering a loss (``NAME_loss``) and a method (``NAME``) through the hooks, a README
saying what to edit, and a test that uses the ``dermbench.testing`` fixtures to train the method
for one epoch on the synthetic sample. The generated test passes unchanged.
"""

from __future__ import annotations

import re
from pathlib import Path

from dermbench.errors import ConfigError

NAME = re.compile(r"^[a-z][a-z0-9_]{1,39}$")

PYPROJECT = """[build-system]
requires = ["hatchling>=1.21"]
build-backend = "hatchling.build"

[project]
name = "dermbench-{dist}"
version = "0.1.0"
description = "dermbench plugin: {name}"
readme = "README.md"
requires-python = ">=3.11"
dependencies = ["dermbench", "torch"]

[project.optional-dependencies]
test = ["pytest>=8"]

[project.entry-points.dermbench]
{name} = "dermbench_{name}.plugin"

[tool.hatch.build.targets.wheel]
packages = ["dermbench_{name}"]
"""

PLUGIN = '''"""dermbench plugin {name}: one loss and one method that trains with it.

Edit ``SmoothedCE`` (or register more components: models, optimizers, samplers, post-hoc steps,
see docs/plugins.md) and the method's recipe and profiles; cite the paper you implement in
``paper=`` and say in ``notes=`` what you chose where it is silent.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch.nn.functional as F
from torch import nn

from dermbench.components import Component, Method, Ref, StageRecipe
from dermbench.hookspecs import hookimpl


@dataclass(frozen=True)
class SmoothedCEOptions:  # `dermbench list losses -v` shows them; `--opt loss.smoothing=0.2` sets them
    smoothing: float = field(default=0.1, metadata={{"help": "label smoothing in [0, 1)"}})


class SmoothedCE(nn.Module):
    def __init__(self, smoothing: float) -> None:
        super().__init__()
        self.smoothing = smoothing

    def forward(self, logits, targets):
        return F.cross_entropy(logits, targets, label_smoothing=self.smoothing)


@hookimpl
def dermbench_register_losses(register):
    register(
        Component(
            "{name}_loss",
            lambda options, ctx: SmoothedCE(options.smoothing),
            "Cross-entropy with label smoothing (edit me)",
            options=SmoothedCEOptions,
        )
    )


@hookimpl
def dermbench_register_methods(register):
    register(
        Method(
            "{name}",
            "Adam with the {name}_loss loss (edit me)",
            stages=(StageRecipe(loss=Ref("{name}_loss"), optimizer=Ref("adam", {{"lr": 1e-4}})),),
            profiles={{"paper": {{"epochs": 100, "batch_size": 32, "image_size": 224, "init": "imagenet"}}}},
            paper=None,  # "Author et al., Title, Venue Year"
            notes="",
        )
    )
'''

TEST = '''"""The plugin registers its components and its method trains on the synthetic sample."""

from __future__ import annotations

import dermbench_{name}.plugin as plugin


def test_registers_its_loss_and_method(dermbench_plugins):
    reg = dermbench_plugins(("{name}", plugin)).registries
    assert "{name}_loss" in reg.losses
    assert reg.methods.get("{name}").plugin == "{name}"


def test_one_epoch_on_the_synthetic_sample(dermbench_run):
    record = dermbench_run(method="{name}", plugins=[("{name}", plugin)])
    assert record["status"] == "complete"
    assert record["method"]["plugin"] == "{name}"
    assert record["resolved"]["stages"][0]["loss"]["name"] == "{name}_loss"
    assert 0.0 <= record["metrics"]["test"]["macro_f1"] <= 1.0
'''

README = """# dermbench-{dist}

A [dermbench](https://github.com/) plugin: the method `{name}` and its loss `{name}_loss`.

```bash
pip install -e .                       # registers the plugin through its entry point
dermbench plugins                      # {name} is listed, with what it registers
dermbench run --task ham7 --method {name} --profile smoke
pytest tests                           # one epoch on the built-in synthetic sample
```

Edit `dermbench_{name}/plugin.py`: the loss, the method's recipe and its `paper` profile. Then run
it on real data, `dermbench leaderboard verify` its run folders, and submit them (see dermbench's
docs/contributing.md).
"""


def check_name(name: str, taken: set[str]) -> None:
    if not NAME.match(name):
        raise ConfigError(
            f"plugin name {name!r}: use 2-40 lowercase letters, digits or underscores, starting with a letter"
        )
    clash = sorted({name, f"{name}_loss"} & taken)
    if clash:
        raise ConfigError(
            f"plugin name {name!r}: {', '.join(clash)} is already registered by an installed plugin"
        )


def new_plugin(name: str, out: Path, taken: set[str] = frozenset()) -> Path:
    """Write ``out/dermbench-<name>/`` and return it; an existing folder is never overwritten."""
    check_name(name, set(taken))
    dist = name.replace("_", "-")
    root = Path(out) / f"dermbench-{dist}"
    if root.exists():
        raise ConfigError(f"{root} already exists: choose another name or folder")
    files = {
        "pyproject.toml": PYPROJECT,
        "README.md": README,
        f"dermbench_{name}/__init__.py": '"""dermbench plugin {name}."""\n',
        f"dermbench_{name}/plugin.py": PLUGIN,
        f"tests/test_{name}.py": TEST,
    }
    for rel, template in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template.format(name=name, dist=dist))
    return root
