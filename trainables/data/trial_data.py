"""A trial's data: the data set read (validated, cached) and split into train, val and test,
before any training starts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from trainables.core.config import TrialConfig
from trainables.data.arrays import ArrayDataset, default_data_dir, digest_of, load_arrays
from trainables.data.splits import make_split


@dataclass
class TrialData:
    train: ArrayDataset
    val: ArrayDataset
    test: ArrayDataset
    split: dict[str, list[str]]
    # The whole training side's digests when `train` holds only part of it (a train_fraction
    # below 1): the fingerprint stays the experiment's, whatever share a trial trains on.
    train_pool: dict[str, str] | None = None

    def fingerprint(self) -> dict:
        """What the trial may train and tests on: every image's content digest and its side."""
        train = self.train.digests if self.train_pool is None else self.train_pool
        samples = {**train, **self.val.digests, **self.test.digests}
        return {"split": self.split, "samples": dict(sorted(samples.items()))}

    def digest(self) -> str:
        return digest_of(self.fingerprint())


def load_trial_data(cfg: TrialConfig) -> TrialData:
    """Read (and validate, and cache) the data set, then split it. Raises before any training."""
    data_dir = Path(cfg.data_dir) if cfg.data_dir else default_data_dir()
    full = load_arrays(data_dir, cfg.image_size, cache_dir=cfg.cache_dir)
    filenames = sorted(full.filenames)
    if cfg.max_images is not None:
        filenames = filenames[: cfg.max_images]
    split = make_split(
        filenames,
        cfg.split,
        split_file=cfg.split_file,
        val_fraction=cfg.val_fraction,
        test_fraction=cfg.test_fraction,
        seed=cfg.split_seed,
    )
    return TrialData(*(full.subset(split[side]) for side in ("train", "val", "test")), split)
