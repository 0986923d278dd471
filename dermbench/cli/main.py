"""The ``dermbench`` command.

User errors (unknown names, bad data, bad options, broken plugins) print one line and exit 2,
with no traceback; whatever was already written stays.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Sequence
from typing import Any

from dermbench import __version__
from dermbench.cli.cache import add_cache_command
from dermbench.cli.segment import add_segment_command
from dermbench.cli.sweep_args import add_launcher_flags, sweep_request
from dermbench.errors import ConfigError
from dermbench.plugins.contract import CONTRACTS
from dermbench.plugins.options import ascii_float, ascii_int

RUN_FLAGS: list[tuple[str, dict[str, Any]]] = [
    ("--profile", {"help": "smoke | quick (default) | uniform | paper"}),
    ("--seed", {"type": ascii_int, "help": "training seed (default 0)"}),
    ("--split-seed", {"type": ascii_int, "help": "split seed, fixed across training seeds (default 0)"}),
    ("--model", {"help": "a registered model or any timm model name, e.g. resnet18"}),
    ("--init", {"help": "imagenet | random | PATH to a weights file"}),
    (
        "--head-init",
        {
            "help": "a new classifier over loaded weights: fan_in (default, PyTorch's) | model (the architecture's own)"
        },
    ),
    ("--image-size", {"type": ascii_int}),
    ("--epochs", {"type": ascii_int}),
    ("--batch-size", {"type": ascii_int}),
    ("--lr", {"type": ascii_float, "help": "learning rate (default: the method's)"}),
    ("--weight-decay", {"type": ascii_float}),
    (
        "--early-stopping",
        {"type": ascii_int, "metavar": "PATIENCE", "help": "stop after PATIENCE epochs without improvement"},
    ),
    (
        "--select",
        {"help": "checkpoint to score: last | val_macro_f1 | val_loss | val_accuracy | val_macro_auc"},
    ),
    ("--augment", {"help": "none | flips | standard | affine_brightness"}),
    ("--resize", {"help": "how images are squashed to --image-size: bilinear (default) | nearest"}),
    ("--split-fractions", {"help": "train,val,test shares of the seeded split (default 0.7,0.15,0.15)"}),
    (
        "--max-per-class",
        {"type": ascii_int, "help": "at most this many images of each class enter the split (0: all)"},
    ),
    (
        "--near-duplicates",
        {
            "help": "off (default) | report | group: near-duplicate photographs kept in one split (docs/datasets.md)"
        },
    ),
    ("--gate", {"help": "an image-quality gate in front of the predictions: autoencoder (docs/gate.md)"}),
    ("--sampler", {"help": "training sampler, e.g. balanced (default: the method's, else shuffling)"}),
    ("--synthetic-n", {"type": ascii_int, "help": "images in the built-in synthetic sample"}),
    (
        "--ensemble",
        {"help": "none | cvK: K-fold cross-validation ensemble over the training split (e.g. cv3)"},
    ),
    ("--tta", {"help": "test-time augmentation: none | flips | flips_rot90"}),
    ("--groups", {"help": "comma-separated subgroup columns to audit, e.g. ita,sex,skin_type"}),
    (
        "--split-file",
        {"help": "use the split in this file (dermbench splits export) instead of --split-seed"},
    ),
    ("--device", {"help": "auto (default) | cpu | cuda | cuda:N"}),
    (
        "--precision",
        {
            "help": "auto (default: the fastest of fp32 and bf16 autocast, timed on the run's model) | fp32 | bf16"
        },
    ),
    ("--out", {"help": "runs folder (default runs/)"}),
    ("--cache-dir", {"help": "decoded-image cache (default $DERMBENCH_CACHE or ~/.cache/dermbench)"}),
    ("--image-memory", {"help": "mapped (default: images read through memory maps of the cache) | resident"}),
]


def _add_run_flags(p: argparse.ArgumentParser) -> None:
    for flag, kw in RUN_FLAGS:
        p.add_argument(flag, default=None, **kw)
    p.add_argument(
        "--data", action="append", metavar="NAME=PATH", help="dataset adapter and path (repeatable)"
    )
    p.add_argument("--test-data", action="append", metavar="NAME=PATH", help="external test set (repeatable)")
    p.add_argument(
        "--pretrain-data",
        action="append",
        metavar="NAME=PATH",
        help="unlabelled images for a pretraining stage, besides the training split (repeatable)",
    )
    p.add_argument(
        "--chain",
        action="append",
        metavar="NAME=PATH",
        help="a labelled source dataset a chain method trains on first, in order (repeatable; "
        "ALIAS:ADAPTER=PATH to use one adapter twice); see docs/chains.md",
    )
    p.add_argument(
        "--ood-data",
        action="append",
        metavar="NAME=PATH|CORRUPTION",
        help="an out-of-distribution set for the gate: a dataset, or a corruption of the test images "
        "(noise, blank, blur, jpeg, invert, black_corners); repeatable",
    )
    p.add_argument(
        "--opt", action="append", metavar="SLOT.NAME=VALUE", help="component option, e.g. loss.gamma=2"
    )
    p.add_argument("--config", metavar="FILE", help="TOML config file (CLI flags win over it)")
    p.add_argument(
        "--skip-bad-images", action="store_true", default=None, help="skip unreadable images, listing them"
    )
    p.add_argument(
        "--allow-empty-classes",
        action="store_true",
        default=None,
        help="allow a class with no images in a split",
    )
    p.add_argument(
        "--allow-overlap",
        action="store_true",
        default=None,
        help="score an external or OOD set that holds images of the run's splits (the record flags it)",
    )
    p.add_argument(
        "--resume", action="store_true", help="continue an unfinished run from its last checkpoint"
    )
    p.add_argument("--force", action="store_true", help="run again even if a complete record exists")
    p.add_argument("--quiet", action="store_true", help="no progress output")


def _cli_settings(args: argparse.Namespace) -> dict[str, Any]:
    from dermbench.run.config import parse_assignments

    out = {flag[2:].replace("-", "_"): getattr(args, flag[2:].replace("-", "_")) for flag, _ in RUN_FLAGS}
    out["skip_bad_images"] = args.skip_bad_images
    out["allow_empty_classes"] = args.allow_empty_classes
    out["allow_overlap"] = args.allow_overlap
    if args.data:
        out["data"] = parse_assignments(args.data, "--data")
    if args.test_data:
        out["test_data"] = parse_assignments(args.test_data, "--test-data")
    if getattr(args, "pretrain_data", None):
        out["pretrain_data"] = parse_assignments(args.pretrain_data, "--pretrain-data")
    if getattr(args, "chain", None):
        out["chain"] = tuple(args.chain)
    if getattr(args, "ood_data", None):
        out["ood_data"] = {i.partition("=")[0].strip(): i.partition("=")[2].strip() for i in args.ood_data}
    if args.opt:
        out["options"] = parse_assignments(args.opt, "--opt")
    return out


def _resolve(task_name: str | None, method_name: str | None, args: argparse.Namespace) -> Any:
    from dermbench.plugins import get_plugins
    from dermbench.run.config import read_config_file, resolve_run

    file_settings = read_config_file(args.config) if args.config else {}
    return resolve_run(get_plugins(), task_name, method_name, file_settings, _cli_settings(args))


def _warn_plugin_failures() -> None:
    from dermbench.plugins import get_plugins

    for p in get_plugins().failures:
        print(f"dermbench: warning: plugin {p.name!r} not loaded: {p.error}", file=sys.stderr)


def cmd_run(args: argparse.Namespace) -> int:
    from dermbench.cli.textreport import format_record
    from dermbench.plugins import get_plugins
    from dermbench.run.pipeline import execute
    from dermbench.stages import distributed

    _warn_plugin_failures()
    dist = distributed.init_from_env()  # under torchrun: join the process group (docs/cluster.md)
    cfg = distributed.cfg_for_rank(_resolve(args.task, args.method, args), args.resume)
    quiet = args.quiet or not dist.main
    if not quiet:
        where = ", ".join(f"{k}={v}" for k, v in cfg.data.items()) or "built-in SYNTHETIC sample"
        print(
            f"dermbench {__version__}: task {cfg.task}, method {cfg.method}, profile {cfg.profile}, data: {where}"
            + (f", {dist.world} processes" if dist.active else "")
        )
    try:
        record, run_dir = execute(
            cfg, get_plugins(), resume=args.resume, force=args.force, progress=not quiet
        )
    finally:
        if not dist.main:  # another rank's scratch results: rank 0 wrote the run
            shutil.rmtree(cfg.out, ignore_errors=True)
    if dist.main:
        print(format_record(record, str(run_dir)))
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from dermbench.cli.textreport import table
    from dermbench.launch.sweep import run_sweep
    from dermbench.plugins import get_plugins
    from dermbench.stages.distributed import launched_by_torchrun

    if launched_by_torchrun():
        raise ConfigError(
            "dermbench sweep under torchrun: use --launcher to spread a sweep; torchrun is for one run"
        )
    _warn_plugin_failures()
    result = run_sweep(sweep_request(args), get_plugins())
    if result.rows:
        print("\n" + table(result.rows, result.header))
    if result.failures:
        print(
            f"dermbench: {len(result.failures)} of {result.planned} sweep runs failed (see above)",
            file=sys.stderr,
        )
        return 1
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from dermbench.cli.segment import segmentation_text
    from dermbench.cli.textreport import format_record
    from dermbench.run.record import read_record

    text = None if args.json else segmentation_text(args.run)
    if text is not None:
        print(text)
        return 0
    record = read_record(args.run)
    print(json.dumps(record, indent=1) if args.json else format_record(record, args.run))
    return 0


def cmd_splits_export(args: argparse.Namespace) -> int:
    """The run's split (task, data, split seed or split file) as a CSV anyone can train on."""
    from pathlib import Path

    from dermbench.data.prepare import split_frame
    from dermbench.data.split_file import export_split
    from dermbench.plugins import get_plugins
    from dermbench.tasks import task_of

    cfg = _resolve(args.task, None, args)
    task = task_of(cfg, get_plugins().registries.tasks)
    frame, idx = split_frame(cfg, task, get_plugins().registries)
    data = dict(cfg.data) or {get_plugins().registries.default_of("datasets"): None}
    about = {"task": task.name, "data": data, "split_seed": cfg.split_seed,
             "split_file": cfg.split_file, "folds": args.folds}  # fmt: skip
    csv, side = export_split(frame, idx, list(task.classes), Path(args.out_file), about, args.folds)
    sizes = ", ".join(f"{k} {len(v)}" for k, v in idx.items())
    print(f"split written: {csv} ({sizes}); fingerprints in {side}")
    return 0


