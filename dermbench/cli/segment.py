"""``dermbench segment``: train and score a lesion segmenter (docs/segmentation.md)."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from dermbench.plugins.options import ascii_float, ascii_int


def add_segment_command(sub: Any) -> None:
    p = sub.add_parser(
        "segment", help="train and score a lesion segmenter: unet | maskrcnn (docs/segmentation.md)"
    )
    p.add_argument(
        "--method", default="", help="a registered segmenter: unet (default) | maskrcnn | a plugin's"
    )
    p.add_argument(
        "--opt", action="append", default=[], metavar="NAME=VALUE", help="a segmenter option, e.g. base=32"
    )
    p.add_argument(
        "--masks",
        default="",
        help="isic2018_task1=PATH | ham10000=IMAGES_PATH,MASKS_PATH; without it, SYNTHETIC composites",
    )
    p.add_argument(
        "--composites", type=ascii_int, default=1000, help="synthetic composites made without --masks"
    )
    p.add_argument(
        "--backgrounds", default="", help="a HAM10000 folder whose photographs give the composites' skin"
    )
    p.add_argument("--image-size", type=ascii_int, default=64)
    p.add_argument(
        "--epochs",
        type=ascii_int,
        default=None,
        help="default: the segmenter's (U-Net 10; Mask R-CNN 5, paper 002)",
    )
    p.add_argument("--batch-size", type=ascii_int, default=16)
    p.add_argument(
        "--lr", type=ascii_float, default=None, help="default 1e-3 (U-Net, Adam) / 5e-3 (Mask R-CNN, SGD)"
    )
    p.add_argument("--init", default="random", help="Mask R-CNN weights file, or random")
    p.add_argument(
        "--methods", default="", help="comma-separated segmenters, each run with every seed (a grid)"
    )
    p.add_argument("--resume", action="store_true", help="continue a killed run from its last finished epoch")
    p.add_argument("--force", action="store_true", help="run again a run that is complete or was killed")
    p.add_argument("--seed", type=ascii_int, default=0)
    p.add_argument("--seeds", default="", help="comma-separated training seeds, one run each (e.g. 0,1,2)")
    p.add_argument("--split-seed", type=ascii_int, default=0)
    p.add_argument("--n-boot", type=ascii_int, default=1000)
    p.add_argument("--out", default="runs")
    p.add_argument("--save-model", default="", help="also write the trained weights here (a state dict)")
    p.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="values to sweep (repeatable): a setting (image_size, epochs, lr, ...) or a segmenter option",
    )
    p.add_argument("--summary-csv", default="", help="also write the summary table here")
    p.set_defaults(func=cmd_segment)


def cmd_segment(args: argparse.Namespace) -> int:
    from dermbench.errors import ConfigError
    from dermbench.plugins import load_plugins
    from dermbench.segmentation import sweep
    from dermbench.segmentation.run import SegmentationConfig, check_sources, format_segmentation

    names = SegmentationConfig.__dataclass_fields__
    cfg = SegmentationConfig(**{k: v for k, v in vars(args).items() if k in names and k != "options"})
    cfg = replace(cfg, options=tuple(_pairs(args.opt, "--opt")))
    if not cfg.masks and not cfg.backgrounds:
        raise ConfigError(
            "dermbench segment needs --masks, or --backgrounds HAM10000_PATH for synthetic composites"
        )
    check_sources(cfg)  # before any run folder is made
    registries = load_plugins().registries
    seeds = [int(x) for x in args.seeds.split(",") if x.strip()] if args.seeds else [cfg.seed]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else [cfg.method]
    methods = [m or registries.default_of("segmenters") for m in methods]
    for m in methods:
        registries.segmenters.get(m)  # an unknown name is an error listing the known ones
    grid = {k: [v.strip() for v in vs.split(",") if v.strip()] for k, vs in _pairs(args.grid, "--grid")}
    runs = sweep.plan(cfg, methods, seeds, grid)
    if len(runs) > 1 and cfg.save_model:
        raise ConfigError("--save-model keeps one model: give one --method, one --seed and no --grid")
    result = sweep.run_sweep(runs, registries, resume=args.resume, force=args.force)
    for record, run_dir in zip(result.records, result.run_dirs, strict=True):
        print(format_segmentation(record))
        print(f"record: {run_dir}/record.json")
    if len(runs) > 1 and result.rows:
        widths = [max(len(str(c)) for c in col) for col in zip(result.header, *result.rows, strict=True)]
        for row in [result.header, *result.rows]:
            print("  ".join(str(c).rjust(w) for c, w in zip(row, widths, strict=True)))
    if args.summary_csv and result.rows:
        sweep.write_summary(args.summary_csv, result.header, result.rows)
    if result.failures:
        raise ConfigError(
            f"{len(result.failures)} of {result.planned} segmentation runs failed: {result.failures[0][1]}"
        )
    return 0


def _pairs(items: list[str], flag: str) -> list[tuple[str, str]]:
    from dermbench.errors import ConfigError

    bad = [o for o in items if "=" not in o]
    if bad:
        raise ConfigError(f"{flag} {bad[0]!r}: expected NAME=VALUE")
    return [tuple(o.split("=", 1)) for o in items]  # type: ignore[misc]


def segmentation_text(path: str) -> str | None:
    """``dermbench show`` text of a segmentation record, None for any other file."""
    from dermbench.segmentation.run import SCHEMA, format_segmentation

    p = Path(path)
    p = p / "record.json" if p.is_dir() else p
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return format_segmentation(data) if isinstance(data, dict) and data.get("schema") == SCHEMA else None
