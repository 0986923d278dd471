"""The one resampler and the one interval type of dermbench.

Resamples are rows of case weights (how often each case was drawn), produced in chunks so memory
stays bounded; with ``groups`` (lesion or patient ids) whole groups are drawn with replacement,
so several images of one lesion never make an interval look tighter than the number of lesions
allows. The run record, the subgroup audit and the leaderboard all draw through
:func:`resample_weights`, so the same seed and the same cases give the same resamples everywhere.

An interval is a percentile interval over the resamples where the statistic is defined. When
some resamples leave it undefined (a group without a positive case), the interval is conditional
on the others, and it says how many it used; when the estimate falls outside it (a skewed
bootstrap distribution), no interval is reported and the note says why.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from dermbench.errors import ConfigError, DataError

CHUNK_CELLS = 4_000_000  # resamples x cases held at once


def check_resampling(n: int, n_boot: int, alpha: float, allow_none: bool = False) -> None:
    """An empty sample, a non-positive resample count or an alpha outside (0, 1) is a user error."""
    if n == 0:
        raise DataError("cannot bootstrap an empty split")
    if n_boot < (0 if allow_none else 1):
        raise ConfigError(f"n_boot must be >= {0 if allow_none else 1}, got {n_boot}")
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"alpha must lie in (0, 1), got {alpha}")


def resample_weights(n: int, n_boot: int, seed: int = 0, groups: Any = None) -> Iterator[np.ndarray]:
    """Chunks ``(b, n)`` of bootstrap case counts, ``n_boot`` rows in all, seeded by ``seed``."""
    if n_boot < 1:
        raise ConfigError(f"n_boot must be >= 1, got {n_boot}")
    rng = np.random.default_rng(seed)
    if groups is None:
        inverse, units = None, n
    else:
        g = np.asarray(groups)
        if len(g) != n:
            raise DataError(f"groups has {len(g)} entries for {n} rows")
        _, inverse = np.unique(g.astype(str), return_inverse=True)
        units = int(inverse.max()) + 1 if n else 0
    chunk = max(1, CHUNK_CELLS // max(n, 1))
    done = 0
    while done < n_boot:
        b = min(chunk, n_boot - done)
        draw = rng.integers(0, units, size=(b, units))
        flat = (draw + units * np.arange(b)[:, None]).ravel()
        counts = np.bincount(flat, minlength=b * units).reshape(b, units).astype(np.float64)
        yield counts if inverse is None else counts[:, inverse]
        done += b


def resampling_unit(groups: Any) -> str:
    """What one resample draws: ``images`` or ``groups`` (lesions/patients), for the record."""
    return "images" if groups is None else "groups"


@dataclass(frozen=True)
class Interval:
    """A percentile bootstrap interval, with what makes it honest.

    ``n_boot_used`` of ``n_boot`` resamples defined the statistic (fewer: ``conditional``);
    ``contains_estimate`` is False when the point estimate lies outside the percentile interval:
    then no bounds are reported (``low``/``high`` None) and ``note`` says why.
    """

    low: float | None
    high: float | None
    n_boot_used: int
    n_boot: int
    conditional: bool = False
    contains_estimate: bool | None = None
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None or k in ("low", "high")}

    def __iter__(self) -> Iterator[float | None]:  # low, high = interval
        return iter((self.low, self.high))


def percentile_interval(values: np.ndarray, alpha: float = 0.05, estimate: float | None = None) -> Interval:
    """The ``1 - alpha`` percentile interval of the defined (non-NaN) resample values."""
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"alpha must lie in (0, 1), got {alpha}")
    values = np.asarray(values, dtype=np.float64)
    used = values[~np.isnan(values)]
    if not used.size:
        return Interval(None, None, 0, len(values), True, None, "undefined on every resample")
    low, high = (float(v) for v in np.percentile(used, [100 * alpha / 2, 100 * (1 - alpha / 2)]))
    conditional = used.size < len(values)
    contains = None if estimate is None else bool(low - 1e-12 <= estimate <= high + 1e-12)
    note = None
    if conditional:
        note = f"conditional on the {used.size} of {len(values)} resamples that define it"
    if contains is False:  # reported as no interval: one that excludes its estimate would mislead
        outside = (
            f"no interval: the percentile interval [{low:.4g}, {high:.4g}] does not contain the estimate "
            f"{estimate:.4g} (a skewed or discrete bootstrap distribution)"
        )
        note = f"{note}; {outside}" if note else outside
        low = high = None
    return Interval(low, high, int(used.size), len(values), conditional, contains, note)
