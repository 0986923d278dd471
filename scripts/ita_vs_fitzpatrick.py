"""How well the image-based ITA tracks dermatologists' Fitzpatrick types on Fitzpatrick17k.

Fitzpatrick17k (Groh et al., "Evaluating Deep Neural Networks Trained on Clinical Images in
Dermatology with the Fitzpatrick 17k Dataset", CVPR-W 2021) labels each clinical photograph with a
Fitzpatrick skin type I-VI. A lighter skin has a larger ITA, so the Spearman rank correlation
between ITA and type should be clearly negative. Images with type -1 (unknown) are left out.

    python scripts/ita_vs_fitzpatrick.py [DATA_DIR] [--lesion-model UNET.pt]

DATA_DIR defaults to ``<repo>/../shared/data/fitzpatrick17k``. ``--lesion-model`` (a U-Net saved by
``dermbench segment --method unet --save-model``) measures the skin outside its predicted lesion
masks instead of the border ring, and prints both.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from scipy.stats import spearmanr

from dermbench.evaluation.ita import ita_for_images, ita_groups
from dermbench.models.weights_io import load_tensors


def lesion_masks(images: list[np.ndarray], weights: Path) -> list[np.ndarray]:
    """Each image's predicted lesion mask at its own size, from a U-Net run at the size it was trained at."""

    from dermbench.segmentation.train import predict_unet
    from dermbench.segmentation.unet import UNet

    saved = load_tensors(weights, "--weights")
    model = UNet()
    model.load_state_dict(saved["model"])
    size = int(saved["size"])
    small = np.stack(
        [np.asarray(Image.fromarray(im).resize((size, size), Image.Resampling.BILINEAR)) for im in images]
    )
    pred = predict_unet(model, small)
    return [
        np.asarray(Image.fromarray(m).resize(im.shape[1::-1], Image.Resampling.NEAREST))
        for m, im in zip(pred, images, strict=True)
    ]


def summarise(name: str, df: pd.DataFrame, ita: np.ndarray) -> None:
    ok = ~np.isnan(ita)
    types = df["fitzpatrick_scale"].to_numpy()
    rho = spearmanr(ita[ok], types[ok]).statistic
    groups, _ = ita_groups(ita, "binary28")
    dark = types >= 5
    outside = float((groups[dark] != "light").mean())
    print(f"[{name}] Spearman rho(ITA, Fitzpatrick type) = {rho:.3f}  (n = {int(ok.sum())})")
    print(f"[{name}] type V-VI images outside 'light' (ITA <= 28): {outside:.3f}  (n = {int(dark.sum())})")
    table = (
        df.assign(ita=ita, ita_group=groups)
        .groupby("fitzpatrick_scale")
        .agg(
            n=("ita", "size"),
            mean_ita=("ita", "mean"),
            median_ita=("ita", "median"),
            share_light=("ita_group", lambda g: float((g == "light").mean())),
        )
    )
    print(table.round(2).to_string())


def main(argv: list[str]) -> int:
    repo = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", nargs="?", type=Path, default=repo.parent / "shared" / "data" / "fitzpatrick17k")
    ap.add_argument("--lesion-model", type=Path, default=None)
    args = ap.parse_args(argv)
    csv = args.data / "fitzpatrick17k_subset.csv"
    if not csv.is_file():
        print(f"no Fitzpatrick17k CSV at {csv}", file=sys.stderr)
        return 2
    df = pd.read_csv(csv)
    df = df[df["fitzpatrick_scale"].between(1, 6)].reset_index(drop=True)
    start = time.perf_counter()
    images = [np.asarray(Image.open(args.data / "images" / f"{h}.jpg").convert("RGB")) for h in df["md5hash"]]
    ita = ita_for_images(images)
    print(f"images with a Fitzpatrick type: {len(df)} ({time.perf_counter() - start:.1f} s)")
    summarise("border ring", df, ita)
    if args.lesion_model is not None:
        summarise(
            "outside the predicted lesion",
            df,
            ita_for_images(images, lesion_masks=lesion_masks(images, args.lesion_model)),
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
