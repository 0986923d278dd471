"""Training throughput: dermbench's data path against the loop a researcher writes by hand.

For one model, batch size, image size and augmentation (flips), it prints, in one process:

- ``dermbench``: the supervised stage's training epoch (``train_one_epoch``) on images decoded
  once by the cache and read through its memory maps, validation left out; ``resident``: the same
  on the same images held in the process (``--image-memory resident``);
- ``imagefolder``: a plain torchvision ``ImageFolder`` + PIL ``DataLoader`` loop with workers that
  decodes, resizes and flips every image every epoch, feeding the same model and optimiser step;
- ``in-memory``: the same model and optimiser step on float tensors already on the device, in
  the faster of contiguous NCHW and channels-last at that size (the ceiling no data path can beat),
  once in fp32 and once under bf16 autocast (``fp32 ceil``, ``bf16 ceil``; bf16 only where the
  device computes it natively, as ``--precision auto`` decides);

``dermbench`` and ``imagefolder`` train in the plan ``--precision`` (default ``auto``) resolves
to for the model and size, as a run would (``dermbench.stages.precision``); the plan is printed;

as images per second (the median of ``--repeats`` interleaved runs of each loop, 3 by default), with
the ratios, and the peak resident memory of the process.

    python benchmarks/throughput.py --data ham10000=../shared/data/ham10000 --sizes 64,224 --images 2048
    python benchmarks/throughput.py --models resnet18,resnet50,efficientnet_lite0 --sizes 64,128,224
    python benchmarks/throughput.py --smoke      # seconds, on the built-in synthetic sample (CI)
"""

from __future__ import annotations

import argparse
import importlib
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dermbench.data.prepare import prepare_data  # noqa: E402
from dermbench.data.split_data import subset  # noqa: E402
from dermbench.models.build import build_run_model  # noqa: E402
from dermbench.plugins import load_plugins  # noqa: E402
from dermbench.plugins.contract import StageContext  # noqa: E402
from dermbench.run.config import parse_assignments, resolve_config  # noqa: E402
from dermbench.stages.device import pick_device, to_model_layout  # noqa: E402
from dermbench.stages.options import SupervisedOptions  # noqa: E402
from dermbench.stages.precision import Plan, autocast, bf16_native, choose_plan, training_step, use_plan  # noqa: E402
from dermbench.stages.supervised import build_trainables, train_one_epoch, validate  # noqa: E402


def _stage(cfg, task, reg, device, method: str, train, val) -> tuple[StageContext, object]:
    """The supervised stage of ``method``'s first recipe, as a run sets it up, and its trainables."""
    ctx = StageContext(model=_model(cfg, task, reg, device), train=train, val=val, task=task, cfg=cfg,
                       recipe=reg.methods.get(method).stages[0], stage_index=0, registries=reg, device=device,
                       checkpoint_dir=Path(tempfile.mkdtemp()), seed=0, progress=False)  # fmt: skip
    return ctx, build_trainables(SupervisedOptions(), ctx)


def dermbench_loop(cfg, task, reg, device, train) -> float:
    """Images per second of one training epoch of the supervised stage (after a warm-up epoch)."""
    ctx, parts = _stage(cfg, task, reg, device, "erm", train, train)
    train_one_epoch(SupervisedOptions(), ctx, parts, 1, "warm-up")
    t0 = time.perf_counter()
    train_one_epoch(SupervisedOptions(), ctx, parts, 2, "timed")
    _sync(device)
    return len(train) / (time.perf_counter() - t0)


def _model(cfg, task, reg, device) -> nn.Module:
    """The run's model on ``device``, channels-last on CUDA as a dermbench run puts it."""
    model = build_run_model(cfg, task, reg).to(device)
    return model.to(memory_format=torch.channels_last) if device.type == "cuda" else model


