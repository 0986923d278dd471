"""Built-in model: a tiny CNN for fast tests and smoke runs (any timm name works as well)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dermbench.components import Component
from dermbench.errors import ConfigError
from dermbench.hookspecs import hookimpl
from dermbench.plugins.contract import ModelContext


@dataclass(frozen=True)
class TinyCNNOptions:
    width: int = 16
    dropout: float = 0.0


def make_tinycnn(options: TinyCNNOptions, ctx: ModelContext) -> Any:
    from dermbench.builtin.tinycnn import TinyCNN

    if ctx.init not in ("random",):
        raise ConfigError(f"model tinycnn has no pretrained weights; use --init random (got {ctx.init!r})")
    return TinyCNN(ctx.num_classes, options.width, options.dropout, ctx.in_chans)


@hookimpl
def dermbench_register_models(register: Any) -> None:
    register(
        Component("tinycnn", make_tinycnn, "Three-block CNN for tests and smoke runs", options=TinyCNNOptions)
    )
