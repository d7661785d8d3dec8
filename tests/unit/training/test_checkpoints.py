"""Checkpoints are loaded without running code: a pickled callable is refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trainables.core.config import TrialConfig
from trainables.core.errors import CheckpointError
from trainables.training.checkpoints import load_checkpoint
from trainables.training.run import run_trial


def test_a_checkpoint_holding_a_pickled_callable_is_refused(tmp_path):
    bad = tmp_path / "last.pt"
    torch.save({"model": {}, "epoch": 1, "hook": np.save}, bad)
    with pytest.raises(CheckpointError, match="refused to load .* could run code"):
        load_checkpoint(bad)
    # A trial that finds it in its folder (a bucket someone else can write) stops there.
    cfg = TrialConfig(encoder_weights="none", image_size=32, epochs=1, batch_size=4)
    with pytest.raises(CheckpointError, match="GLOBAL numpy"):
        run_trial(cfg, tmp_path, verbose=False)
