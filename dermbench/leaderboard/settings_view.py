"""Every setting that made a run's numbers, as the method page shows it: each stage's resolved
components and options, and who set each one (the method's recipe, a component default, or the
run: ``--opt SLOT.NAME``, ``--lr``), so an override never passes for the paper's recipe."""

from __future__ import annotations

from typing import Any

from dermbench.leaderboard.generic import Table, cell

SLOTS = ("loss", "optimizer", "scheduler", "sampler", "batch_transform")
OVERRIDDEN = "overridden by the run"


def set_by(slot: str, key: str, config: dict[str, Any], recipe_options: dict[str, Any]) -> str:
    """Who set ``slot.key``: the run (``--opt`` or ``--lr``), the recipe, or the component's default."""
    if f"{slot}.{key}" in (config.get("options") or {}):
        return f"{OVERRIDDEN} (--opt {slot}.{key})"
    if slot == "optimizer" and key == "lr" and config.get("lr") is not None:
        return f"{OVERRIDDEN} (--lr)"
    return "the method's recipe" if key in recipe_options else "the component's default"


def _component(stage: dict[str, Any], recipe: dict[str, Any], slot: str) -> tuple[str | None, dict, dict]:
    used = stage.get(slot)
    own = recipe.get(slot) if isinstance(recipe.get(slot), dict) else {}
    if isinstance(used, dict):
        return used.get("name"), used.get("options") or {}, own.get("options") or {}
    return (used if isinstance(used, str) else None), {}, own.get("options") or {}


def settings_tables(record: dict[str, Any], digits: int = 3) -> list[Table]:
    """One table per stage the run trained: component, option, value used, set by."""
    config = record.get("config") or {}
    recipes = [
        s
        for s in ((record.get("method") or {}).get("recipe") or {}).get("stages") or []
        if isinstance(s, dict)
    ]
    tables = []
    for i, stage in enumerate((record.get("resolved") or {}).get("stages") or []):
        recipe = recipes[i] if i < len(recipes) else {}
        rows = []
        for slot in SLOTS:
            name, used, own = _component(stage, recipe, slot)
            if name is None and not used:
                continue
            rows.append(
                [
                    slot,
                    "(component)",
                    str(name or "—"),
                    "the method's recipe" if own or recipe.get(slot) else "—",
                ]
            )
            for k, v in sorted(used.items()):
                if slot == "optimizer" and k == "lr" and stage.get("lr") is not None:
                    v = stage["lr"]  # the rate the stage trained at (the recorded options keep the recipe's)
                rows.append([slot, str(k), cell(v, digits), set_by(slot, str(k), config, own)])
        for key in ("epochs", "lr"):
            if stage.get(key) is not None:
                who = (
                    f"{OVERRIDDEN} (--lr)"
                    if key == "lr" and config.get("lr") is not None
                    else "the run's settings"
                )
                rows.append(["stage", key, cell(stage[key], digits), who])
        label = stage.get("stage") or f"stage {i + 1}"
        dataset = f" on {stage['dataset']}" if stage.get("dataset") else ""
        tables.append(
            Table(f"Settings used: {label}{dataset}", ["component", "option", "value", "set by"], rows)
        )
    return tables
