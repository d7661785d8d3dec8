"""`trials.csv`: a trial's raw and post-processed metrics land in the table and its per-image
table in the experiment folder; retries are counted across resumes, storage errors survived."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest

from search.driver.config import load_config
from search.driver.stages.common import StageRunner
from search.driver.trials_table import COLUMNS, TrialsTable
from search.experiment.folder import Experiment
from search.shared.spec import FINISHED, summary_metrics
from search.worker.files import TrialFiles
from trainables.core.files import TEST_PER_IMAGE


def test_raw_and_postprocessed_metrics_land_in_trials_csv_and_the_experiment(trained, tmp_path):
    out, metrics = trained
    cfg = load_config(None, ["search.strategies=[decoder]", "search.seeds=[0]"])
    experiment = Experiment(str(tmp_path), "exp")
    spec = StageRunner(cfg, experiment, "disabled").spec("final", strategy="decoder", seed=0)
    result = {**summary_metrics(metrics), FINISHED: True, "epoch": 1}
    trial = SimpleNamespace(config={"spec": spec.to_param()}, trial_id="t0", last_result=result)
    table = TrialsTable(experiment, "final", expected=1)
    table.setup()
    table.on_trial_result(0, [], trial, result)
    table.on_trial_complete(0, [], trial)
    row = experiment.read_trials().iloc[0]
    for key in ("test_dice", "test_raw_dice", "test_hc_fail_rate", "test_raw_hc_fail_rate"):
        assert key in COLUMNS
        assert row[key] == pytest.approx(metrics["test"][key.removeprefix("test_")])
    assert row["test_hd95_mm"] == pytest.approx(metrics["test"]["hd95_mm"])

    # The worker stores the per-image table beside the result, in the experiment folder.
    files = TrialFiles(spec)
    files.workdir.mkdir(parents=True)
    (files.workdir / TEST_PER_IMAGE).write_bytes((out / TEST_PER_IMAGE).read_bytes())
    files.finish(dict(metrics))
    stored = experiment.read_per_image("final", spec.name)
    assert stored is not None and len(stored) == metrics["split_sizes"]["test"]
    assert (tmp_path / "exp" / "results" / "final" / f"{spec.name}.test_per_image.csv").is_file()
    assert experiment.read_per_image("final", "nobody__seed0") is None
    files.cleanup()


def test_the_trials_table_counts_retries_across_resumes_and_survives_storage_errors(
    tmp_path, monkeypatch, capsys
):
    from types import SimpleNamespace

    from search.driver.trials_table import COLUMNS, TrialsTable

    experiment = Experiment(str(tmp_path), "exp")
    row = dict.fromkeys(COLUMNS) | {"stage": "final", "trial_name": "decoder__seed0"}
    experiment.write_trials(pd.DataFrame([row | {"retries": 2, "status": "failed"}]))
    table = TrialsTable(experiment, "final", expected=1)
    table.setup()
    spec = {"spec": _final_spec(tmp_path).to_param()}
    trial = SimpleNamespace(config=spec, error_file=None)
    appends = []

    def flaky(rows, columns, sync=True):
        appends.append(len(rows))
        if len(appends) <= 3:
            raise OSError("bucket unreachable")
        append(rows, columns, sync)

    append = experiment.append_trials
    monkeypatch.setattr(experiment, "append_trials", flaky)
    monkeypatch.setattr("search.driver.trials_table.WRITE_RETRY_S", 0.0)
    table.on_trial_recover(0, [], trial)  # three failed appends: logged, not raised
    assert "could not write the trials table (bucket unreachable)" in capsys.readouterr().err
    # ... and the whole table replaced trials.csv instead: the change is not lost.
    assert pd.read_csv(tmp_path / "exp" / "trials.csv").retries.tolist() == [3]
    table.on_trial_recover(0, [], trial)
    assert table.rows["decoder__seed0"]["retries"] == 4 and len(appends) == 4
    assert experiment.read_trials().retries.tolist() == [4]


def _final_spec(tmp_path):
    from search.driver.config import load_config
    from search.driver.stages.common import StageRunner

    runner = StageRunner(load_config(None, []), Experiment(str(tmp_path), "exp"), "disabled")
    return runner.spec("final", strategy="decoder", seed=0)


# -- crashes: trials.csv and its events file -------------------------------------------------

WRITER = """
import sys
from types import SimpleNamespace

