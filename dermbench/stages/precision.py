"""The numeric precision and memory layout a run trains and predicts in, chosen by measurement.

``--precision fp32`` trains in float32; ``bf16`` runs the model's forward pass under bfloat16
autocast (CPU or CUDA); ``auto`` (the default) times a few training steps of the run's own model,
batch and image size in each candidate (precision x memory layout) before the first epoch and keeps
the fastest, as cuDNN's benchmark mode times its algorithms. bf16 autocast is faster for some
models and slower for others on one CPU (depthwise convolutions gain nothing), so no fixed rule is
right for every model. Where the device has no native bf16 (a CPU without AVX-512 BF16 or AMX,
where oneDNN would emulate it), ``auto`` is fp32 without timing.

What stays in fp32 under bf16: the master weights and the optimiser state (autocast casts a
layer's inputs, never its parameters), the losses (the logits are cast back to fp32 before every
loss: LDAM/LMF margins and the focal term are computed in fp32), and the metrics (probabilities
from fp32 logits). A candidate replaces fp32 NCHW only when it is at least ``MIN_GAIN`` faster, so
timing noise between two close candidates does not split one study across precisions.

The plan in force is process-wide (:func:`use_plan`); :func:`autocast` and
:func:`dermbench.stages.device.to_model_layout` read it. The resolved dtype is part of the run
record (``environment.precision``) and of the leaderboard's training budget.
"""

from __future__ import annotations

import contextlib
import copy
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

PRECISIONS = ("auto", "fp32", "bf16")
MIN_GAIN = 1.05  # a candidate must be this much faster than fp32 NCHW to be chosen
TIMING_ROUNDS = 3  # interleaved rounds over the candidates; the median of each is kept
STEPS_PER_ROUND = 2


@dataclass(frozen=True)
class Plan:
    """How batches run: ``dtype`` fp32 or bf16; ``channels_last`` True / False, or None for the
    size rule of :func:`dermbench.stages.device.cpu_channels_last_from`."""

    dtype: str = "fp32"
    channels_last: bool | None = None
    requested: str = "fp32"
    set_by: str = "dermbench"
    candidates: tuple[dict, ...] = field(default_factory=tuple)

    def describe(self) -> dict[str, Any]:
        """What the run record says (``environment.precision``)."""
        out = asdict(self)
        out["layout"] = {True: "channels_last", False: "contiguous NCHW", None: "the size rule"}[
            self.channels_last
        ]
        out["candidates"] = list(self.candidates)
        return out

    @classmethod
    def from_record(cls, described: dict) -> Plan:
        return cls(
            dtype=described["dtype"], channels_last=described.get("channels_last"),
            requested=described.get("requested", described["dtype"]),
            set_by=f"{described.get('set_by', 'dermbench')}; kept from the interrupted run",
            candidates=tuple(described.get("candidates") or ()),
        )  # fmt: skip


def default_plan(device: torch.device) -> Plan:
    """What runs did before ``--precision`` existed: bf16 autocast on CUDA, fp32 on the CPU."""
    return Plan(dtype="bf16" if device.type == "cuda" else "fp32", channels_last=None, requested="default")


_CURRENT: list[Plan | None] = [None]


@contextlib.contextmanager
def use_plan(plan: Plan) -> Iterator[Plan]:
    """Run the enclosed training and prediction under ``plan``."""
    before, _CURRENT[0] = _CURRENT[0], plan
    try:
        yield plan
    finally:
        _CURRENT[0] = before


def current_plan(device: torch.device) -> Plan:
    return _CURRENT[0] or default_plan(device)


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on ``device`` when the plan in force says bf16; nothing otherwise."""
    if current_plan(device).dtype == "bf16" and device.type in ("cpu", "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def bf16_native(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 in hardware (on the CPU: oneDNN's AVX-512 BF16 or AMX)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


def candidates(device: torch.device, requested: str) -> list[tuple[str, bool]]:
    """(dtype, channels_last) pairs worth timing; the first is the reference."""
    dtypes = ["fp32", "bf16"] if requested == "auto" else [requested]
    if device.type == "cuda":
        return [(d, True) for d in dtypes]  # NHWC is cuDNN's fast layout in either precision
    return [(d, cl) for d in dtypes for cl in (False, True)]


def choose_plan(
    requested: str, device: torch.device, make_step: Callable[[], Callable[[], None]] | None
) -> Plan:
    """The plan for ``--precision requested``: the step ``make_step()`` builds (one training step,
    run under each candidate's plan) timed where there is a choice, else the one candidate there
    is. The global RNG is as it was before: timing draws nothing a run would see."""
    if requested == "auto" and not bf16_native(device):
        return Plan("fp32", None, "auto", "auto: no native bf16 on this device, fp32 without timing")
    if requested == "bf16" and not bf16_native(device):
        return Plan("bf16", None, "bf16", "--precision bf16 (emulated: this device has no native bf16)")
    options = candidates(device, requested)
    if make_step is None or len(options) == 1:
        dtype, cl = options[0]
        return Plan(dtype, cl if device.type == "cuda" else None, requested, f"--precision {requested}")
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        timings = time_candidates(options, make_step())
    return pick_fastest(requested, timings)


def time_candidates(options: list[tuple[str, bool]], step: Callable[[], None]) -> list[dict]:
    """Median ms per step of each candidate over interleaved rounds (one warm-up step each)."""
    for dtype, cl in options:
        with use_plan(Plan(dtype, cl)):
            step()  # warm-up: oneDNN and cuDNN pick their kernels on the first call
    rounds: list[list[float]] = [[] for _ in options]
    for _ in range(TIMING_ROUNDS):
        for i, (dtype, cl) in enumerate(options):
            with use_plan(Plan(dtype, cl)):
                started = time.perf_counter()
                for _ in range(STEPS_PER_ROUND):
                    step()
                rounds[i].append((time.perf_counter() - started) * 1000 / STEPS_PER_ROUND)
    return [
        {"dtype": d, "channels_last": cl, "ms_per_step": round(statistics.median(r), 2)}
        for (d, cl), r in zip(options, rounds, strict=True)
    ]


def pick_fastest(requested: str, timings: list[dict]) -> Plan:
    """The fastest candidate, unless it beats the first (the reference) by less than ``MIN_GAIN``."""
    reference = timings[0]
    best = min(timings, key=lambda t: t["ms_per_step"])
    if best["ms_per_step"] * MIN_GAIN > reference["ms_per_step"]:
        best = reference
    return Plan(
        best["dtype"], best["channels_last"], requested,
        f"--precision {requested}: the fastest of {len(timings)} timed candidates", tuple(timings),
    )  # fmt: skip


def training_step(
    model: nn.Module, batch_size: int, image_size: int, n_classes: int, device: torch.device
) -> Callable[[], None]:
    """One AdamW training step of a copy of ``model`` on a random batch of the run's shape, in the
    plan in force when it is called. The run's own model and optimiser are never touched (the copy
    and its optimiser are thrown away)."""
    from dermbench.stages.device import to_model_layout

    probe = copy.deepcopy(model).to(device).train()
    opt = torch.optim.AdamW(probe.parameters(), lr=0.0)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(max(batch_size, 2), 3, image_size, image_size, generator=gen).to(device)
    y = torch.randint(0, n_classes, (x.shape[0],), generator=gen).to(device)

    def step() -> None:
        with autocast(device):
            logits = probe(to_model_layout(x))
        loss = nn.functional.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    return step
