"""Helpers several test modules share: tiny study settings, a study run as its own process,
waiting on its trials table. (Fixtures live in conftest.py.)"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from trainables.core.config import TrialConfig

# The checkout (tests/ is at its root, whatever folder a test module sits in) and the tests' data.
REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
RUN_PY = REPO / "search" / "run.py"
# The paper strategies' trainable parameter counts (the paper's logs imply them; the
# segmentation head is frozen in all but the baseline).
PAPER_TRAINABLE = {
    "baseline": 31_037_633,
    "decoder": 4_404_928,
    "encoder": 2_223_872,
    "decoder_0": 3_761_152,
    "decoder_0_1": 4_240_896,
    "decoder_0_1_2": 4_365_568,
    "decoder_2_3_4": 164_032,
    "decoder_4": 6_976,
}
# A study small enough for a test: no W&B, 32 px images, batches of 4 (the shipped sample).
TINY = ["--wandb", "disabled", "--set", "trial.image_size=32", "--set", "trial.batch_size=4"]


class Study:
    """`python search/run.py ARGS` in its own process group, joined to one Ray cluster."""

    def __init__(self, address: str, workdir: Path, args: list[str], log_name: str, **env):
        env = {
            **os.environ,
            "RAY_ADDRESS": address,  # never any other Ray instance on this machine
            "RAY_AUTH_MODE": "disabled",
            "RAY_USAGE_STATS_ENABLED": "0",
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        self.log_path = workdir / log_name
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(RUN_PY), *args],
                cwd=workdir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: kill() reaches only it
            )

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"study still running after {timeout} s:\n{self.log_tail()}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def wait_for_log(study: Study, text: str, timeout: float) -> None:
    """Wait until the study's output holds `text`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in study.log_path.read_text(errors="replace"):
            return
        if study.proc.poll() is not None:
            pytest.fail(f"study exited ({study.proc.returncode}) early:\n{study.log_tail()}")
        time.sleep(0.1)
    study.kill()
    pytest.fail(f"{text!r} never appeared in {timeout} s:\n{study.log_tail()}")


def wait_for_trials(study: Study, experiment: Path, condition, timeout: float) -> pd.DataFrame:
    """Poll the trials table until `condition(trials)`; return that table. Read as the product
    reads it while a stage runs (`Experiment.read_trials`: trials.csv, replaced on a timer, with
    the newer rows of trials.events.csv), so a condition sees each trial's latest state."""
    from search.experiment.folder import Experiment

    table = Experiment.at(experiment)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if study.proc.poll() is not None:
            pytest.fail(f"study exited ({study.proc.returncode}) too early:\n{study.log_tail()}")
        if table.has_trials():
            trials = table.read_trials()
            if len(trials) and condition(trials):
                return trials
        time.sleep(0.1)
    study.kill()
    pytest.fail(f"trials.csv never reached the awaited state in {timeout} s:\n{study.log_tail()}")


def read_result(experiment: Path, stage: str, trial_name: str) -> dict:
    return json.loads((experiment / "results" / stage / f"{trial_name}.json").read_text())


def wandb_run_ids(experiment: Path, names, stage: str = "final") -> list[str]:
    """The W&B run ids the product gives these trials of the experiment (its group is its name)."""
    from search.shared.spec import WandbSettings
    from search.worker.wandb_link import wandb_run_id

    identity = json.loads((experiment / "experiment.json").read_text())["id"]
    settings = WandbSettings(
        mode="offline", project="freezeframe", group=experiment.name, experiment_id=identity
    )
    return [wandb_run_id(settings, stage, name) for name in names]


def trial_rows() -> pd.DataFrame:
    """Four trials.csv rows (tune and final; ok, running, failed) with start, end and wall times."""
    return pd.DataFrame(
        {
            "stage": ["tune", "tune", "final", "final"],
            "strategy": ["decoder", "decoder", "decoder", "baseline"],
            "status": ["ok", "running", "ok", "failed"],
            "started": [1000.0, 5000.0, 2000.0, 3000.0],
            "ended": [4600.0, None, 9200.0, 3360.0],
            "wall_s": [3000.0, None, 7000.0, None],
        }
    )


def copy_alone(tmp_path: Path) -> Path:
    """search/run.py by itself in a folder that holds no FreezeFrame source."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    shutil.copy(RUN_PY, folder / "run.py")
    return folder


def run_copy(folder: Path, args: list[str], python_flags=(), **env) -> subprocess.CompletedProcess:
    environ = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", **env}
    environ.pop("PYTHONPATH", None)  # the package must come from the installation
    return subprocess.run(
        [sys.executable, *python_flags, "run.py", *args],
        cwd=folder,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )


def decoder_64px(data_dir, cache_dir, **settings) -> TrialConfig:
    """The whole-decoder strategy from random weights at 64 px, on a synthetic set."""
    return TrialConfig(
        strategy="decoder",
        encoder_weights="none",
        data_dir=str(data_dir),
        cache_dir=str(cache_dir),
        image_size=64,
        **settings,
    )
