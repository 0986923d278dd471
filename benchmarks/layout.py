"""Memory layout of a training batch: contiguous NCHW against channels-last, per image size.

For one model and batch size, it times the training step (forward, cross-entropy, backward, Adam)
on a batch already in memory in each layout, interleaved in a rotated order over ``--repeats``
rounds, and prints the median images per second of each and which layout dermbench feeds at that
size on this device (``dermbench.stages.device.to_model_layout``). The CPU side of that rule,
``CPU_CHANNELS_LAST_FROM``, was set from this script's figures; on another CPU,
``DERMBENCH_CPU_CHANNELS_LAST_FROM=SIDE`` moves it to where this script finds the crossover.

    python benchmarks/layout.py --sizes 28,64,96,128,160,224
    python benchmarks/layout.py --smoke      # seconds (CI)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dermbench.builtin.tinycnn import TinyCNN  # noqa: E402
from dermbench.stages.device import pick_device, to_model_layout  # noqa: E402

LAYOUTS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}


def build_model(name: str, num_classes: int) -> nn.Module:
    if name == "tinycnn":  # the smoke runs' model
        return TinyCNN(num_classes)
    import timm

    return timm.create_model(name, num_classes=num_classes, pretrained=False)


def rates_by_layout(args: argparse.Namespace, size: int, device: torch.device) -> dict[str, float]:
    """Median images/s of the training step in each layout at ``size`` px."""
    torch.manual_seed(0)
    model = build_model(args.model, 7).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    base = torch.rand(args.batch, size, size, 3, device=device).permute(0, 3, 1, 2)
    inputs = {name: base.contiguous(memory_format=fmt) for name, fmt in LAYOUTS.items()}
    y = torch.randint(0, 7, (args.batch,), device=device)

    def step(x: torch.Tensor) -> None:
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for x in inputs.values():  # warm-up: oneDNN primitives for both layouts
        step(x)
    steps = max(2, round(args.steps * (64 / size) ** 2))  # about the same time per round at every size
    seconds: dict[str, list[float]] = {name: [] for name in inputs}
    names = list(inputs)
    for r in range(args.repeats):
        for name in names[r % 2 :] + names[: r % 2]:
            t0 = time.perf_counter()
            for _ in range(steps):
                step(inputs[name])
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds[name].append((time.perf_counter() - t0) / steps)
    return {name: args.batch / statistics.median(s) for name, s in seconds.items()}


def fed_layout(size: int, device: torch.device) -> str:
    """The layout dermbench gives a batch of ``size`` px on ``device``."""
    x = to_model_layout(torch.zeros(1, 3, size, size, device=device))
    return "channels_last" if x.is_contiguous(memory_format=torch.channels_last) else "contiguous"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="resnet18")
    p.add_argument("--sizes", default="28,64,96,128,160,224", help="comma-separated image sizes")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=20, help="steps per round at 64 px (scaled by size^-2)")
    p.add_argument("--repeats", type=int, default=6, help="interleaved rounds; the median is printed")
    p.add_argument("--device", default="auto")
    p.add_argument("--smoke", action="store_true", help="tiny: a small CNN, 16 and 32 px, 2 rounds")
    args = p.parse_args(argv)
    if args.smoke:
        args.model, args.sizes, args.batch, args.steps, args.repeats = "tinycnn", "16,32", 4, 2, 2
    device = pick_device(args.device)
    print(f"model {args.model}, batch {args.batch}, device {device}, torch {torch.__version__}")
    print(
        f"{'size':>5} {'contiguous':>11} {'channels_last':>14} {'cl / contiguous':>16} {'dermbench feeds':>16}"
    )
    for size in (int(s) for s in args.sizes.split(",")):
        r = rates_by_layout(args, size, device)
        print(f"{size:>5} {r['contiguous']:>11.1f} {r['channels_last']:>14.1f} "
              f"{r['channels_last'] / r['contiguous']:>16.2f} {fed_layout(size, device):>16}")  # fmt: skip
    print("images per second of the training step on a batch already in memory (median of the rounds)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