def cmd_plugin_new(args: argparse.Namespace) -> int:
    from pathlib import Path

    from dermbench.plugins import get_plugins
    from dermbench.plugins.scaffold import new_plugin

    reg = get_plugins().registries
    taken = {c.name for kind in ("methods", "losses") for c in reg.of(kind)}
    root = new_plugin(args.name, Path(args.out), taken)
    print(f"plugin written: {root}\n  cd {root} && pip install -e . && pytest tests")
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    from dermbench.plugins import get_plugins

    plugins = get_plugins()
    reg = plugins.registries
    for info in plugins.info:
        provided = [
            f"{k}: {', '.join(n for n in reg.of(k).names() if reg.of(k).get(n).plugin == info.name)}"
            for k in CONTRACTS
        ]
        provided = [p for p in provided if not p.endswith(": ")]
        status = f"FAILED: {info.error}" if info.error else "; ".join(provided) or "(registers nothing)"
        print(f"{info.name} {info.version or ''} [{info.source}] {status}")
    return 1 if plugins.failures and args.strict else 0


def cmd_list(args: argparse.Namespace) -> int:
    from dermbench.cli.textreport import describe_method
    from dermbench.plugins import get_plugins

    reg = get_plugins().registries.of(args.kind)
    for name in reg.names(args.pattern or "*"):
        item = reg.get(name)
        print(f"{name:24s} {item.summary}  [{item.plugin}]")
        if args.verbose and hasattr(item, "describe_options"):
            for opt in item.describe_options():
                print(f"    {opt['name']}: {opt['type']} = {opt['default']!r}  {opt['help']}")
        if args.verbose and args.kind == "methods":
            print("\n".join(describe_method(item)))
    if args.kind == "models":
        print(
            "(any timm model name works too: `python -c \"import timm; print(timm.list_models('resnet*'))\"`)"
        )
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from dermbench.explain.run import explain_run

    record = explain_run(
        args.run, n=args.n, split=args.split, progress=not args.quiet, explainer=args.explainer
    )
    fns = (record.get("error_analysis") or {}).get("false_negatives")
    if fns is not None:
        print(f"{len(fns)} false negatives at threshold {record['error_analysis']['threshold']}:")
        for row in fns[: args.n]:
            extra = ", ".join(
                f"{k} {v}" for k, v in row.items() if k not in ("image_id", "label", "probability", "cam")
            )
            print(
                f"  {row['image_id']}  {row['label']}  p={row['probability']:.3f}  {extra}  {row['cam'] or ''}"
            )
    return 0


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line, like every other dermbench error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_author_commands(sub: Any) -> None:
    """``splits export`` and ``plugin new``: what third parties use to train and to contribute."""
    p = sub.add_parser("splits", help="the official split of a task and data, as a file")
    ssub = p.add_subparsers(dest="splits_command", required=True)
    e = ssub.add_parser("export", help="write image id, lesion, label and split (and CV fold) per image")
    _add_run_flags(e)
    e.add_argument("--task", help="task name or .toml file")
    e.add_argument(
        "--folds",
        type=ascii_int,
        default=0,
        help="also write the K-fold CV fold of each training image (cvK)",
    )
    e.add_argument("--to", dest="out_file", required=True, metavar="FILE.csv", help="the split file to write")
    e.set_defaults(func=cmd_splits_export)

    p = sub.add_parser("plugin", help="write a new plugin package: dermbench plugin new NAME")
    psub = p.add_subparsers(dest="plugin_command", required=True)
    n = psub.add_parser("new", help="a ready plugin package (entry point, one method, a test)")
    n.add_argument("name", help="lowercase name, e.g. polyloss")
    n.add_argument("--out", default=".", help="folder to write dermbench-NAME/ into (default .)")
    n.set_defaults(func=cmd_plugin_new)


