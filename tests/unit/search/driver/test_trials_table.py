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
    writes = []

    def flaky(frame):
        writes.append(len(frame))
        if len(writes) <= 3:
            raise OSError("bucket unreachable")

    monkeypatch.setattr(experiment, "write_trials", flaky)
    monkeypatch.setattr("search.driver.trials_table.WRITE_RETRY_S", 0.0)
    table.on_trial_recover(0, [], trial)  # three failed writes: logged, not raised
    assert "could not write the trials table (bucket unreachable)" in capsys.readouterr().err
    table.on_trial_recover(0, [], trial)
    assert table.rows["decoder__seed0"]["retries"] == 4 and len(writes) == 4


def _final_spec(tmp_path):
    from search.driver.config import load_config
    from search.driver.stages.common import StageRunner

    runner = StageRunner(load_config(None, []), Experiment(str(tmp_path), "exp"), "disabled")
    return runner.spec("final", strategy="decoder", seed=0)
