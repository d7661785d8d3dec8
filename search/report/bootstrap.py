"""The hierarchical bootstrap over seeds and test images behind the report's intervals and paired
comparisons (the rule is `search.report.stats.SEPARATION_RULE`).

Every seed of every strategy scores the same test images: images are crossed with seeds, not
nested in them. One replicate draws each strategy's seeds with replacement (a draw of its own),
then the test images with replacement - one draw per replicate, used by every resampled seed of
every strategy, so a comparison with the best is paired on the images. Its statistic is the mean
per-image score over the resampled seeds x images, the same mean the trials table holds (a
trial's test score is the mean over its images). A seed drawn twice counts twice, an image too.

Vectorised: with seed counts c (replicates x seeds), image counts w (replicates x images) and
scores S (seeds x images, missing = 0 with a 0/1 mask M), a replicate's mean is
sum((c @ S) * w) / sum((c @ M) * w). Deterministic: the draws come from `SEED` (the images') and
`SEED` with the strategy's name (its seeds'), so a strategy's interval does not depend on which
other strategies the experiment holds.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

RESAMPLES = 4000  # replicates: the 2.5% tail holds 100 of them; a p-value's resolution is 1/4001
SEED = 0
MIN_SEEDS = 2  # one seed gives no seed-to-seed spread to resample: no interval, as with t


def per_image_column(column: str) -> str:
    """The per-image table's column behind a trials-table test column (test_dice -> dice)."""
    return column.removeprefix("test_")


@dataclass
class PerImage:
    """The per-image scores of the final stage's ok trials, ready to resample.

    Args:
        long: one row per (trial, image): strategy, seed, filename and the score columns.
    """

    long: pd.DataFrame
    resamples: int = RESAMPLES
    images: pd.Index = field(init=False)
    _rows: dict = field(init=False, default_factory=dict)  # strategy -> its rows
    _seeds: dict = field(init=False, default_factory=dict)  # strategy -> its seeds, in order
    _image_counts: np.ndarray | None = field(init=False, default=None)
    _seed_counts: dict = field(init=False, default_factory=dict)

    def __post_init__(self):
        names = self.long["filename"].astype(str) if len(self.long) else pd.Series(dtype=str)
        self.images = pd.Index(sorted(names.unique()))
        for strategy, rows in self.long.groupby("strategy") if len(self.long) else ():
            self._rows[strategy] = rows
            self._seeds[strategy] = sorted(rows["seed"].unique().tolist())

    def seeds(self, strategy: str) -> list[int]:
        """The strategy's seeds that have a per-image table, in order."""
        return self._seeds.get(strategy, [])

    def scores(self, strategy: str, column: str) -> np.ndarray | None:
        """Seeds x images of `column` (NaN where an image has no finite score); None when the
        strategy has no table or the tables no numeric `column`."""
        seeds = self.seeds(strategy)
        if not seeds or column not in self.long:
            return None
        rows = self._rows[strategy]
        values = pd.to_numeric(rows[column], errors="coerce").to_numpy(dtype=float, copy=True)
        values[~np.isfinite(values)] = np.nan
        if np.isnan(values).all():
            return None
        matrix = np.full((len(seeds), len(self.images)), np.nan)
        matrix[
            np.searchsorted(seeds, rows["seed"].to_numpy()),
            self.images.get_indexer(rows["filename"].astype(str)),
        ] = values
        return matrix

    def image_counts(self) -> np.ndarray:
        """Replicates x images: how often each image is drawn (one draw per replicate)."""
        if self._image_counts is None:
            n = len(self.images)
            rng = np.random.default_rng(SEED)
            counts = rng.multinomial(n, np.full(n, 1.0 / n), size=self.resamples)
            self._image_counts = counts.astype(float)  # float: BLAS products, not integer loops
        return self._image_counts

    def seed_counts(self, strategy: str) -> np.ndarray:
        """Replicates x seeds: how often each of the strategy's seeds is drawn."""
        if strategy not in self._seed_counts:
            n = len(self.seeds(strategy))
            rng = np.random.default_rng([SEED, zlib.crc32(strategy.encode())])
            counts = rng.multinomial(n, np.full(n, 1.0 / n), self.resamples)
            self._seed_counts[strategy] = counts.astype(float)
        return self._seed_counts[strategy]

    def replicates(self, strategy: str, column: str, images: np.ndarray | None = None):
        """The strategy's mean `column` in every replicate (NaN where a replicate drew no
        scored image), over `images` only (a boolean mask) when given; None without scores."""
        scores = self.scores(strategy, column)
        if scores is None:
            return None
        present = np.isfinite(scores)
        weights = self.image_counts()
        if images is not None:
            weights = weights * images
        seeds = self.seed_counts(strategy)
        total = ((seeds @ np.where(present, scores, 0.0)) * weights).sum(axis=1)
        count = ((seeds @ present.astype(float)) * weights).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(count > 0, total / np.where(count > 0, count, 1), np.nan)


def percentile_interval(replicates: np.ndarray, alpha: float) -> tuple[float, float]:
    """The (alpha/2, 1 - alpha/2) percentiles of the finite replicates."""
    finite = replicates[np.isfinite(replicates)]
    if not len(finite):
        return math.nan, math.nan
    low, high = np.quantile(finite, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def two_sided_p(differences: np.ndarray) -> float:
    """Bootstrap p-value of 'the difference is 0': twice the smaller tail at 0, each counted
    with the +1 of (k + 1) / (B + 1), at most 1."""
    finite = differences[np.isfinite(differences)]
    if not len(finite):
        return math.nan
    tail = min((finite <= 0).sum(), (finite >= 0).sum())
    return float(min(1.0, 2 * (tail + 1) / (len(finite) + 1)))