def _add_run_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="train and score one method on one task")
    p.add_argument("--task", help="task name or a task .toml file (default ham7)")
    p.add_argument("--method", help="method name (default erm)")
    _add_run_flags(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("sweep", help="run tasks x methods x option values x seeds, then summarise")
    p.add_argument("--tasks", help="comma-separated task names (default ham7, or the preset's)")
    p.add_argument("--methods", help="comma-separated method names (default erm, or the preset's)")
    p.add_argument("--preset", help="a named sweep (`dermbench list sweeps`), e.g. ablation004")
    p.add_argument("--seeds", default="0", help="comma-separated training seeds")
    p.add_argument("--grid", action="append", metavar="KEY=V1,V2", help="values to sweep (repeatable)")
    p.add_argument("--summary-csv", help="also write the summary table as CSV")
    add_launcher_flags(p)
    _add_run_flags(p)
    p.set_defaults(func=cmd_sweep)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="dermbench", description="Benchmark dermatology image classifiers.")
    parser.add_argument("--version", action="version", version=f"dermbench {__version__}")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show the traceback of an error (anywhere on the line; or DERMBENCH_DEBUG=1)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_run_commands(sub)
    add_segment_command(sub)
    add_cache_command(sub)
    p = sub.add_parser("show", help="print a run record as tables")
    p.add_argument("run", help="run folder or record.json")
    p.add_argument("--json", action="store_true", help="print the raw JSON")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("explain", help="Grad-CAM++ overlays and false-negative analysis for a finished run")
    p.add_argument("run", help="run folder")
    p.add_argument("--n", type=ascii_int, default=8, help="overlays per category (tp, fp, fn, tn)")
    p.add_argument("--split", default="test", help="split to explain (default test)")
    p.add_argument("--explainer", help="a registered explainer (default: the plugins' default, gradcampp)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("plugins", help="list installed plugins and what they register")
    p.add_argument("--strict", action="store_true", help="exit 1 if any plugin failed to load")
    p.set_defaults(func=cmd_plugins)

    _add_author_commands(sub)

    p = sub.add_parser("list", help="list registered components of one kind")
    p.add_argument("kind", help="tasks, methods, datasets, models, losses, optimizers, schedulers, ...")
    p.add_argument("pattern", nargs="?", help="glob, e.g. 'l*'")
    p.add_argument("-v", "--verbose", action="store_true", help="show options")
    p.set_defaults(func=cmd_list)

    from dermbench.leaderboard.cli import add_commands

    add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; every error a user's input or machine can cause is one line (``--debug``
    anywhere, or ``DERMBENCH_DEBUG=1``, shows the traceback): :mod:`dermbench.cli.boundary`."""
    from dermbench.cli.boundary import guarded, split_debug

    argv, debug = split_debug(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and getattr(args, "func", None) is cmd_list and args.pattern is None and len(extra) == 1:
        args.pattern = extra[0]  # `list losses -v cb_*`: the pattern after the flag
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return guarded(lambda: int(args.func(args) or 0), debug)


def entry() -> None:
    try:
        sys.exit(main())
    except BrokenPipeError:  # `dermbench list ... | head`: the reader left, nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
