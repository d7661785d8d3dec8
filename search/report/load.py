"""What the report reads of one experiment: its saved results, through `search.experiment.folder`.

Only saved files, nothing live, so a finished, a running or a copied experiment reads the same,
at a local path or a storage URI (s3://, gs://, file://).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from search.experiment.folder import TRIALS, Experiment
from trainables.core.errors import UserError


class NoResults(UserError, FileNotFoundError):
    """The experiment holds nothing to report on (yet): no trials table, or no final trials."""


@dataclass(frozen=True)
class Results:
    """One experiment's saved results, as the report uses them."""

    name: str  # the folder's name, not search.name: trial runs use it as their W&B group too
    location: str  # the folder's URI, as the report shows it
    trials: pd.DataFrame
    config: dict  # {} when the experiment has no config
    split: pd.DataFrame | None  # None when the experiment has no split
    default_out_dir: Path  # the experiment's report folder, or ./report_<name> for a URI
    # {network: where the pretrain stage's encoder came from, and its cost} ({} without one)
    encoder: dict[str, dict] = field(default_factory=dict)
    # The final trials' per-image test tables by trial name (trials without one are absent).
    per_image: dict[str, pd.DataFrame] = field(default_factory=dict)
    identity: str = ""  # the experiment's random id ('' for one made before ids existed)


def load_results(location: str) -> Results:
    """Read the experiment at `location` (a path or a URI).

    Raises:
        NoResults: the experiment has no trials table (the search has not started).
    """
    experiment = Experiment.at(location)
    if not experiment.has_trials():
        shown = str(location).rstrip("/")
        raise NoResults(f"no {TRIALS} in {shown} - has the search started there?")
    trials = experiment.read_trials()
    final = trials.loc[trials["stage"] == "final", "trial_name"] if "stage" in trials else []
    tables = {name: experiment.read_per_image("final", name) for name in set(final)}
    return Results(
        name=experiment.name,
        location=experiment.uri,
        trials=trials,
        config=experiment.read_config(),
        split=experiment.read_split(),
        default_out_dir=experiment.default_report_dir(),
        encoder=experiment.read_encoder_info(),
        per_image={name: rows for name, rows in tables.items() if rows is not None},
        identity=experiment.identity(),
    )
