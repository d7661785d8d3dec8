"""Exit non-zero unless a study's trials.csv holds the paper's full grid, finished: every paper
strategy x every seed of the final stage with status ok (8 x 4 for the embedded default).

    python .ci/check_grid.py runs/demo/trials.csv [SEEDS]     (SEEDS default 4)
"""

from __future__ import annotations

import sys
from pathlib import Path

from search.experiment.folder import Experiment
from trainables.nets.strategies import PAPER_STRATEGIES

path, seeds = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 4
# The product's reader: trials.csv with any rows its events file holds beyond it (a study the
# runner stopped before its last stage ended).
rows = Experiment.at(Path(path).parent).read_trials()
final = rows[(rows["stage"] == "final") & rows["strategy"].isin(PAPER_STRATEGIES)]
ok = final[final["status"] == "ok"].groupby("strategy")["seed"].nunique()
missing = [s for s in PAPER_STRATEGIES if ok.get(s, 0) < seeds]
print(
    f"{path}: paper grid {len(PAPER_STRATEGIES)} strategies x {seeds} seeds; "
    f"final rows of paper strategies: {final['status'].value_counts().to_dict()}"
)
if missing:
    sys.exit(f"{path}: these strategies lack {seeds} ok seeds: {', '.join(missing)}")
