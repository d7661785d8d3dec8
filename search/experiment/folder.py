"""The experiment folder `<storage>/<name>/`: every path FreezeFrame writes there, named once.

    config.yaml                        the resolved config of the study
    split.csv                          the train/val/test split every trial used
    data.json                          the data's fingerprint: every image's content digest
                                       and its side (trials check their node's copy against it)
    lease.json                         the driver that runs the study now, and its heartbeat
    experiment.json                    a random id made when the experiment was created (W&B
                                       run ids: a new experiment of an old name starts new runs)
    trials.csv                         one row per trial: a snapshot, replaced atomically (on a
                                       timer while a stage runs, and when it ends)
    trials.events.csv                  the rows changed since that snapshot, appended one whole
                                       line per event (`read_trials` merges the two)
    best_recipes.yaml                  the tune stage's best recipe per strategy
    pretrain/<network>.pt              the pretrain stage's model per network (mobilenet_v2, ...):
                                       the later stages' encoder weights
    pretrain/<network>.json            where that encoder came from, and what it cost
    studies/<stage>.db                 the tune or explore stage's Optuna studies (a copy
                                       written when the stage ends)
    studies/journal.log                the studies as trials finish (Optuna's journal file,
                                       for optuna-dashboard; `search.driver.live_study`)
    explore_top.yaml                   the explore stage's configurations the final stage tests
    results/<stage>/<trial>.json       a finished trial's metrics (a resumed search reuses them)
    results/<stage>/<trial>.test_per_image.csv
                                       its test images one by one (scores raw and
                                       post-processed, HC, both ellipses): the report's
                                       per-image statistics and figures
    checkpoints/<stage>/<trial>/<file> last.pt / best.pt of an unfinished (or kept) trial
    <stage>/                           Ray Tune's state of the stage's Tune experiment(s):
                                       pretrain, tune, explore, final
    report/                            the report (its default folder for a local experiment)
    wandb/                             offline W&B runs (local storage)

Beside the experiments, `<storage>/pretrained/<key>/encoder.pt` and `encoder.json` keep a
trained encoder for reuse (`search.driver.encoders.EncoderStore`; `stored_encoder_files(key)`).

No other module spells these paths (`tests/unit/search/experiment/test_folder.py` checks that).
"""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path

import pandas as pd
import yaml

from search.experiment.storage import ExperimentStore, is_uri
from search.experiment.trials_file import csv_lines, last_row_per_trial, whole_lines
from trainables.core.files import CHECKPOINT_FILES
from trainables.data.splits import split_csv

CONFIG = "config.yaml"
SPLIT = "split.csv"
DATA = "data.json"
LEASE = "lease.json"
LEASE_LOCK = ".lease.lock"  # local storage: held while a driver reads and writes the lease
IDENTITY = "experiment.json"
TRIALS = "trials.csv"
TRIALS_EVENTS = "trials.events.csv"
TRIAL_KEY = ["stage", "trial_name"]  # a trial's rows in both files: the last one is its state
BEST_RECIPES = "best_recipes.yaml"
PRETRAIN_DIR = "pretrain"
STUDIES_DIR = "studies"
EXPLORE_TOP = "explore_top.yaml"
REPORT_DIR = "report"
WANDB_DIR = "wandb"


