"""The embedded synthetic sample: lesion-like images any task can run on without downloads.

It exists so ``dermbench run`` and the test-suite work on a fresh clone, and so a method can be
smoke-tested in seconds. It imitates what makes dermatology benchmarks hard, not what lesions
look like: HAM10000's class imbalance (Tschandl et al., Sci. Data 2018) or a task's own priors;
several images per lesion (a split must keep them together); skin tones from very light to dark,
with the true ITA recorded; and class cues (pigment colour and darkness, size, eccentricity,
border irregularity, dots / streaks / network / pale centre) that overlap through per-lesion
noise, so a small CNN learns them well above chance but not perfectly, and the rare classes,
which also get the noisiest cues, are the hardest.

Generation is deterministic in the options. Only the table is built up front; each image is
rendered on demand from its row number, so a cache hit costs no rendering at all.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from dermbench.data.records import DatasetRecords
from dermbench.errors import ConfigError

GENERATOR_VERSION = 1
# HAM10000 class counts (Tschandl et al. 2018), the default priors.
HAM_COUNTS = {"nv": 6705, "mel": 1113, "bkl": 1099, "bcc": 514, "akiec": 327, "vasc": 142, "df": 115}
MIN_PER_CLASS = 6  # enough lesions of every class to populate train, val and test
# Fitzpatrick type -> ITA range in degrees (Chardon et al. 1991 bins; type VI open below -30).
ITA_BINS = {1: (55, 70), 2: (41, 55), 3: (28, 41), 4: (10, 28), 5: (-30, 10), 6: (-50, -30)}
TYPE_WEIGHTS = np.array([0.14, 0.24, 0.2, 0.16, 0.14, 0.12])
PIGMENTS = np.array(  # sRGB 0-1, from which class pigments are interpolated
    [
        [0.36, 0.20, 0.12],  # dark brown
        [0.62, 0.42, 0.28],  # light brown
        [0.12, 0.10, 0.16],  # blue-black
        [0.70, 0.16, 0.18],  # red
        [0.86, 0.52, 0.55],  # pink
        [0.42, 0.18, 0.40],  # purple
        [0.72, 0.58, 0.38],  # tan
    ]
)
TEXTURES = ("none", "dots", "streaks", "network", "pale_centre")
_PHI = (0.6180339887, 0.4142135624, 0.7320508076, 0.2360679775, 0.6457513111, 0.3166247904)


@dataclass(frozen=True)
class SyntheticOptions:
    n: int = field(default=1500, metadata={"help": "number of images"})
    image_size: int = field(default=64, metadata={"help": "native size; the cache resizes to the run's"})
    seed: int = field(default=0, metadata={"help": "generator seed (the data, not the split)"})
    label_source: str = field(default="ham10000_dx", metadata={"help": "namespace of the generated labels"})
    priors: dict[str, float] | None = field(
        default=None, metadata={"help": "class -> weight ('a=3,b=1' or JSON); None: HAM10000 counts"}
    )


def parse_priors(priors: Any, label_source: str) -> dict[str, float]:
    if priors is None or priors == {}:
        if label_source != "ham10000_dx":
            raise ConfigError(
                f"synthetic data for label source {label_source!r} needs option priors "
                "(class -> weight); only 'ham10000_dx' has built-in priors"
            )
        return {k: float(v) for k, v in HAM_COUNTS.items()}
    if isinstance(priors, str):
        text = priors.strip()
        try:
            priors = (
                json.loads(text) if text.startswith("{") else dict(p.split("=", 1) for p in text.split(","))
            )
        except ValueError:
            raise ConfigError(
                f"option synthetic.priors: cannot read {text!r} as 'class=weight,...'"
            ) from None
    if not isinstance(priors, Mapping):
        raise ConfigError(f"option synthetic.priors: expected a mapping of class -> weight, got {priors!r}")
    out = {}
    for k, v in priors.items():
        try:
            out[str(k).strip()] = float(v)
        except (TypeError, ValueError):
            raise ConfigError(f"option synthetic.priors: weight of {k!r} is {v!r}, not a number") from None
        if not out[str(k).strip()] > 0:
            raise ConfigError(f"option synthetic.priors: weight of {k!r} must be positive")
    return out


def class_counts(priors: Mapping[str, float], n: int, floor: int = MIN_PER_CLASS) -> dict[str, int]:
    """Largest-remainder counts proportional to ``priors``, each at least ``floor``, summing to n."""
    names = list(priors)
    if n < floor * len(names):
        raise ConfigError(
            f"option synthetic.n={n} is too small for {len(names)} classes (need {floor * len(names)})"
        )
    w = np.array([priors[k] for k in names], dtype=float)
    exact = n * w / w.sum()
    counts = np.floor(exact).astype(int)
    counts[np.argsort(-(exact - counts), kind="stable")[: n - counts.sum()]] += 1
    while (counts < floor).any():  # lift small classes, taking from the largest
        i, j = int(np.argmin(counts)), int(np.argmax(counts))
        counts[i] += 1
        counts[j] -= 1
    return dict(zip(names, counts.tolist(), strict=True))


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """CIE L*a*b* (D65) -> sRGB in 0-1."""
    L, a, b = lab[..., 0], lab[..., 1], lab[..., 2]
    fy = (L + 16) / 116
    f = np.stack([fy + a / 500, fy, fy - b / 200], axis=-1)
    xyz = np.where(f > 6 / 29, f**3, 3 * (6 / 29) ** 2 * (f - 4 / 29)) * np.array([0.95047, 1.0, 1.08883])
    m = np.array([[3.2406, -1.5372, -0.4986], [-0.9689, 1.8758, 0.0415], [0.0557, -0.2040, 1.0570]])
    lin = np.clip(xyz @ m.T, 0, 1)
    return np.where(lin <= 0.0031308, 12.92 * lin, 1.055 * lin ** (1 / 2.4) - 0.055)


def _prototypes(classes: list[str]) -> dict[str, np.ndarray]:
    """Cue centres per class: a low-discrepancy sequence, so any two classes differ on several cues."""
    return {c: np.array([(0.5 + (k + 1) * p) % 1.0 for p in _PHI]) for k, c in enumerate(classes)}


def _draw_table(
    opts: SyntheticOptions, priors: dict[str, float]
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    rng = np.random.default_rng([opts.seed, GENERATOR_VERSION])
    counts = class_counts(priors, opts.n)
    order = sorted(counts, key=lambda c: -counts[c])  # majority first
    protos = _prototypes(order)
    labels, groups = [], []
    lesions: dict[str, list] = {
        k: [] for k in ("cues", "noise", "texture", "ita", "skin", "type", "phase", "angle")
    }
    for rank, cls in enumerate(order):
        remaining, sizes = counts[cls], []
        while remaining > 0:
            s = 1 if counts[cls] < 9 else int(rng.choice([1, 2, 3], p=[0.72, 0.18, 0.10]))
            sizes.append(min(s, remaining))
            remaining -= sizes[-1]
        spread = 0.16 + 0.08 * rank / max(len(order) - 1, 1)  # rarer classes: noisier cues
        for size in sizes:
            lesion = len(lesions["cues"])
            lesions["cues"].append(np.clip(protos[cls] + rng.normal(0, spread, len(_PHI)), 0, 1))
            own = rank % len(TEXTURES)
            lesions["texture"].append(own if rng.random() < 0.55 else int(rng.integers(len(TEXTURES))))
            stype = int(rng.choice(6, p=TYPE_WEIGHTS)) + 1
            lo, hi = ITA_BINS[stype]
            b = rng.uniform(14, 20)
            L = float(np.clip(50 + b * math.tan(math.radians(rng.uniform(lo, hi))), 22, 94))
            lesions["ita"].append(math.degrees(math.atan((L - 50) / b)))
            lesions["type"].append(stype)
            lesions["skin"].append(lab_to_rgb(np.array([L, rng.uniform(6, 14), b])))
            lesions["phase"].append(rng.uniform(0, 2 * np.pi, 5))
            lesions["angle"].append(rng.uniform(0, np.pi))
            lesions["noise"].append(spread)
            labels += [cls] * size
            groups += [lesion] * size
    perm = rng.permutation(len(labels))
    labels_arr, groups_arr = np.asarray(labels)[perm], np.asarray(groups)[perm]
    params = {k: np.asarray(v) for k, v in lesions.items()}
    frame = pd.DataFrame(
        {
            "image_id": [f"syn_{i:05d}" for i in range(len(perm))],
            "label": labels_arr,
            "group": [f"lesion_{g:05d}" for g in groups_arr],
            "skin_type": params["type"][groups_arr].astype(float),
            "ita": params["ita"][groups_arr].round(2),
            "sex": np.where(rng.random(len(perm)) < 0.5, "female", "male"),
            "age": np.clip(rng.normal(55, 16, len(perm)).round(), 5, 90),
        }
    )
    params["lesion"] = groups_arr
    return frame, params


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    c = (np.arange(size) + 0.5) / size * 2 - 1
    return np.meshgrid(c, c, indexing="xy")


def render(params: dict[str, np.ndarray], row: int, size: int, seed: int) -> np.ndarray:
    """One image, a function of (options, row) only: lesion cues plus per-image jitter."""
    les = int(params["lesion"][row])
    hue, dark, radius, ecc, irr, shade = params["cues"][les]
    rng = np.random.default_rng([seed, GENERATOR_VERSION, row])
    xx, yy = _grid(size)
    skin = params["skin"][les] * (1 + rng.uniform(-0.05, 0.05))
    img = skin * (1 + 0.07 * (rng.normal() * xx + rng.normal() * yy))[..., None]
    # the lesion: an irregular ellipse, moved, turned and rescaled a little per image
    cx, cy = rng.uniform(-0.12, 0.12, 2)
    t = params["angle"][les] + rng.normal(0, 0.25)
    r = (0.22 + 0.4 * radius) * rng.uniform(0.92, 1.08)
    ax, by = r, r * (1 - 0.55 * ecc)
    u = ((xx - cx) * math.cos(t) + (yy - cy) * math.sin(t)) / ax
    v = (-(xx - cx) * math.sin(t) + (yy - cy) * math.cos(t)) / by
    rho, phi = np.hypot(u, v), np.arctan2(v, u)
    ph = params["phase"][les]
    edge = 1 + 0.4 * irr * sum(np.cos(k * phi + ph[k - 2]) / (k - 1) for k in range(2, 7))
    inside = 1 / (1 + np.exp(-np.clip((edge - rho) * 14, -30, 30)))
    pos = hue * (len(PIGMENTS) - 1)
    j = min(int(pos), len(PIGMENTS) - 2)
    pigment = PIGMENTS[j] * (1 - (pos - j)) + PIGMENTS[j + 1] * (pos - j)
    alpha = inside * (0.35 + 0.6 * dark) * (1 - 0.45 * shade * np.clip(rho, 0, 1) ** 2)
    texture = TEXTURES[int(params["texture"][les])]
    if texture == "dots":
        for _ in range(int(rng.integers(8, 20))):
            dx, dy = rng.uniform(-0.8, 0.8, 2) * (ax, by)
            alpha = alpha + 0.45 * inside * np.exp(
                -((xx - cx - dx) ** 2 + (yy - cy - dy) ** 2) / (2 * 0.035**2)
            )
    elif texture == "streaks":
        alpha = alpha + 0.35 * inside * (rho > 0.5) * (np.cos(9 * phi + ph[0]) > 0.55)
    elif texture == "network":
        f = 22 + 6 * ph[1]
        alpha = alpha + 0.3 * inside * (
            (np.abs(np.cos(f * u * ax)) < 0.3) | (np.abs(np.cos(f * v * by)) < 0.3)
        )
    elif texture == "pale_centre":
        alpha = alpha * (1 - 0.8 * np.exp(-(rho**2) / 0.12))
        img = img + 0.25 * inside[..., None] * np.exp(-(rho**2) / 0.12)[..., None]
    alpha = np.clip(alpha, 0, 0.97)[..., None]
    img = img * (1 - alpha) + pigment * alpha
    for _ in range(int(rng.random() < 0.25) * int(rng.integers(1, 4))):  # hairs: class-blind clutter
        a, off = rng.uniform(0, np.pi), rng.uniform(-0.9, 0.9)
        dist = np.abs(xx * math.sin(a) - yy * math.cos(a) - off + 0.15 * np.sin(3 * xx + a))
        img = img * (1 - 0.7 * (dist < 1.2 / size))[..., None]
    img = img + rng.normal(0, params["noise"][les] * 0.15, img.shape)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def load_synthetic(options: SyntheticOptions, path: str | None = None) -> DatasetRecords:
    """The embedded default dataset (``path`` is ignored and should be None)."""
    if options.n < 1 or options.image_size < 8:
        raise ConfigError("options synthetic.n must be >= 1 and synthetic.image_size >= 8")
    priors = parse_priors(options.priors, options.label_source)
    frame, params = _draw_table(options, priors)
    size, seed = options.image_size, options.seed

    def read_image(row: int) -> Image.Image:
        return Image.fromarray(render(params, row, size, seed))

    key = {
        "n": options.n,
        "size": size,
        "seed": seed,
        "source": options.label_source,
        "priors": sorted(priors.items()),
    }
    identity = hashlib.sha256(f"synthetic-v{GENERATOR_VERSION}\0{json.dumps(key)}".encode()).hexdigest()
    return DatasetRecords(
        "synthetic", None, frame, options.label_source, read_image, identity, synthetic=True
    )
