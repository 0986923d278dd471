"""Train a lesion segmenter on synthetic composites and score it on held-out composites.

The composites (``dermbench.segmentation.composites``) paste drawn lesions on skin cut from the
corners of real HAM10000 photographs. Training and test composites come from disjoint
photographs and seeds. Prints IoU / Dice / boundary F (mean and 95% bootstrap interval) and
writes the record, marked SYNTHETIC, as JSON.

    python scripts/segment_composites.py --model unet --train 800 --test 200 --size 64 --epochs 10 \
        --out leaderboards/runs/segmentation-composites-cpu/unet-s0.json
    python scripts/segment_composites.py --model maskrcnn --init PATH/maskrcnn_coco.pth --epochs 5 ...

``--save-model`` keeps the weights, e.g. for ``scripts/ita_vs_fitzpatrick.py --lesion-model``.
HAM10000 is read from ``--ham`` (default ``<repo>/../shared/data/ham10000``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dermbench.run.record import environment
from dermbench.segmentation.composites import make_composites
from dermbench.segmentation.maskrcnn import build_maskrcnn
from dermbench.segmentation.metrics import segmentation_report
from dermbench.segmentation.train import (
    TrainSettings,
    predict_maskrcnn,
    predict_unet,
    settings_record,
    train_maskrcnn,
    train_unet,
)


def parse(argv: list[str]) -> argparse.Namespace:
    repo = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=("unet", "maskrcnn"), default="unet")
    ap.add_argument("--ham", type=Path, default=repo.parent / "shared" / "data" / "ham10000")
    ap.add_argument("--train", type=int, default=800)
    ap.add_argument("--test", type=int, default=200)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument(
        "--lr", type=float, default=None, help="default: 1e-3 (U-Net, Adam), 5e-3 (Mask R-CNN, SGD)"
    )
    ap.add_argument("--init", default="random", help="Mask R-CNN weights file, or random")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--backgrounds", type=int, default=400, help="photographs the skin is cut from")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument(
        "--save-model", type=Path, default=None, help="write the trained weights (a state dict) here"
    )
    return ap.parse_args(argv)


def backgrounds(ham: Path, n: int) -> tuple[list[np.ndarray], list[str]]:
    files = sorted((ham / "images").glob("*.jpg"))[: 2 * n]
    if len(files) < 2 * n:
        raise SystemExit(f"{ham / 'images'}: {len(files)} HAM10000 images, need {2 * n} (--backgrounds {n})")
    return [np.asarray(Image.open(f).convert("RGB")) for f in files], [f.stem for f in files]


def main(argv: list[str]) -> int:
    args = parse(argv)
    photos, ids = backgrounds(args.ham, args.backgrounds)
    half = args.backgrounds  # training composites from the first half of the photographs, test from the rest
    x_train, y_train, meta_train = make_composites(
        photos[:half], args.train, args.size, args.seed, ids[:half]
    )
    x_test, y_test, meta_test = make_composites(
        photos[half:], args.test, args.size, args.seed + 10_000, ids[half:]
    )
    lr = args.lr or (1e-3 if args.model == "unet" else 5e-3)
    settings = TrainSettings(
        args.epochs, args.batch_size, lr, args.seed, "cuda" if torch.cuda.is_available() else "cpu"
    )
    t0 = time.time()
    if args.model == "unet":
        model, history = train_unet(x_train, y_train, settings)
        pred = predict_unet(model, x_test, device=settings.device)
        init = {"init": "random"}
    else:
        model, init = build_maskrcnn(args.size, args.init)
        history = train_maskrcnn(model, x_train, y_train, settings)
        pred = predict_maskrcnn(model, x_test, device=settings.device)
    report = segmentation_report(list(pred), list(y_test), n_boot=1000, seed=args.seed)
    record = {
        "what": "SYNTHETIC composites: not a result on real lesion masks",
        "model": args.model, "init": init, "settings": settings_record(settings), "size": args.size,
        "train": {k: v for k, v in meta_train.items() if k != "backgrounds"},
        "test": {k: v for k, v in meta_test.items() if k != "backgrounds"},
        "history": history, "seconds": round(time.time() - t0, 1), "environment": environment(settings.device, {}),
        "metrics": {k: ({kk: vv for kk, vv in v.items() if kk != "per_image"} if isinstance(v, dict) else v)
                    for k, v in report.items()},
    }  # fmt: skip
    for name in ("iou", "dice", "boundary_f"):
        m = report[name]
        ci = m["ci95"] or {}
        print(
            f"{name:10s} {m['mean']:.3f}  [{ci.get('low', float('nan')):.3f}, {ci.get('high', float('nan')):.3f}]"
        )
    print(
        f"{args.model}: {args.train} train / {args.test} test SYNTHETIC composites at {args.size} px, {record['seconds']} s"
    )
    if args.save_model:
        args.save_model.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"model": model.state_dict(), "kind": args.model, "size": args.size}, args.save_model)
        print(f"wrote {args.save_model}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=1) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
