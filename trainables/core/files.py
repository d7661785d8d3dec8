"""The names of a trial's files that other modules look for: its checkpoints and its per-image
test results."""

from __future__ import annotations

# Written each epoch: the best epoch's model, and everything a retry needs to continue after the
# last finished epoch.
BEST, LAST = "best.pt", "last.pt"
CHECKPOINT_FILES = (LAST, BEST)

# One row per test image (scores raw and post-processed, HC, both ellipses), beside metrics.json.
TEST_PER_IMAGE = "test_per_image.csv"