import search.driver.trials_table as trials_table
from search.driver.config import load_config
from search.driver.stages.common import StageRunner
from search.experiment.folder import Experiment
from search.shared.spec import FINISHED

trials_table.SNAPSHOT_MIN_S = 0.02  # trials.csv replaced often: kills land in both writes
storage, first = sys.argv[1], int(sys.argv[2])
experiment = Experiment(storage, "exp")
runner = StageRunner(load_config(None, []), experiment, "disabled")
table = trials_table.TrialsTable(experiment, "final", expected=10**6)
table.setup()
print("ready", flush=True)
for seed in range(first, first + 100_000):
    spec = runner.spec("final", strategy="decoder", seed=seed)
    result = {"val_dice": 0.5, "test_dice": seed / 1e6, "epoch": 1, FINISHED: True}
    trial = SimpleNamespace(config={"spec": spec.to_param()}, last_result=result)
    table.on_trial_start(0, [], trial)
    table.on_trial_result(0, [], trial, {"epoch": 1, "val_dice": 0.4})
    table.on_trial_result(0, [], trial, result)
    table.on_trial_complete(0, [], trial)
    print("finished", spec.name, flush=True)  # its row is on disk: the call returned
"""


@pytest.mark.slow  # four writer processes, each importing torch (~10-40 s on a busy 2-core CPU)
def test_a_driver_killed_at_random_moments_loses_no_finished_trial(tmp_path):
    """SIGKILL a process writing the table at random moments, four times, resuming in between:
    every trial it finished is read back `ok` by the product's reader AND is in trials.csv
    alone, read by pandas (a trial's last row there is `ok`; until the file is next replaced
    an ended trial's earlier row may stand above it), and each restart folds the events in."""
    import os
    import random
    import signal
    import subprocess
    import sys
    import threading
    import time

    from helpers import REPO

    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    experiment = Experiment(str(tmp_path), "exp")
    finished: set[str] = set()
    chance = random.Random(26)
    for round_ in range(4):
        writer = subprocess.Popen(
            [sys.executable, str(script), str(tmp_path), str(round_ * 10_000)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        lines: list[str] = []
        reader = threading.Thread(target=lines.extend, args=(writer.stdout,), daemon=True)
        reader.start()
        deadline = time.monotonic() + 120
        # The first trial builds its network to count parameters (seconds): kills land after.
        while not any(line.startswith("finished") for line in lines):
            assert time.monotonic() < deadline, "the writer never finished a trial"
            time.sleep(0.05)
        time.sleep(chance.uniform(0.0, 1.0))
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        reader.join(10)
        # Whole lines only: a kill can cut the last print short (a pipe's buffer flushes when
        # full, mid-line), leaving "finished" without its name, or with part of it.
        done = [line for line in lines if line.startswith("finished") and line.endswith("\n")]
        finished |= {line.split()[1] for line in done}

        rows = experiment.read_trials()
        assert not rows.duplicated(["stage", "trial_name"]).any()
        ok = set(rows.loc[rows.status == "ok", "trial_name"])
        assert finished <= ok, sorted(finished - ok)[:5]
        snapshot = pd.read_csv(tmp_path / "exp" / "trials.csv")  # a person's pandas
        assert list(snapshot.columns) == COLUMNS
        last = snapshot.drop_duplicates(["stage", "trial_name"], keep="last")
        ok_alone = set(last.loc[last.status == "ok", "trial_name"])
        assert finished <= ok_alone, sorted(finished - ok_alone)[:5]
    # A restart (here: a new table's setup) folds the events into trials.csv: pandas alone
    # then sees every finished trial, one row each.
    TrialsTable(experiment, "final", expected=1).setup()
    assert not (tmp_path / "exp" / "trials.events.csv").exists()
    snapshot = pd.read_csv(tmp_path / "exp" / "trials.csv")
    assert finished <= set(snapshot.loc[snapshot.status == "ok", "trial_name"])
    assert not snapshot.duplicated(["stage", "trial_name"]).any()


def test_an_events_file_cut_at_any_byte_of_its_last_write_reads_back_whole_rows(tmp_path):
    """A write cut short (a kill or a power cut mid-line) at every byte offset: the product's
    reader keeps every whole line and drops the cut one; trials.csv parses with pandas."""
    experiment = Experiment(str(tmp_path), "exp")
    base = dict.fromkeys(COLUMNS) | {"stage": "final", "epochs": 3}
    ended = base | {"status": "ok", "val_dice": 0.75}
    experiment.write_trials(pd.DataFrame([ended | {"trial_name": "a__seed0"}], columns=COLUMNS))
    running = base | {"trial_name": "b__seed0", "status": "running"}
    experiment.append_trials([running], COLUMNS)
    # The last write: b finishes, with an error text full of CSV's special characters.
    last = running | {"status": "failed", "error": 'ValueError: "x", y\nz', "test_dice": 0.5}
    events = tmp_path / "exp" / "trials.events.csv"
    before = events.read_bytes()
    experiment.append_trials([last], COLUMNS)
    after = events.read_bytes()
    assert after.startswith(before) and after.endswith(b"\n")
    for cut in range(len(before), len(after) + 1):
        events.write_bytes(after[:cut])
        rows = experiment.read_trials().set_index("trial_name")
        assert rows.loc["a__seed0", "status"] == "ok"  # the snapshot's row
        whole = cut == len(after)
        assert rows.loc["b__seed0", "status"] == ("failed" if whole else "running"), cut
        if whole:
            assert rows.loc["b__seed0", "error"] == 'ValueError: "x", y z'  # one line
            assert rows.loc["b__seed0", "test_dice"] == 0.5
        assert pd.read_csv(tmp_path / "exp" / "trials.csv").trial_name.tolist() == ["a__seed0"]


def test_the_merged_table_keeps_each_trials_first_place_and_last_row(tmp_path):
    experiment = Experiment(str(tmp_path), "exp")
    row = dict.fromkeys(COLUMNS)

    def rows(*items):
        return [row | dict(zip(("stage", "trial_name", "status"), i, strict=True)) for i in items]

    experiment.write_trials(
        pd.DataFrame(rows(("tune", "x", "ok"), ("final", "x", "running")), columns=COLUMNS)
    )
    experiment.append_trials(rows(("final", "y", "running")), COLUMNS)
    experiment.append_trials(rows(("final", "x", "ok"), ("final", "y", "failed")), COLUMNS)
    merged = experiment.read_trials()
    assert merged[["stage", "trial_name", "status"]].values.tolist() == [
        ["tune", "x", "ok"],
        ["final", "x", "ok"],
        ["final", "y", "failed"],
    ]
    # Writing the merged table is the compaction: one file again, the same rows.
    experiment.write_trials(merged)
    assert not (tmp_path / "exp" / "trials.events.csv").exists()
    pd.testing.assert_frame_equal(experiment.read_trials(), merged)


def test_an_ended_trial_is_in_trials_csv_alone_before_the_file_is_next_replaced(
    tmp_path, monkeypatch
):
    """trials.csv is replaced on a timer, but an ended trial's row is appended to it at once:
    read by pandas alone (no events file), it holds every ended trial, its last row its own."""
    import search.driver.trials_table as trials_table

    experiment = Experiment(str(tmp_path), "exp")
    runner = StageRunner(load_config(None, []), experiment, "disabled")
    table = TrialsTable(experiment, "final", expected=3)
    table.setup()
    monkeypatch.setattr(trials_table, "SNAPSHOT_MIN_S", 3600.0)  # no replacement due
    table.snapshot_every_s = 3600.0
    csv = tmp_path / "exp" / "trials.csv"
    for seed, ending in enumerate(["complete", "error", "complete"]):
        spec = runner.spec("final", strategy="decoder", seed=seed)
        result = {"val_dice": 0.5, "test_dice": 0.6 + seed / 100, "epoch": 1, FINISHED: True}
        trial = SimpleNamespace(config={"spec": spec.to_param()}, last_result=result)
        table.on_trial_start(0, [], trial)
        if ending == "complete":
            table.on_trial_result(0, [], trial, result)
            table.on_trial_complete(0, [], trial)
        else:
            table.on_trial_error(0, [], trial)
        alone = pd.read_csv(csv).drop_duplicates(["stage", "trial_name"], keep="last")
        status = alone.set_index("trial_name")["status"]
        assert status[spec.name] == ("ok" if ending == "complete" else "failed"), seed
        assert len(status) == seed + 1
    assert (tmp_path / "exp" / "trials.events.csv").exists()  # not replaced since the first end
    assert experiment.read_trials()["test_dice"].tolist()[-1] == pytest.approx(0.62)
