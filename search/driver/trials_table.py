"""`trials.csv`: one row per trial, kept as trials report, start, fail and finish.

A Ray Tune callback on the driver keeps the rows. A change appends the trial's row, one whole line,
to the experiment's events file (flushed to disk when a trial starts, ends or is retried), so its
cost does not grow with the table; on a timer, and when the stage ends, the whole table replaces
trials.csv atomically and the events file starts again (`Experiment.write_trials`). A trial that
ends also appends its final row to trials.csv itself (one line, in the file's own column order). A
crash at any moment leaves a trials.csv that parses and holds every ended trial (a trial's last row
is its own), and an events file whose whole lines hold every change since: `Experiment.read_trials`
merges the two (the report, a resumed stage), and the next stage or resume compacts them. Rows of
every stage (pretrain, tune, explore, final) share one table; running trials carry their epochs so
far. The live progress display (`progress.StageProgress`) reads the same rows.
"""

from __future__ import annotations

import re
import sys
import time

import pandas as pd
from ray import tune

from search.driver.progress import StageProgress
from search.experiment.folder import Experiment, drop_checkpoints
from search.shared.spec import FINISHED, RECIPE_KEYS, TrialSpec, summary_metrics
from trainables.nets.strategies import get_strategy

WRITE_ATTEMPTS, WRITE_RETRY_S = 3, 1.0
# trials.csv is replaced at most every SNAPSHOT_MIN_S, and less often as it grows: never more
# than SNAPSHOT_SHARE of the driver's time (1,000 rows take ~10 ms to write: one a second;
# 10,000 rows ~0.3 s: one per 15 s).
SNAPSHOT_MIN_S, SNAPSHOT_SHARE = 1.0, 0.02
# An event is one write to the OS (a killed driver loses none); a trial's start, end or retry is
# also flushed to the disk against a power cut, at most once per SYNC_EVERY_S (4-50 ms each
# on a busy disk; the next flush, or trials.csv's next replacement, covers the ones between).
SYNC_EVERY_S = 1.0
SETTLED = ("ok", "stopped_early", "failed")  # statuses a trial ends in
COLUMNS = [
    "stage",
    "strategy",
    "encoder",  # the network: an smp encoder, or unet64 (the from-scratch baseline)
    "bn_update_frozen",
    "seed",
    "train_fraction",  # the share of the training split trained on (search.train_fractions)
    "train_images",  # how many images that was (known when the trial finishes)
    "trial_name",
    "status",
    "trainable_params",
    "total_params",
    "epochs",
    "wall_s",
    "device",
    "precision",
    "val_dice",
    "test_dice",
    "test_iou",
    "test_pixel_accuracy",
    "test_hd_mm",
    "test_hc_abs_diff_mm",
    # Clinical figures of the trial's output (after its postprocess), then of the raw masks.
    "test_dice_median",
    "test_hd95_mm",
    "test_hc_abs_diff_mm_median",
    "test_hc_abs_diff_mm_p90",
    "test_hc_signed_diff_mm",
    "test_hc_fail_rate",
    "test_raw_dice",
    "test_raw_dice_median",
    "test_raw_hd95_mm",
    "test_raw_hc_abs_diff_mm",
    "test_raw_hc_abs_diff_mm_median",
    "test_raw_hc_fail_rate",
    *RECIPE_KEYS,
    "recipe",
    "retries",
    "error",
    "started",  # UNIX time of the last attempt's start, and of the trial's end
    "ended",
]


