"""The Pareto front: which points no other point beats on both score and cost.

Used by the explore stage (its top-k) and by the report (its fronts).
"""

from __future__ import annotations

import pandas as pd


def non_dominated(score: pd.Series, cost: pd.Series) -> pd.Series:
    """True where no other point has at most the cost and at least the score, and is strictly
    better in one of the two (score: higher is better; cost: lower is better); points without
    a score or a cost are never on the front."""
    known = score.notna() & cost.notna()
    score, cost = score.where(known), cost.where(known)
    flags = {}
    for i in score.index:
        if not known[i]:
            flags[i] = False
            continue
        better = (cost <= cost[i]) & (score >= score[i]) & ((cost < cost[i]) | (score > score[i]))
        flags[i] = not bool(better.any())
    return pd.Series(flags, dtype=bool).reindex(score.index)
