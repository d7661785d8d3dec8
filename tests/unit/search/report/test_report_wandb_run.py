"""The report's W&B run, read back from its offline run file: the report folder's files as a
`report` artifact, in the project an older experiment named with `search.wandb_project`."""

from __future__ import annotations

import shutil

from helpers import DATA
from wandb_records import read_runs

from search.report import build_report

EXP = (
    DATA / "report" / "exp_small"
)  # its config: `wandb: offline`, `wandb_project: freezeframe-tests`


def test_the_report_run_holds_the_report_folder_as_an_artifact(tmp_path, monkeypatch):
    import wandb

    wandb.teardown()  # W&B's process-wide settings of an earlier test (its folder) end here
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_root"))
    (tmp_path / "wandb_root").mkdir()
    experiment = tmp_path / "exp_small"
    shutil.copytree(EXP, experiment)
    out = tmp_path / "out"
    try:
        result = build_report(str(experiment), out_dir=str(out), wandb_mode="offline")
    finally:
        wandb.teardown()  # ends W&B's service: the run file is complete, later tests start fresh
    assert "W&B logging failed" not in result.text
    (run,) = read_runs(tmp_path / "wandb_root")
    assert run.job_type == "report" and run.config["metric"] == "test_dice"
    (artifact,) = [a for a in run.artifacts if a.type == "report"]
    assert artifact.name == "report-exp_small-test_dice"
    assert artifact.project == "freezeframe-tests"  # the legacy key still names the project
    written = sorted(path.name for path in out.iterdir() if path.is_file())
    assert sorted(entry.path for entry in artifact.manifest.contents) == written
    assert {"report.md", "report.html", "strategies.csv"} <= set(written)