class TrialsTable(tune.Callback):
    """Keeps the experiment's trials table current for one stage.

    Args:
        experiment: the experiment folder.
        stage: pretrain, tune or final.
        expected: how many trials the stage will run (for the progress count).
    """

    def __init__(
        self,
        experiment: Experiment,
        stage: str,
        expected: int,
        epochs: int = 0,
        progress_s: float = 10.0,
    ):
        self.experiment, self.stage, self.expected = experiment, stage, expected
        self.epochs, self.progress_s = epochs, progress_s
        self.rows: dict[str, dict] = {}
        self.started = time.monotonic()
        self.progress: StageProgress | None = None
        self.done = 0  # this stage's settled rows (the progress lines' count)
        self.pending = False  # rows changed since trials.csv was last replaced
        self.snapshot_at, self.snapshot_every_s = time.monotonic(), SNAPSHOT_MIN_S
        self.synced_at = 0.0
        self.header: list[str] | None = None  # trials.csv's columns, as last written here

    def setup(self, **info) -> None:
        # Rows of other stages (and of this one, on resume) come from the experiment.
        self.others = self.experiment.read_trials(COLUMNS)
        mine = self.others["stage"] == self.stage
        self.rows = {r["trial_name"]: dict(r) for r in self.others[mine].to_dict("records")}
        self.others = self.others[~mine]
        self.started = time.monotonic()
        self.progress = StageProgress(self.stage, self.expected, self.epochs, self.progress_s)
        self.done = sum(r["status"] in SETTLED for r in self.rows.values())
        self.progress.finished_before = self.done
        if self.experiment.has_trials():  # one file again (an earlier run's events folded in)
            self.pending = True
            self._snapshot()

    def _row(self, trial) -> dict:
        spec = TrialSpec.from_tune_config(trial.config)
        name = spec.name
        row = self.rows.setdefault(name, {c: None for c in COLUMNS})
        row.update(stage=self.stage, strategy=spec.trial.strategy, seed=spec.trial.seed)
        row["train_fraction"] = spec.trial.train_fraction
        strategy = get_strategy(spec.trial.strategy)
        row["encoder"] = strategy.network
        bn = spec.trial.bn_update_frozen
        row["bn_update_frozen"] = strategy.bn_update_frozen if bn is None else bn
        if row.get("trainable_params") is None or pd.isna(row["trainable_params"]):
            # Known before training (a trial stopped early never reports them).
            row["trainable_params"], row["total_params"] = strategy.counts(spec.trial.train_head)
        row.update(trial_name=name, recipe=spec.recipe)
        row.update({k: getattr(spec.trial, k) for k in RECIPE_KEYS})
        return row

    def _write(self, row: dict, sync: bool = True, ended: bool = False) -> None:
        """Record a changed row: appended to the events file (and to trials.csv when the trial
        `ended`), then trials.csv replaced if its timer is due. A storage error is retried, then
        logged, never fatal: every row is kept here, and the next change replaces trials.csv
        with all of them."""
        self.pending = True
        now = time.monotonic()
        sync = sync and now - self.synced_at >= SYNC_EVERY_S
        if not self._retried(lambda: self.experiment.append_trials([row], COLUMNS, sync)):
            return self._snapshot()
        self.synced_at = now if sync else self.synced_at
        if ended and self.header is None:  # no trials.csv of this table yet: write it whole
            return self._snapshot()
        if ended:
            line = {column: row.get(column) for column in self.header}
            if not self._retried(
                lambda: self.experiment.append_ended_trials([line], self.header, sync)
            ):
                return self._snapshot()
        self._snapshot(due_only=True)

    def _snapshot(self, due_only: bool = False) -> None:
        """Replace trials.csv by the whole table (when rows changed; if `due_only`, only once
        its timer is due)."""
        now = time.monotonic()
        if not self.pending or (due_only and now - self.snapshot_at < self.snapshot_every_s):
            return
        frame = pd.DataFrame(list(self.rows.values()), columns=COLUMNS)
        frame = pd.concat([self.others, frame], ignore_index=True) if len(self.others) else frame
        if self._retried(lambda: self.experiment.write_trials(frame)):
            self.pending, self.header = False, list(frame.columns)
        cost = time.monotonic() - now
        self.snapshot_at = time.monotonic()
        self.snapshot_every_s = max(SNAPSHOT_MIN_S, cost / SNAPSHOT_SHARE)

    @staticmethod
    def _retried(write) -> bool:
        for attempt in range(WRITE_ATTEMPTS):
            try:
                write()
                return True
            except OSError as err:
                if attempt + 1 == WRITE_ATTEMPTS:
                    print(
                        f"warning: could not write the trials table ({err}); "
                        "the next change tries again",
                        file=sys.stderr,
                        flush=True,
                    )
                else:
                    time.sleep(WRITE_RETRY_S * (attempt + 1))
        return False

    def _settle(self, row: dict, status: str) -> None:
        """Set a row's status, keeping the count of settled rows."""
        self.done += (status in SETTLED) - (row["status"] in SETTLED)
        row["status"] = status

    def on_trial_start(self, iteration, trials, trial, **info):
        row = self._row(trial)
        if row["status"] in SETTLED and self.progress:
            self.progress.finished_before -= 1  # an earlier run's trial runs again
        self._settle(row, "running")
        row["started"], row["ended"] = round(time.time(), 3), None
        self._write(row)
        if self.progress:
            self.progress.start(
                row["trial_name"], TrialSpec.from_tune_config(trial.config).trial.epochs
            )

    def on_trial_result(self, iteration, trials, trial, result, **info):
        row = self._row(trial)
        self._settle(row, "running")
        row["epochs"] = result.get("epoch", row.get("epochs"))
        if "val_dice" in result:
            row["val_dice"] = result["val_dice"]
        if result.get(FINISHED):
            for key in COLUMNS:
                if key in result:
                    row[key] = result[key]
        # An epoch's progress is not worth a disk flush; a trial's final figures are.
        self._write(row, sync=bool(result.get(FINISHED)))
        if self.progress:
            self.progress.result(
                row["trial_name"],
                result.get("epoch"),
                result.get("val_dice"),
                result.get("epochs_total"),
            )

    def on_trial_recover(self, iteration, trials, trial, **info):
        row = self._row(trial)
        earlier = row.get("retries")  # NaN in rows read back from an earlier run's table
        row["retries"] = (0 if earlier is None or pd.isna(earlier) else int(earlier)) + 1
        row["error"] = _error_text(trial)
        self._write(row)
        if self.progress:  # pending again until its retry starts
            self.progress.running.pop(row["trial_name"], None)

    def on_trial_complete(self, iteration, trials, trial, **info):
        row = self._row(trial)
        finished = trial.last_result.get(FINISHED, False)
        self._settle(row, "ok" if finished else "stopped_early")
        if finished:
            row["error"] = None
        else:  # a trial ASHA stopped will not resume: its checkpoints are dead weight
            drop_checkpoints(self.experiment, self.stage, row["trial_name"])
        row["ended"] = round(time.time(), 3)
        self._write(row, ended=True)
        self._progress(row)

    def on_trial_error(self, iteration, trials, trial, **info):
        row = self._row(trial)
        self._settle(row, "failed")
        row["error"] = _error_text(trial)
        row["ended"] = round(time.time(), 3)
        self._write(row, ended=True)
        self._progress(row)

    def on_step_end(self, iteration, trials, **info):
        self._snapshot(due_only=True)
        if self.progress:
            self.progress.tick()

    def on_experiment_end(self, trials, **info):
        self._snapshot()
        if self.progress:
            self.progress.close()

    def _progress(self, row: dict) -> None:
        if self.progress:
            epochs = row.get("epochs")
            self.progress.end(row["trial_name"], 0 if pd.isna(epochs) else int(epochs or 0))
        done = self.done
        metric = "test_dice" if self.stage == "final" else "val_dice"
        value = row.get(metric)
        shown = f"{metric} {value:.4f}" if isinstance(value, float) and value == value else ""
        elapsed = time.monotonic() - self.started
        print(
            f"[{self.stage} {done}/{self.expected} {elapsed:5.0f}s] {row['trial_name']}: "
            f"{row['status']} {shown}",
            flush=True,
        )


