"""[from train.py]
Run one trial end to end and write its results.

    python -m trainables.train --config configs/smoke.yaml --strategy decoder --seed 0         --data ../shared/data/hc18 --out runs/decoder__seed0 [--set key=value ...]

Writes to --out: `config.yaml` (resolved), `split.csv`, `last.pt` (every epoch, for resuming),
`best.pt` (the epoch with the best validation Dice), `test_per_image.csv` and `metrics.json`.
Bad config or data fail before anything is written. Rerunning on an --out that holds a
`last.pt` but no `metrics.json` resumes after the last finished epoch.
"""

from __future__ import annotations

# The files a trial writes into its folder each epoch: the best epoch's model, and everything a
# retry needs to continue after the last finished epoch.
BEST, LAST = "best.pt", "last.pt"


CHECKPOINT_FILES = (LAST, BEST)


# One row per test image (scores raw and post-processed, HC, both ellipses), beside metrics.json.
TEST_PER_IMAGE = "test_per_image.csv"

