"""SMOTE on images (Chawla et al., JAIR 16, 2002), through imbalanced-learn, as Bilyk et al. apply it.

Each image is flattened to a vector of its pixels; for a minority class, a synthetic image is a
random point on the segment between an image and one of its ``k`` nearest neighbours of the same
class, rounded back to uint8 pixels. Caveats, said in ``docs/metrics.md`` and the method notes:
neighbours in raw pixel space are not neighbours in appearance (a shifted lesion is far from
itself), and a point between two photographs is a cross-fade of both, not a new lesion. The
synthetic images train only: they are never in validation or test, and the record counts them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dermbench.data.split_data import SplitData
from dermbench.errors import ConfigError


def smote_split(split: SplitData, classes: list[str], k_neighbors: int, seed: int) -> tuple[SplitData, dict]:
    """``split`` with synthetic minority images appended until every class has the majority's count."""
    import torch
    from imblearn.over_sampling import SMOTE

    counts = np.bincount(split.y, minlength=len(classes))
    present = np.flatnonzero(counts)
    few = [int(c) for c in present if counts[c] < 2 and counts[c] < counts.max()]
    if few:
        raise ConfigError(
            f"sampler smote: class {classes[few[0]]!r} has {counts[few[0]]} training image; SMOTE needs at least 2 "
            f"(drop the class, merge it, or use --sampler balanced)"
        )
    if len(present) < 2 or counts[present].min() == counts.max():
        return split, {"synthetic_images": 0}
    k = max(1, min(k_neighbors, int(counts[present].min()) - 1))
    n, shape = len(split), tuple(split.images.shape[1:])
    flat = split.images.reshape(n, -1).numpy().astype(np.float32)
    x, y = SMOTE(k_neighbors=k, random_state=seed).fit_resample(flat, split.y)
    new = x[n:].round().clip(0, 255).astype(np.uint8).reshape(-1, *shape)
    extra = pd.DataFrame({"image_id": [f"smote:{i}" for i in range(len(new))], "group": [f"smote:{i}" for i in range(len(new))],
                          "dataset": "oversampled", "y": y[n:], "synthetic": True})  # fmt: skip
    frame = pd.concat([split.frame, extra], ignore_index=True)
    out = SplitData(
        split.name, torch.cat([split.images, torch.from_numpy(new)]), np.asarray(y, dtype=np.int64), frame
    )
    after = np.bincount(out.y, minlength=len(classes))
    info = {"synthetic_images": int(len(new)), "k_neighbors": k,
            "class_counts_after": dict(zip(classes, after.tolist(), strict=True))}  # fmt: skip
    return out, info
