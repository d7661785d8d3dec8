"""`trials.csv`: one row per trial, rewritten as trials report, start, fail and finish.

A Ray Tune callback on the driver keeps the rows; each change rewrites the CSV atomically, so
the file is usable (by the report, by a person) while a search runs. It also prints one
progress line per finished trial.
"""

from __future__ import annotations

import io
import math
import time

import pandas as pd
from ray import tune

from search.storage import ExperimentStore
from search.trainable import (
    CHECKPOINT_FILES,
    FINISHED,
    RECIPE_KEYS,
    resolve_trial_values,
    trial_name,
)

COLUMNS = [
    "stage",
    "strategy",
    "seed",
    "trial_name",
    "status",
    "trainable_params",
    "total_params",
    "epochs",
    "wall_s",
    "val_dice",
    "test_dice",
    "test_iou",
    "test_pixel_accuracy",
    "test_hd_mm",
    "test_hc_abs_diff_mm",
    *RECIPE_KEYS,
    "recipe",
    "retries",
    "error",
]


def read_trials(store: ExperimentStore) -> pd.DataFrame:
    if not store.exists("trials.csv"):
        return pd.DataFrame(columns=COLUMNS)
    return pd.read_csv(io.StringIO(store.read_text("trials.csv")))


class TrialsTable(tune.Callback):
    """Keeps `<experiment>/trials.csv` current for one stage.

    Args:
        store: the experiment folder.
        stage: pretrain, tune or final.
        paper_recipe: the paper's recipe, to mark the tune proposal that replays it.
        expected: how many trials the stage will run (for the progress count).
    """

    def __init__(self, store: ExperimentStore, stage: str, paper_recipe: dict, expected: int):
        self.store, self.stage = store, stage
        self.paper_recipe, self.expected = paper_recipe, expected
        self.rows: dict[str, dict] = {}
        self.started = time.monotonic()

    def setup(self, **info) -> None:
        # Rows of other stages (and of this one, on resume) come from the file on disk.
        self.others = read_trials(self.store)
        mine = self.others["stage"] == self.stage
        self.rows = {r["trial_name"]: dict(r) for r in self.others[mine].to_dict("records")}
        self.others = self.others[~mine]
        self.started = time.monotonic()

    def _row(self, trial) -> dict:
        values = resolve_trial_values(trial.config)
        name = trial_name(self.stage, values["strategy"], values["seed"], trial.trial_id)
        row = self.rows.setdefault(name, {c: None for c in COLUMNS})
        row.update(stage=self.stage, strategy=values["strategy"], seed=values["seed"])
        row.update(trial_name=name, **{k: values.get(k) for k in RECIPE_KEYS})
        row["recipe"] = self._recipe(trial.config, values)
        return row

    def _recipe(self, config: dict, values: dict) -> str:
        """'paper' / 'optuna' for tune proposals; 'paper' / 'best' in the final stage."""
        if self.stage != "tune":
            return config.get("recipe_source", {}).get(values["strategy"], "paper")
        same = all(
            math.isclose(values.get(key, math.nan), value, rel_tol=1e-9)
            if isinstance(value, float)
            else values.get(key) == value
            for key, value in self.paper_recipe.items()
        )
        return "paper" if same else "optuna"

    def _write(self) -> None:
        frame = pd.DataFrame(list(self.rows.values()), columns=COLUMNS)
        frame = pd.concat([self.others, frame], ignore_index=True) if len(self.others) else frame
        buffer = io.StringIO()
        frame.to_csv(buffer, index=False)
        self.store.write_text("trials.csv", buffer.getvalue())

    def on_trial_start(self, iteration, trials, trial, **info):
        row = self._row(trial)
        row["status"] = "running"
        self._write()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        row = self._row(trial)
        row["status"] = "running"
        row["epochs"] = result.get("epoch", row.get("epochs"))
        if "val_dice" in result:
            row["val_dice"] = result["val_dice"]
        if result.get(FINISHED):
            for key in COLUMNS:
                if key in result:
                    row[key] = result[key]
        self._write()

    def on_trial_recover(self, iteration, trials, trial, **info):
        row = self._row(trial)
        row["retries"] = (row.get("retries") or 0) + 1
        row["error"] = _error_text(trial)
        self._write()

    def on_trial_complete(self, iteration, trials, trial, **info):
        row = self._row(trial)
        finished = trial.last_result.get(FINISHED, False)
        row["status"] = "ok" if finished else "stopped_early"
        if finished:
            row["error"] = None
        else:  # a trial ASHA stopped will not resume: its checkpoints are dead weight
            for file in CHECKPOINT_FILES:
                self.store.delete(f"checkpoints/{self.stage}/{row['trial_name']}/{file}")
        self._write()
        self._progress(row)

    def on_trial_error(self, iteration, trials, trial, **info):
        row = self._row(trial)
        row["status"] = "failed"
        row["error"] = _error_text(trial)
        self._write()
        self._progress(row)

    def _progress(self, row: dict) -> None:
        done = sum(r["status"] in ("ok", "failed", "stopped_early") for r in self.rows.values())
        metric = "test_dice" if self.stage == "final" else "val_dice"
        value = row.get(metric)
        shown = f"{metric} {value:.4f}" if isinstance(value, float) and value == value else ""
        elapsed = time.monotonic() - self.started
        print(
            f"[{self.stage} {done}/{self.expected} {elapsed:5.0f}s] {row['trial_name']}: "
            f"{row['status']} {shown}",
            flush=True,
        )


def _error_text(trial) -> str | None:
    path = getattr(trial, "error_file", None)
    try:
        if path:
            with open(path) as f:
                lines = [line for line in f.read().strip().splitlines() if line.strip()]
            return lines[-1][:500] if lines else None
    except OSError:
        pass
    return "trial failed (see Ray's error file)"
