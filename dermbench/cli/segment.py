"""``dermbench segment``: train and score a lesion segmenter (docs/segmentation.md)."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import Any


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
    p.add_argument("--composites", type=int, default=1000, help="synthetic composites made without --masks")
    p.add_argument(
        "--backgrounds", default="", help="a HAM10000 folder whose photographs give the composites' skin"
    )
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="default: the segmenter's (U-Net 10; Mask R-CNN 5, paper 002)",
    )
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument(
        "--lr", type=float, default=None, help="default 1e-3 (U-Net, Adam) / 5e-3 (Mask R-CNN, SGD)"
    )
    p.add_argument("--init", default="random", help="Mask R-CNN weights file, or random")
    p.add_argument(
        "--methods", default="", help="comma-separated segmenters, each run with every seed (a grid)"
    )
    p.add_argument("--resume", action="store_true", help="continue a killed run from its last finished epoch")
    p.add_argument("--force", action="store_true", help="run again a run that is complete or was killed")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", default="", help="comma-separated training seeds, one run each (e.g. 0,1,2)")
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--out", default="runs")
    p.add_argument("--save-model", default="", help="also write the trained weights here (a state dict)")
    p.set_defaults(func=cmd_segment)


def cmd_segment(args: argparse.Namespace) -> int:
    from dermbench.errors import ConfigError
    from dermbench.segmentation.run import SegmentationConfig, format_segmentation, run_segmentation

    names = SegmentationConfig.__dataclass_fields__
    cfg = SegmentationConfig(**{k: v for k, v in vars(args).items() if k in names and k != "options"})
    bad = [o for o in args.opt if "=" not in o]
    if bad:
        raise ConfigError(f"--opt {bad[0]!r}: expected NAME=VALUE")
    cfg = replace(cfg, options=tuple(tuple(o.split("=", 1)) for o in args.opt))
    if not cfg.masks and not cfg.backgrounds:
        raise ConfigError(
            "dermbench segment needs --masks, or --backgrounds HAM10000_PATH for synthetic composites"
        )
    seeds = [int(x) for x in args.seeds.split(",") if x.strip()] if args.seeds else [cfg.seed]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else [cfg.method]
    if len(seeds) * len(methods) > 1 and cfg.save_model:
        raise ConfigError("--save-model keeps one model: give one --method and one --seed")
    for method in methods:
        for seed in seeds:
            run = replace(cfg, method=method, seed=seed)
            record, run_dir = run_segmentation(run, resume=args.resume, force=args.force)
            print(format_segmentation(record))
            print(f"record: {run_dir}/record.json")
    return 0


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
