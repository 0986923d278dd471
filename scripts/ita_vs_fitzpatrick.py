"""How well the image-based ITA tracks dermatologists' Fitzpatrick types on Fitzpatrick17k.

Fitzpatrick17k (Groh et al., "Evaluating Deep Neural Networks Trained on Clinical Images in
Dermatology with the Fitzpatrick 17k Dataset", CVPR-W 2021) labels each clinical photograph with a
Fitzpatrick skin type I-VI. A lighter skin has a larger ITA, so the Spearman rank correlation
between ITA and type should be clearly negative. Images with type -1 (unknown) are left out.

    python scripts/ita_vs_fitzpatrick.py [DATA_DIR]

DATA_DIR defaults to ``<repo>/../shared/data/fitzpatrick17k``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from scipy.stats import spearmanr

from dermbench.evaluation.ita import ita_for_images, ita_groups


def main(argv: list[str]) -> int:
    repo = Path(__file__).resolve().parents[1]
    root = Path(argv[0]) if argv else repo.parent / "shared" / "data" / "fitzpatrick17k"
    csv = root / "fitzpatrick17k_subset.csv"
    if not csv.is_file():
        print(f"no Fitzpatrick17k CSV at {csv}", file=sys.stderr)
        return 2
    df = pd.read_csv(csv)
    df = df[df["fitzpatrick_scale"].between(1, 6)].reset_index(drop=True)
    start = time.perf_counter()
    images = [np.asarray(Image.open(root / "images" / f"{h}.jpg").convert("RGB")) for h in df["md5hash"]]
    ita = ita_for_images(images)
    seconds = time.perf_counter() - start
    ok = ~np.isnan(ita)
    rho = spearmanr(ita[ok], df["fitzpatrick_scale"].to_numpy()[ok]).statistic
    print(f"images with a Fitzpatrick type: {len(df)}; with an ITA: {int(ok.sum())} ({seconds:.1f} s)")
    print(f"Spearman rho(ITA, Fitzpatrick type) = {rho:.3f}  (n = {int(ok.sum())})")
    df["ita"] = ita
    df["ita_group"], _ = ita_groups(ita, "binary28")
    table = df.groupby("fitzpatrick_scale").agg(
        n=("ita", "size"),
        mean_ita=("ita", "mean"),
        median_ita=("ita", "median"),
        share_light=("ita_group", lambda g: float((g == "light").mean())),
    )
    print(table.round(2).to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