def stored_encoder_files(key: str) -> tuple[str, str]:
    """(checkpoint, description) of one encoder in the reuse store, relative to the store."""
    return f"{key}/encoder.pt", f"{key}/encoder.json"


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
            if not is_uri(parent):  # s3://bucket: a bucket, not a folder in one
                raise ValueError(f"{location}: name a folder inside the bucket")
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
    def per_image(stage: str, trial: str) -> str:
        return f"results/{stage}/{trial}.test_per_image.csv"

    @staticmethod
    def study_db(stage: str) -> str:
        return f"{STUDIES_DIR}/{stage}.db"

    @staticmethod
    def study_journal() -> str:
        """The live studies' journal file (when `search.optuna_storage` names none)."""
        return f"{STUDIES_DIR}/journal.log"

    @staticmethod
    def checkpoint(stage: str, trial: str, file: str) -> str:
        if file not in CHECKPOINT_FILES:
            raise ValueError(f"unknown checkpoint file {file!r}; valid: {CHECKPOINT_FILES}")
        return f"checkpoints/{stage}/{trial}/{file}"

    @staticmethod
    def pretrain_encoder(network: str) -> str:
        """The pretrain stage's model for one network (an smp encoder name)."""
        return f"{PRETRAIN_DIR}/{network}.pt"

    @staticmethod
    def pretrain_info(network: str) -> str:
        return f"{PRETRAIN_DIR}/{network}.json"

    def pretrained_networks(self) -> list[str]:
        """The networks the pretrain stage has an encoder for."""
        return [
            name[: -len(".pt")] for name in self.store.list(PRETRAIN_DIR) if name.endswith(".pt")
        ]

    def wandb_dir(self) -> str | None:
        """Where W&B writes a trial's run files (it adds `wandb/`): the experiment folder when
        it is local, else None (the trial's node, then copied here: `store_wandb_run`)."""
        local = self.store.local_path()
        return None if local is None else str(local)

    def store_wandb_run(self, run_dir: Path) -> str:
        """Copy one offline run's folder (`.../wandb/offline-run-...`) into the experiment."""
        rel = f"{WANDB_DIR}/{run_dir.name}"
        for path in sorted(p for p in run_dir.rglob("*") if p.is_file()):
            self.store.upload(path, f"{rel}/{path.relative_to(run_dir).as_posix()}")
        return self.store.uri_of(rel)

    def offline_wandb_runs(self) -> list[str]:
        """The offline runs in the experiment, as `wandb sync` takes them (path or URI)."""
        runs = [name for name in self.store.list_dirs(WANDB_DIR) if name.startswith("offline-")]
        return [self.store.uri_of(f"{WANDB_DIR}/{name}") for name in runs]

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
        return self.store.exists(TRIALS) or self.store.exists(TRIALS_EVENTS)

    def read_trials(self, columns: list[str] | None = None) -> pd.DataFrame:
        """The trials table, one row per trial: trials.csv with the newer rows of
        trials.events.csv in place of its own (an empty frame with `columns` when neither
        exists). A line the events file holds only part of (a writer killed mid-line) is not
        read: the file is whole up to its last newline."""
        # Events first: a writer that compacts between the two reads has put every event read
        # into the snapshot read after it, so nothing is missed (a row may show its older state).
        events = self._read_events()
        if not self.store.exists(TRIALS):
            snapshot = None
        else:
            text = self.store.read_text(TRIALS)  # whole lines: an ended row may be mid-append
            snapshot = pd.read_csv(io.StringIO(text[: text.rfind("\n") + 1] or text))
        if events is None or events.empty:
            if snapshot is None:
                return pd.DataFrame(columns=columns or [])
            return last_row_per_trial(snapshot, TRIAL_KEY)  # an ended row appended to it
        frame = events if snapshot is None else pd.concat([snapshot, events], ignore_index=True)
        return last_row_per_trial(frame, TRIAL_KEY)

    def _read_events(self) -> pd.DataFrame | None:
        if not self.store.exists(TRIALS_EVENTS):
            return None
        return whole_lines(self.store.read_bytes(TRIALS_EVENTS))

    def write_trials(self, frame: pd.DataFrame) -> None:
        """Replace trials.csv (atomically) by `frame`, which holds every row the events file
        had: that file is then removed (a crash between the two leaves its rows over the new
        trials.csv: the same rows, or a trial's state of a moment earlier)."""
        buffer = io.StringIO()
        frame.to_csv(buffer, index=False)
        self.store.write_text(TRIALS, buffer.getvalue())
        self.store.delete(TRIALS_EVENTS)

    def append_trials(self, rows: list[dict], columns: list[str], sync: bool = True) -> None:
        """Add rows (`columns` of each) to trials.events.csv, each one whole line
        (`read_trials` takes a trial's last row). Its cost does not grow with the table: a local
        file gets one write (flushed to the disk when `sync`); an object store, which cannot
        append, gets the events file again, which holds only the rows since `write_trials`."""
        header = not self.store.exists(TRIALS_EVENTS)
        data = csv_lines(rows, columns, header)
        if not self.store.append_bytes(TRIALS_EVENTS, data, sync=sync):
            earlier = b"" if header else self.store.read_bytes(TRIALS_EVENTS)
            self.store.write_bytes(TRIALS_EVENTS, earlier + data)

    def append_ended_trials(self, rows: list[dict], columns: list[str], sync: bool) -> bool:
        """Add ended trials' rows to trials.csv itself, one whole line each in `columns` (its
        header, in order), so that the file alone holds every ended trial after a crash; until
        trials.csv is next replaced it also holds such a trial's earlier row (a trial's last row
        is its own). False where the storage cannot append (an object store: the events file
        holds them, and the next replacement)."""
        return self.store.append_bytes(TRIALS, csv_lines(rows, columns, False), sync=sync)

    def read_split(self) -> pd.DataFrame | None:
        if not self.store.exists(SPLIT):
            return None
        return pd.read_csv(io.StringIO(self.store.read_text(SPLIT)), dtype=str)

    def write_split(self, split: dict[str, list[str]]) -> None:
        self.store.write_text(SPLIT, split_csv(split))

    def read_encoder_info(self) -> dict[str, dict]:
        """{network: its encoder's source and cost} ({} without a pretrain stage)."""
        return {
            network: json.loads(self.store.read_text(self.pretrain_info(network)))
            for network in self.pretrained_networks()
            if self.store.exists(self.pretrain_info(network))
        }

    def write_encoder_info(self, network: str, info: dict) -> None:
        self.store.write_text(self.pretrain_info(network), json.dumps(info, indent=1))

    def identity(self) -> str:
        """The experiment's random id (`create_identity`, when the experiment is made); '' for an
        experiment made before ids existed."""
        if self.store.exists(IDENTITY):
            return json.loads(self.store.read_text(IDENTITY))["id"]
        return ""

    def create_identity(self) -> str:
        identity = uuid.uuid4().hex[:12]
        self.store.write_text(IDENTITY, json.dumps({"id": identity}))
        return identity

    def read_data_fingerprint(self) -> dict | None:
        return json.loads(self.store.read_text(DATA)) if self.store.exists(DATA) else None

    def write_data_fingerprint(self, fingerprint: dict) -> None:
        self.store.write_text(DATA, json.dumps(fingerprint, indent=1))

    def has_result(self, stage: str, trial: str) -> bool:
        return self.store.exists(self.result(stage, trial))

    def read_result(self, stage: str, trial: str) -> dict:
        return json.loads(self.store.read_text(self.result(stage, trial)))

    def write_result(self, stage: str, trial: str, metrics: dict) -> None:
        self.store.write_text(self.result(stage, trial), json.dumps(metrics, indent=2))

    def write_per_image(self, stage: str, trial: str, rows: pd.DataFrame) -> None:
        buffer = io.StringIO()
        rows.to_csv(buffer, index=False)
        self.store.write_text(self.per_image(stage, trial), buffer.getvalue())

    def read_per_image(self, stage: str, trial: str) -> pd.DataFrame | None:
        """A trial's per-image test table, or None when it has none (an older experiment)."""
        if not self.store.exists(self.per_image(stage, trial)):
            return None
        return pd.read_csv(io.StringIO(self.store.read_text(self.per_image(stage, trial))))

    def delete_result(self, stage: str, trial: str) -> None:
        self.store.delete(self.result(stage, trial))

    def results(self, stage: str) -> list[dict]:
        """Every finished trial's metrics of one stage."""
        folder = self.result(stage, "*").rpartition("/")[0]
        return [
            json.loads(self.store.read_text(f"{folder}/{name}"))
            for name in self.store.list(folder)
            if name.endswith(".json")
        ]

    def read_explore_top(self) -> list[dict]:
        if not self.store.exists(EXPLORE_TOP):
            return []
        return yaml.safe_load(self.store.read_text(EXPLORE_TOP)) or []

    def write_explore_top(self, chosen: list[dict]) -> None:
        self.store.write_text(EXPLORE_TOP, yaml.safe_dump(chosen, sort_keys=False))

    def read_best_recipes(self) -> dict[str, dict]:
        if not self.store.exists(BEST_RECIPES):
            return {}
        return yaml.safe_load(self.store.read_text(BEST_RECIPES)) or {}

    def write_best_recipes(self, recipes: dict[str, dict]) -> None:
        self.store.write_text(BEST_RECIPES, yaml.safe_dump(recipes, sort_keys=True))


def drop_checkpoints(experiment: Experiment, stage: str, name: str, keep=()) -> None:
    """Delete a trial's checkpoints, but the files named in `keep`."""
    for file in CHECKPOINT_FILES:
        if file not in keep:
            experiment.store.delete(experiment.checkpoint(stage, name, file))