def _step(model: nn.Module, optimizer, x: torch.Tensor, y: torch.Tensor, layout: bool = True) -> None:
    """One optimiser step as dermbench takes it: bf16 autocast on CUDA, the batch in the layout
    dermbench feeds (``to_model_layout``) unless ``layout`` is False (the ceiling's own layout)."""
    with autocast(x.device):
        logits = model(to_model_layout(x) if layout else x)
    loss = nn.functional.cross_entropy(logits.float(), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def imagefolder_loop(cfg, task, reg, device, train, workers: int) -> float:
    """Images per second of a torchvision ImageFolder/PIL DataLoader loop over the same images."""
    from PIL import Image
    from torchvision import datasets, transforms

    root = Path(tempfile.mkdtemp())
    paths = train.frame["path"].tolist() if "path" in train.frame.columns else [None] * len(train)
    for i, (img, y, src) in enumerate(zip(train.images.numpy(), train.y, paths, strict=True)):
        folder = root / task.classes[y]
        folder.mkdir(exist_ok=True)
        if isinstance(src, str) and os.path.isfile(
            src
        ):  # the original file, decoded at full size every epoch
            (folder / f"{i}{Path(src).suffix}").symlink_to(os.path.abspath(src))
        else:  # generated images: written once as files
            Image.fromarray(img).save(folder / f"{i}.png")
    tf = transforms.Compose([
        transforms.Resize((cfg.image_size, cfg.image_size)), transforms.RandomHorizontalFlip(),
        transforms.RandomVerticalFlip(), transforms.ToTensor(),
        transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    ])  # fmt: skip
    loader = torch.utils.data.DataLoader(datasets.ImageFolder(str(root), tf), batch_size=cfg.batch_size, shuffle=True,
                                         num_workers=workers, pin_memory=device.type == "cuda", drop_last=True)  # fmt: skip
    model = _model(cfg, task, reg, device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(2):  # the first epoch warms up workers and caches
        t0, seen = time.perf_counter(), 0
        for x, y in loader:
            _step(model, optimizer, x.to(device, non_blocking=True), y.to(device, non_blocking=True))
            seen += len(y)
        _sync(device)
    return seen / (time.perf_counter() - t0)


def in_memory_loop(cfg, task, reg, device, n: int, dtype: str = "fp32") -> float:
    """Images per second of the model and optimiser step alone, on tensors already on the device,
    in ``dtype`` and the faster of the two memory layouts (contiguous NCHW, channels-last) at this
    size: the ceiling no data path can beat, whichever layout the data path feeds."""
    rates = []
    for fmt in (torch.contiguous_format, torch.channels_last):
        with use_plan(Plan(dtype, fmt is torch.channels_last)):
            rates.append(_in_memory_rate(cfg, task, reg, device, n, fmt))
    return max(rates)


def _in_memory_rate(cfg, task, reg, device, n: int, memory_format: torch.memory_format) -> float:
    model = _model(cfg, task, reg, device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(cfg.batch_size, 3, cfg.image_size, cfg.image_size, device=device)
    x = x.contiguous(memory_format=memory_format)
    y = torch.randint(0, task.num_classes, (cfg.batch_size,), device=device)
    steps = max(n // cfg.batch_size, 2)
    for _ in range(steps):  # a warm-up pass as long as the timed one, as the other loops have
        _step(model, optimizer, x, y, layout=False)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        _step(model, optimizer, x, y, layout=False)
    _sync(device)
    return steps * cfg.batch_size / (time.perf_counter() - t0)


def medmnist_epoch(args: argparse.Namespace) -> dict | None:
    """Seconds of the first epoch of the medmnist protocol (its ResNet-18 at 28 px, batch 128, Adam, no
    augmentation: the ``paper`` profile of ``medmnist_resnet18``): training, then validation as
    every epoch of a run validates. None when the dermbench-medmnist plugin is not installed."""
    try:
        plugin = importlib.import_module("dermbench_medmnist.plugin")
    except ImportError:
        return None
    reg = load_plugins(extra=[("medmnist", plugin)], autoload=False).registries
    task = reg.tasks.get("ham7")
    settings = {"profile": "smoke" if args.smoke else "paper", "device": args.device, "cache_dir": args.cache_dir,
                "data": parse_assignments(args.medmnist, "--medmnist"), "synthetic_n": 240}  # fmt: skip
    cfg = resolve_config(task, reg.methods.get("medmnist_resnet18"), {}, settings)
    data = prepare_data(cfg, task, reg, progress=False)
    train, val = data.splits["train"], data.splits["val"]
    device = pick_device(cfg.device)
    ctx, parts = _stage(cfg, task, reg, device, "medmnist_resnet18", train, val)
    t0 = time.perf_counter()
    train_one_epoch(SupervisedOptions(), ctx, parts, 1, "medmnist epoch")
    _sync(device)
    t1 = time.perf_counter()
    validate(ctx.model, val, parts.loss_fn, cfg.batch_size * 2, device)
    return {"train": len(train), "val": len(val), "train_s": t1 - t0, "val_s": time.perf_counter() - t1,
            "size": cfg.image_size, "batch": cfg.batch_size, "dataset": ",".join(args.medmnist or ["synthetic"])}  # fmt: skip


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def plan_label(plan: Plan) -> str:
    """``fp32/NCHW``, ``bf16/NHWC``, ``fp32/rule`` (the size rule of ``to_model_layout``)."""
    return f"{plan.dtype}/{ {True: 'NHWC', False: 'NCHW', None: 'rule'}[plan.channels_last] }"


def run_plan(args: argparse.Namespace, cfg, task, reg, device) -> Plan:
    """The plan a run of this model and size trains in under ``--precision``."""
    return choose_plan(args.precision, device, lambda: training_step(
        build_run_model(cfg, task, reg), cfg.batch_size, cfg.image_size, task.num_classes, device))  # fmt: skip


def measure(args: argparse.Namespace, model: str, size: int) -> dict:
    plugins = load_plugins(autoload=False)
    reg = plugins.registries
    task = reg.tasks.get(args.task)
    settings = {"profile": "smoke", "model": model, "image_size": size, "batch_size": args.batch,
                "augment": "flips", "device": args.device, "cache_dir": args.cache_dir,
                "data": parse_assignments(args.data, "--data"), "synthetic_n": max(args.images * 2, 240)}  # fmt: skip
    trains, cfg = {}, None
    for memory in ("resident", "mapped"):  # the same images, held in the process or memory-mapped
        cfg = resolve_config(task, reg.methods.get("erm"), {}, {**settings, "image_memory": memory})
        data = prepare_data(cfg, task, reg, progress=False)
        trains[memory] = subset(
            data.splits["train"], np.arange(min(args.images, len(data.splits["train"]))), "train"
        )
    device, train = pick_device(cfg.device), trains["mapped"]
    plan = run_plan(args, cfg, task, reg, device)

    def planned(loop):
        def run():
            with use_plan(plan):
                return loop()

        return run

    loops = {
        "dermbench": planned(lambda: dermbench_loop(cfg, task, reg, device, trains["mapped"])),
        "resident": planned(lambda: dermbench_loop(cfg, task, reg, device, trains["resident"])),
        "imagefolder": planned(lambda: imagefolder_loop(cfg, task, reg, device, train, args.workers)),
        "fp32 ceil": lambda: in_memory_loop(cfg, task, reg, device, len(train), "fp32"),
    }
    if bf16_native(device) or args.precision == "bf16":
        loops["bf16 ceil"] = lambda: in_memory_loop(cfg, task, reg, device, len(train), "bf16")
    runs: dict[str, list[float]] = {name: [] for name in loops}
    names = list(loops)
    for r in range(args.repeats):  # interleaved, each repeat in a rotated order: drift hits every loop
        for name in names[r % len(names) :] + names[: r % len(names)]:
            runs[name].append(loops[name]())
    out = {name: statistics.median(v) for name, v in runs.items()}
    return {**out, "in-memory": max(out["fp32 ceil"], out.get("bf16 ceil", 0.0)), "images": len(train),
            "plan": plan_label(plan)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--data", action="append", metavar="NAME=PATH", help="a dataset (default: the synthetic sample)"
    )
    p.add_argument("--task", default="ham7")
    p.add_argument("--models", default="resnet18", help="comma-separated models")
    p.add_argument("--precision", default="auto", help="auto (default) | fp32 | bf16, as a run's --precision")
    p.add_argument("--sizes", default="64,224", help="comma-separated image sizes")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--images", type=int, default=1024, help="training images timed per loop")
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="DataLoader workers")
    p.add_argument(
        "--repeats", type=int, default=3, help="runs of each loop, interleaved; the median is printed"
    )
    p.add_argument("--device", default="auto")
    p.add_argument("--cache-dir", default=None)
    p.add_argument(
        "--medmnist", action="append", metavar="NAME=PATH",
        help="time the first epoch of the medmnist protocol on this dataset, e.g. dermamnist=PATH (smoke: synthetic)",
    )  # fmt: skip
    p.add_argument("--smoke", action="store_true", help="tiny: a model, 32 px, 64 images (seconds; for CI)")
    args = p.parse_args(argv)
    if args.smoke:
        args.models, args.sizes, args.images, args.batch, args.workers, args.repeats = (
            "tinycnn",
            "32",
            64,
            16,
            1,
            1,
        )
    torch.manual_seed(0)
    device = pick_device(args.device)
    print(f"batch {args.batch}, flips, device {device}, torch {torch.__version__}, --precision {args.precision}, "
          f"native bf16: {'yes' if bf16_native(device) else 'no'}")  # fmt: skip
    print(
        f"{'model':>18} {'size':>5} {'images':>7} {'plan':>10} {'dermbench':>10} {'resident':>9} {'imagefolder':>12} "
        f"{'fp32 ceil':>10} {'bf16 ceil':>10} {'vs folder':>10} {'of ceiling':>11} {'vs resident':>12}"
    )
    for model in args.models.split(","):
        for size in (int(s) for s in args.sizes.split(",")):
            r = measure(args, model, size)
            bf16 = f"{r['bf16 ceil']:>10.1f}" if "bf16 ceil" in r else f"{'-':>10}"
            print(f"{model:>18} {size:>5} {r['images']:>7} {r['plan']:>10} {r['dermbench']:>10.1f} {r['resident']:>9.1f} "
                  f"{r['imagefolder']:>12.1f} {r['fp32 ceil']:>10.1f} {bf16} {r['dermbench'] / r['imagefolder']:>9.2f}x "
                  f"{r['dermbench'] / r['in-memory']:>10.0%} {r['dermbench'] / r['resident']:>11.0%}")  # fmt: skip
    print("images per second of training (validation apart): dermbench reads memory-mapped images (the default), "
          "resident the same images held in the process (--image-memory resident)")  # fmt: skip
    if args.medmnist or args.smoke:
        m = medmnist_epoch(args)
        if m is None:
            print("medmnist protocol: the dermbench-medmnist plugin is not installed")
        else:
            print(f"medmnist protocol epoch ({m['dataset']}, ResNet-18 @{m['size']} px, batch {m['batch']}): "
                  f"training {m['train_s']:.1f} s on {m['train']} images ({m['train'] / m['train_s']:.0f}/s), "
                  f"validation {m['val_s']:.1f} s on {m['val']}")  # fmt: skip
    print(f"peak resident memory {peak_rss_mib():.0f} MiB (peak memory of a whole run: benchmarks/memory.py)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
