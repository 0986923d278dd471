"""``--opt SLOT.NAME=VALUE``: every slot must be one the run uses, and every name one its component
takes, checked before any folder or record is written.

A misspelt slot (``optimiser.lr``), a slot the method has no component for (``scheduler.*`` on a
method without a scheduler), a dataset or post-hoc step the run does not have, or an option the
component lacks is a one-line error naming what is known. Nothing set on the command line is
silently left unused.
"""

from __future__ import annotations

from typing import Any

from dermbench.components import Method, Ref
from dermbench.errors import ConfigError
from dermbench.run.config import RunConfig
from dermbench.tasks import Task

ALWAYS = ("model", "loss", "optimizer", "stage")  # every run has a model and trains it


def _stage_values(cfg: RunConfig, method: Method) -> list[dict[str, Any]]:
    from dermbench.run.fitting import stage_values

    return [stage_values(cfg, method, r)[0] for r in method.stages]


def used_slots(cfg: RunConfig, task: Task, method: Method, registries: Any) -> dict[str, list[Ref]]:
    """Each slot the run uses, with the components it configures there."""
    from dermbench.run.scoring import posthoc_refs

    stages = method.stages
    loss = [r.loss or Ref(registries.default_of("losses")) for r in stages]
    optimizer = [r.optimizer or Ref(registries.default_of("optimizers")) for r in stages]
    slots: dict[str, list[Ref]] = {"model": [], "stage": [], "loss": loss, "optimizer": optimizer}
    if any(r.scheduler for r in stages):
        slots["scheduler"] = [r.scheduler for r in stages if r.scheduler]
    samplers = [Ref(cfg.sampler)] if cfg.sampler else [r.sampler for r in stages if r.sampler]
    if samplers:
        slots["sampler"] = samplers
    mixers = [v["batch_transform"] for v in _stage_values(cfg, method) if v.get("batch_transform")]
    if mixers:
        slots["batch_transform"] = [Ref(str(m)) for m in mixers]
    if method.predictor is not None:
        slots["predictor"] = [method.predictor]
    for ref in posthoc_refs(task, method):
        slots[f"posthoc.{ref.name}"] = [ref]
    datasets = {**cfg.data, **cfg.test_data, **cfg.pretrain_data} or {registries.default_of("datasets"): None}
    for name in datasets:
        slots[f"data.{name}"] = [Ref(name)]
    from dermbench.data.chain import check_adapters, parse_chain

    chain = parse_chain(cfg.chain, dict(cfg.data))
    check_adapters(chain, registries, dict(cfg.data))
    for src in chain:
        slots[f"data.{src.name}"] = [Ref(src.adapter)]
    if cfg.gate:
        slots["gate"] = [Ref(cfg.gate)]
    for name, path in cfg.ood_data.items():
        if path:
            slots[f"data.{name}"] = [Ref(name)]
    return slots


def _slot_of(key: str) -> tuple[str, str]:
    """``posthoc.recall_threshold.recall`` -> (``posthoc.recall_threshold``, ``recall``)."""
    head, _, rest = key.partition(".")
    if head in ("data", "posthoc"):
        name, _, option = rest.partition(".")
        return f"{head}.{name}", option
    return head, rest


KINDS = {"loss": "losses", "optimizer": "optimizers", "scheduler": "schedulers", "sampler": "samplers",
         "batch_transform": "batch_transforms", "predictor": "predictors"}  # fmt: skip


def check_option_slots(cfg: RunConfig, task: Task, method: Method, registries: Any) -> None:
    slots = used_slots(cfg, task, method, registries)
    given: dict[str, dict[str, Any]] = {}
    for key, value in cfg.options.items():
        slot, option = _slot_of(key)
        if slot not in slots:
            raise ConfigError(
                f"option {key!r}: slot {slot!r} is not one this run uses (method {method.name!r} on task "
                f"{task.name!r} uses: {', '.join(sorted(slots))})"
            )
        given.setdefault(slot, {})[option] = value
    for slot, values in given.items():
        if slot == "gate":
            from dermbench.gate.report import gate_options

            gate_options(cfg)  # unknown or malformed gate options fail here, before any folder
            continue
        kind = KINDS.get(slot) or {"posthoc": "posthoc", "data": "datasets"}.get(slot.split(".")[0])
        if kind is None:
            continue  # model (timm keywords, checked by building it), stage (checked per stage)
        for ref in slots[slot]:
            registries.of(kind).get(ref.name).make_options({**ref.options, **values})
