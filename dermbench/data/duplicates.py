"""Near-duplicate images: the same photograph under two ids, found and kept in one split.

HAM10000, DermaMNIST and Fitzpatrick17k hold the same photograph under different ids (Abhishek
et al., "Investigating the Quality of DermaMNIST and Fitzpatrick17k Dermatological Image
Datasets", Sci. Data 12, 2025). A lesion-grouped split keeps a lesion's images together but not
two copies of one photograph filed under two lesions, so a copy in training makes its twin in
test easy. The rule here, two stages:

1. **Candidates** by perceptual hash: imagehash's ``phash`` (64-bit DCT hash of the grey image;
   Zauner, "Implementation and Benchmarking of Perceptual Image Hash Functions", 2010) within
   ``max_distance`` bits (Hamming). On dermoscopy the hash alone is not enough: a dark lesion in
   the centre of pale skin is what most images look like at 32 px, and on HAM10000 hundreds of
   pairs of different lesions lie within 4 bits.
2. **Confirmation** on a 32x32 colour thumbnail: Pearson correlation of the grey thumbnails >=
   ``min_correlation`` and mean absolute RGB difference <= ``max_mad`` (of 255). A copy that was
   resized or re-encoded passes easily (correlation > 0.99, difference < 3); on HAM10000 no pair
   of different lesions passes, and the pairs that do are photographs of one lesion.

Confirmed pairs are joined transitively into clusters. Signatures come from the original files
(``read_image``, JPEG decoded at reduced size), independent of the run's image size, and are
cached by the dataset's identity.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

MODES = ("off", "report", "group")
THUMB = 32
_BLOCK = 1024  # rows of the pairwise Hamming matrix computed at once


@dataclass(frozen=True)
class DuplicateRule:
    max_distance: int = 10  # pHash bits (of 64) for a candidate pair
    min_correlation: float = 0.98  # grey-thumbnail Pearson correlation to confirm it
    max_mad: float = 8.0  # mean absolute RGB difference of the thumbnails (0-255) to confirm it


def signature(image: Any) -> tuple[int, np.ndarray]:
    """The pHash (as an int) and the 32x32 RGB thumbnail of one PIL image."""
    import imagehash
    from PIL import Image

    rgb = image.convert("RGB")
    thumb = np.asarray(rgb.resize((THUMB, THUMB), Image.Resampling.BILINEAR), dtype=np.uint8)
    return int(str(imagehash.phash(rgb)), 16), thumb


def signatures(records: Any, rows: np.ndarray, cache_dir: Path | None) -> tuple[np.ndarray, np.ndarray]:
    """Hashes ``(n,)`` uint64 and thumbnails ``(n, 32, 32, 3)`` of ``records``' rows, cached by the
    dataset's identity and the rows."""
    key = hashlib.sha256(f"{records.identity}|{rows.tolist()}|phash{THUMB}".encode()).hexdigest()[:24]
    path = cache_dir / "near-duplicates" / f"{key}.npz" if cache_dir is not None else None
    if path is not None and path.is_file():
        with np.load(path) as z:
            return z["hashes"], z["thumbs"]
    hashes = np.zeros(len(rows), dtype=np.uint64)
    thumbs = np.zeros((len(rows), THUMB, THUMB, 3), dtype=np.uint8)
    for i, row in enumerate(rows):
        h, thumbs[i] = signature(records.read_image(int(row)))
        hashes[i] = np.uint64(h)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, hashes=hashes, thumbs=thumbs)
        tmp.replace(path)
    return hashes, thumbs


def candidate_pairs(hashes: np.ndarray, max_distance: int) -> np.ndarray:
    """``(m, 2)`` index pairs ``i < j`` whose hashes differ in at most ``max_distance`` bits."""
    found = []
    for start in range(0, len(hashes), _BLOCK):
        dist = np.bitwise_count(hashes[start : start + _BLOCK, None] ^ hashes[None, :])
        i, j = np.nonzero(dist <= max_distance)
        i = i + start
        keep = i < j
        found.append(np.stack([i[keep], j[keep]], axis=1))
    return np.concatenate(found) if found else np.zeros((0, 2), dtype=np.int64)


def confirmed(pairs: np.ndarray, thumbs: np.ndarray, rule: DuplicateRule) -> np.ndarray:
    """The pairs whose thumbnails agree under ``rule``."""
    if not len(pairs):
        return pairs
    x = thumbs.astype(np.float32)
    grey = x.mean(axis=-1).reshape(len(x), -1)
    z = (grey - grey.mean(axis=1, keepdims=True)) / (grey.std(axis=1, keepdims=True) + 1e-6)
    a, b = pairs[:, 0], pairs[:, 1]
    corr = (z[a] * z[b]).mean(axis=1)
    mad = np.abs(x[a] - x[b]).reshape(len(pairs), -1).mean(axis=1)
    return pairs[(corr >= rule.min_correlation) & (mad <= rule.max_mad)]


def clusters(n: int, pairs: np.ndarray) -> np.ndarray:
    """Cluster id per image (the smallest member's index): pairs joined transitively."""
    parent = np.arange(n)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in pairs:
        ri, rj = root(int(i)), root(int(j))
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    return np.array([root(i) for i in range(n)])


def near_duplicate_clusters(hashes: np.ndarray, thumbs: np.ndarray, rule: DuplicateRule) -> np.ndarray:
    return clusters(len(hashes), confirmed(candidate_pairs(hashes, rule.max_distance), thumbs, rule))


def merged_groups(groups: np.ndarray, cluster: np.ndarray) -> np.ndarray:
    """Groups joined wherever a near-duplicate cluster spans two of them: one new label per
    connected set of lesion groups, named by its first lesion group."""
    labels, codes = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
    pairs = np.stack([codes, codes[np.asarray(cluster)]], axis=1)  # image's group ~ its cluster root's
    joined = clusters(len(labels), pairs[pairs[:, 0] != pairs[:, 1]])
    return labels[joined][codes]


def describe(
    ids: np.ndarray, cluster: np.ndarray, split_of: np.ndarray, mode: str, rule: DuplicateRule
) -> dict:
    """What the record says: how many clusters and images, how many clusters span two splits."""
    roots, sizes = np.unique(cluster, return_counts=True)
    multi = roots[sizes > 1]
    spanning = [r for r in multi if len(set(split_of[cluster == r]) - {""}) > 1]
    return {
        "mode": mode,
        "rule": {"hash": "imagehash.phash (64 bits)", **asdict(rule)},
        "clusters": len(multi),
        "images": int(sizes[sizes > 1].sum()),
        "clusters_across_splits": len(spanning),
        "examples": [sorted(ids[cluster == r].tolist()) for r in multi[:5]],
    }
