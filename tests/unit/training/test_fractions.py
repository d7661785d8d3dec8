"""A share of the training split trains on a budget in steps or epochs."""

from __future__ import annotations

import pytest

from trainables.core.config import TrialConfig
from trainables.data.splits import train_subset
from trainables.data.trial_data import load_trial_data
from trainables.training.setup import fraction_of_training, steps_per_epoch


@pytest.mark.parametrize("schedule", ["exponential", "step", "cosine", "none"])
def test_steps_budget_matches_the_whole_split_and_stretches_the_decay(schedule, sample_dir):
    cfg = TrialConfig(
        data_dir=str(sample_dir),
        image_size=32,
        batch_size=2,
        epochs=3,
        lr_schedule=schedule,
        lr_gamma=0.8,
        lr_step_size=2,
        train_fraction=0.4,
        seed=5,
    )
    data = load_trial_data(cfg)
    part_cfg, part = fraction_of_training(cfg, data)
    names = train_subset(data.split["train"], 0.4, 5)
    assert list(part.train.filenames) == names and len(names) < len(data.train)
    # Val and test untouched; the fingerprint (what a node's data is checked against) unchanged.
    assert part.val.filenames == data.val.filenames and part.test.filenames == data.test.filenames
    assert part.digest() == data.digest()
    full_steps = cfg.epochs * steps_per_epoch(len(data.train), cfg.batch_size)
    per_epoch = steps_per_epoch(len(names), cfg.batch_size)
    assert full_steps <= part_cfg.epochs * per_epoch < full_steps + per_epoch
    stretch = part_cfg.epochs / cfg.epochs
    if schedule == "exponential":  # the rate falls as far over the same steps
        assert part_cfg.lr_gamma**part_cfg.epochs == pytest.approx(cfg.lr_gamma**cfg.epochs)
    if schedule == "step":
        assert part_cfg.lr_step_size == round(cfg.lr_step_size * stretch)
    # Applying it twice changes nothing more (the trial applies it once, but must not compound).
    assert fraction_of_training(part_cfg, part) == (part_cfg, part)
    # The epochs budget keeps the epochs: fewer steps.
    same_epochs, _ = fraction_of_training(
        cfg.model_copy(update={"fraction_budget": "epochs"}), data
    )
    assert same_epochs.epochs == cfg.epochs and same_epochs.lr_gamma == cfg.lr_gamma