def mark_interrupted(experiment: Experiment, stage: str) -> None:
    """Mark `interrupted` the stage's rows a stopped study left running or pending: they are
    not settled, so `--resume` trains them on from their last checkpoint."""
    rows = experiment.read_trials(COLUMNS)
    if rows.empty:
        return
    open_rows = (rows["stage"] == stage) & ~rows["status"].isin(SETTLED)
    if open_rows.any():
        rows.loc[open_rows, "status"] = "interrupted"
        experiment.write_trials(rows)


def settle_finished(experiment: Experiment, stage: str) -> None:
    """Mark `ok`, with their figures, the rows a killed driver left `running` whose trial had
    stored its result (a resumed stage trains them no more, so no callback would)."""
    rows = experiment.read_trials(COLUMNS)
    if rows.empty:
        return
    open_rows = (rows["stage"] == stage) & ~rows["status"].isin(SETTLED)
    settled = False
    for index in rows.index[open_rows]:
        name = rows.at[index, "trial_name"]
        if experiment.has_result(stage, name):
            summary = summary_metrics(experiment.read_result(stage, name))
            for key in COLUMNS:
                if key in summary:
                    rows[key] = rows[key].astype(object)
                    rows.at[index, key] = summary[key]
            rows.at[index, "status"], settled = "ok", True
    if settled:
        experiment.write_trials(rows)


def _error_text(trial) -> str | None:
    """The exception of a failed trial, from Ray's error file: its last `SomeError: ...` line
    and the lines of its message that follow (one line, at most 1,000 characters)."""
    path = getattr(trial, "error_file", None)
    try:
        if path:
            with open(path) as f:
                lines = [line for line in f.read().strip().splitlines() if line.strip()]
            heads = [i for i, line in enumerate(lines) if _EXCEPTION_LINE.match(line)]
            if heads:
                return " ".join(line.strip() for line in lines[heads[-1] :])[:1000]
            return lines[-1][:1000] if lines else None
    except OSError:
        pass
    return "trial failed (see Ray's error file)"


_EXCEPTION_LINE = re.compile(r"^[\w.]*(Error|Exception|Interrupt|Exit)\b.*?:")
