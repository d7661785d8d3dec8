"""The cluster path on a real autoscaler: cluster/local.yaml (Ray's fake multi-node provider: a
head without GPU, workers `{CPU: 1, GPU: 1}` added on demand, `min_workers: 0`), started as
README "On a cluster" says, and a driver on its head as `ray submit` runs one
(`RAY_ADDRESS=auto`). The tune and explore stages must keep every worker the autoscaler may add
busy, not run one trial at a time; a local --storage path is refused before any trial.

The cluster lives in its own RAY_TMPDIR and is stopped by ending its own processes (not `ray
stop`, which would end every Ray instance on the machine). It needs port 6379 (the fake
provider's workers join the head there).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
from helpers import REPO, TINY

# serial: port 6379, and the peak needs trials that outlast a fake node's start.
pytestmark = [pytest.mark.slow, pytest.mark.serial]

RAY = Path(sys.executable).with_name("ray")


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def belongs_to(process: psutil.Process, folder: str) -> bool:
    """A process of the cluster in `folder` (its RAY_TMPDIR): named on its command line, in its
    environment, or holding a file there (Ray's agents rename themselves and some get an
    environment of their own, but they log into the session folder)."""
    if any(folder in arg for arg in process.cmdline()):
        return True
    if process.environ().get("RAY_TMPDIR") == folder:
        return True
    return any(f.path.startswith(folder) for f in process.open_files())


def end_processes_of(folder: str) -> None:
    """End every process of the cluster in `folder`, and nothing else."""
    victims = []
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if process.pid != os.getpid() and belongs_to(process, folder):
                victims.append(process)
    for process in victims:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(victims, timeout=20)


@pytest.fixture
def local_cluster(monkeypatch):
    if not port_free(6379):
        pytest.skip("port 6379 is taken: the fake multi-node provider's workers join it there")
    folder = tempfile.mkdtemp(prefix="ffas", dir="/tmp")  # short: Ray's socket path limit
    env = {
        **os.environ,
        "RAY_TMPDIR": folder,
        "RAY_FAKE_CLUSTER": "1",
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
        "AUTOSCALER_UPDATE_INTERVAL_S": "1",
    }
    started = subprocess.run(
        [str(RAY), "start", "--head", "--num-cpus=1", "--autoscaling-config=cluster/local.yaml"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    try:
        assert started.returncode == 0, started.stdout[-2000:] + started.stderr[-2000:]
        monkeypatch.setenv("RAY_TMPDIR", folder)
        yield env
    finally:
        end_processes_of(folder)
        time.sleep(1)
        end_processes_of(folder)  # what the first pass's victims started while ending
        left = []
        for process in psutil.process_iter():
            with contextlib.suppress(psutil.Error):
                if process.pid != os.getpid() and belongs_to(process, folder):
                    left.append(process.pid)
        shutil.rmtree(folder, ignore_errors=True)
        assert not left, f"processes of the test's cluster still running: {left}"


def peak_concurrency(rows: pd.DataFrame) -> int:
    """Most trials running at one moment, from their start and end times."""
    events = sorted([(t, 1) for t in rows.started] + [(t, -1) for t in rows.ended])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def run_driver(env: dict, args: list[str], tmp_path: Path, log: str, timeout: float):
    """`python search/run.py ARGS` on the head, as `ray submit` runs it: RAY_ADDRESS=auto."""
    with open(tmp_path / log, "w") as out:
        done = subprocess.run(
            [sys.executable, str(REPO / "search" / "run.py"), *args],
            cwd=tmp_path,
            env={**env, "RAY_ADDRESS": "auto", "PYTHONUNBUFFERED": "1"},
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=timeout,
        )
    return done.returncode, (tmp_path / log).read_text()


def test_autoscaling_cluster_keeps_every_worker_busy_and_refuses_a_local_path(
    local_cluster, tmp_path
):
    storage = tmp_path / "runs"
    args = ["--storage", str(storage), "--name", "auto", "--stages", "tune,explore"]
    args += ["--set", "search.resources={cpu: 1, gpu: 1}", "--set", "trial.device=cpu"]
    args += ["--set", "search.strategies=[decoder_4]", "--set", "search.seeds=[0]"]
    args += ["--set", "search.tune.trials_per_strategy=9", "--set", "search.tune.asha=false"]
    args += ["--set", "search.explore.trials=6", "--set", "search.explore.population=3"]
    args += ["--set", "search.explore.asha=false"]
    # Trials long enough (10 s and more) that each outlasts a worker's start: the peak then shows
    # whether the stage asked for all 3 slots, not how fast the fake nodes came up.
    args += ["--set", "trial.epochs=30", *TINY, "--set", "trial.image_size=96"]

    # A local path on a cluster whose autoscaler may add nodes: refused before any trial.
    code, log = run_driver(local_cluster, args, tmp_path, "local.log", timeout=180)
    assert code == 2, log[-3000:]
    assert "is a local path, and this Ray cluster's autoscaler may add nodes" in log
    assert "s3://" in log and "search.shared_storage=true" in log
    assert not (storage / "auto" / "trials.csv").exists()

    # The same path said to be shared (one machine: it is): every worker kept busy.
    started = time.monotonic()
    shared = [*args, "--set", "search.shared_storage=true"]
    code, log = run_driver(local_cluster, shared, tmp_path, "shared.log", timeout=900)
    assert code == 0, log[-3000:]
    assert "up to 3 trials at once" in log and "may add ray.worker.gpu x3" in log
    trials = pd.read_csv(storage / "auto" / "trials.csv")
    assert (trials.status == "ok").all(), trials[["trial_name", "status", "error"]]
    for stage, planned in (("tune", 9), ("explore", 6)):
        rows = trials[trials.stage == stage]
        assert len(rows) == planned
        assert peak_concurrency(rows) >= 3, rows[["trial_name", "started", "ended"]]
    print(f"autoscaling study: {time.monotonic() - started:.0f} s")
