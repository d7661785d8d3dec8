"""The experiment folder `<storage>/<name>/`: every path FreezeFrame writes there, named once.

    config.yaml                        the resolved config of the study
    split.csv                          the train/val/test split every trial used
    trials.csv                         one row per trial, rewritten as trials progress
    best_recipes.yaml                  the tune stage's best recipe per strategy
    pretrain/encoder.pt                the pretrain stage's model: later stages' encoder weights
    optuna.db                          the tune stage's Optuna studies (local storage only)
    results/<stage>/<trial>.json       a finished trial's metrics (a resumed search reuses them)
    checkpoints/<stage>/<trial>/<file> last.pt / best.pt of an unfinished (or kept) trial
    <run>/                             Ray Tune's state of one Tune experiment: pretrain,
                                       tune_<strategy>, final
    report/                            the report (its default folder for a local experiment)
    wandb/                             offline W&B runs (local storage)

No other module spells these paths (`tests/test_experiment.py` greps for them).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import yaml

from search.storage import ExperimentStore, is_uri
from trainables.splits import split_csv
from trainables.train import CHECKPOINT_FILES

CONFIG = "config.yaml"
SPLIT = "split.csv"
TRIALS = "trials.csv"
BEST_RECIPES = "best_recipes.yaml"
PRETRAIN_ENCODER = "pretrain/encoder.pt"
STUDY_DB = "optuna.db"
REPORT_DIR = "report"


class Experiment:
    """One experiment folder: its named files over an `ExperimentStore` (local or remote)."""

    def __init__(self, storage: str, name: str):
        self.store = ExperimentStore(storage, name)

    @classmethod
    def at(cls, location: str | Path) -> Experiment:
        """The experiment whose folder is `location` (a path or a URI)."""
        location = str(location).rstrip("/")
        if is_uri(location):
            parent, _, name = location.rpartition("/")
            return cls(parent, name)
        path = Path(location).expanduser().resolve()
        return cls(str(path.parent), path.name)

    @property
    def name(self) -> str:
        return self.store.name

    @property
    def uri(self) -> str:
        return self.store.uri

    # -- paths -----------------------------------------------------------------------------
    @staticmethod
    def result(stage: str, trial: str) -> str:
        return f"results/{stage}/{trial}.json"

    @staticmethod
    def checkpoint(stage: str, trial: str, file: str) -> str:
        if file not in CHECKPOINT_FILES:
            raise ValueError(f"unknown checkpoint file {file!r}; valid: {CHECKPOINT_FILES}")
        return f"checkpoints/{stage}/{trial}/{file}"

    def tune_run_uri(self, run: str) -> str:
        """Ray Tune's folder of one Tune experiment (`storage_path` + `name`)."""
        return self.store.uri_of(run)

    def pretrain_encoder_uri(self) -> str | None:
        """The pretrain stage's checkpoint as a trial names it, or None before it exists."""
        return self.store.uri_of(PRETRAIN_ENCODER) if self.store.exists(PRETRAIN_ENCODER) else None

    def study_storage_dir(self) -> Path:
        """A local folder for the Optuna SQLite file: the experiment's own on local storage,
        else `~/.freezeframe/<name>/` on the driver's machine (SQLite needs a local file)."""
        local = self.store.local_path()
        return local if local is not None else Path.home() / ".freezeframe" / self.name

    def study_storage_url(self) -> str:
        folder = self.study_storage_dir()
        folder.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{folder / STUDY_DB}"

    def wandb_dir(self) -> str | None:
        """Where offline W&B runs go: the experiment folder when it is local, else W&B's
        default (the trial's working directory on its node)."""
        local = self.store.local_path()
        return None if local is None else str(local)

    def default_report_dir(self) -> Path:
        local = self.store.local_path(REPORT_DIR)
        return local if local is not None else Path(f"report_{self.name}")

    # -- typed access ----------------------------------------------------------------------
    def exists(self) -> bool:
        return self.store.exists(CONFIG)

    def read_config(self) -> dict:
        """config.yaml as a dict ({} when absent)."""
        if not self.store.exists(CONFIG):
            return {}
        return yaml.safe_load(self.store.read_text(CONFIG)) or {}

    def write_config(self, config: dict) -> None:
        self.store.write_text(CONFIG, yaml.safe_dump(config, sort_keys=False))

    def has_trials(self) -> bool:
        return self.store.exists(TRIALS)

    def read_trials(self, columns: list[str] | None = None) -> pd.DataFrame:
        """trials.csv (an empty frame with `columns` when absent)."""
        if not self.store.exists(TRIALS):
            return pd.DataFrame(columns=columns or [])
        return pd.read_csv(io.StringIO(self.store.read_text(TRIALS)))

    def write_trials(self, frame: pd.DataFrame) -> None:
        buffer = io.StringIO()
        frame.to_csv(buffer, index=False)
        self.store.write_text(TRIALS, buffer.getvalue())

    def read_split(self) -> pd.DataFrame | None:
        if not self.store.exists(SPLIT):
            return None
        return pd.read_csv(io.StringIO(self.store.read_text(SPLIT)), dtype=str)

    def write_split(self, split: dict[str, list[str]]) -> None:
        self.store.write_text(SPLIT, split_csv(split))

    def has_result(self, stage: str, trial: str) -> bool:
        return self.store.exists(self.result(stage, trial))

    def read_result(self, stage: str, trial: str) -> dict:
        return json.loads(self.store.read_text(self.result(stage, trial)))

    def write_result(self, stage: str, trial: str, metrics: dict) -> None:
        self.store.write_text(self.result(stage, trial), json.dumps(metrics, indent=2))

    def results(self, stage: str) -> list[dict]:
        """Every finished trial's metrics of one stage."""
        folder = self.result(stage, "*").rpartition("/")[0]
        return [
            json.loads(self.store.read_text(f"{folder}/{name}"))
            for name in self.store.list(folder)
            if name.endswith(".json")
        ]

    def read_best_recipes(self) -> dict[str, dict]:
        if not self.store.exists(BEST_RECIPES):
            return {}
        return yaml.safe_load(self.store.read_text(BEST_RECIPES)) or {}

    def write_best_recipes(self, recipes: dict[str, dict]) -> None:
        self.store.write_text(BEST_RECIPES, yaml.safe_dump(recipes, sort_keys=True))
