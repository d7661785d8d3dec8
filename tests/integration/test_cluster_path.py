"""The cluster path on one CPU, whole studies on a private Ray cluster: a trial granted a GPU it
cannot use fails at once, and a W&B outage turns trials offline without failing them."""

from __future__ import annotations

import socket

import pandas as pd
import pytest
import torch
from helpers import TINY


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_trial_granted_a_gpu_it_cannot_use_fails_at_once(ray_cluster, studies, tmp_path):
    cluster = ray_cluster(head_cpus=0)
    cluster.add_node(num_cpus=1, num_gpus=1)  # a logical GPU torch cannot see
    cluster.wait_for_nodes()
    experiment = tmp_path / "runs" / "gpu"
    args = ["--storage", (tmp_path / "runs").as_uri(), "--name", "gpu", "--stages", "final"]
    args += ["--set", "search.strategies=[decoder_4]", "--set", "search.seeds=[0]"]
    args += ["--set", "search.resources={cpu: 1, gpu: 1}", "--set", "search.max_failures=0"]
    args += ["--set", "trial.epochs=1", *TINY]
    study = studies(cluster.address, args)
    assert study.wait(120) == 0, study.log_tail()
    row = pd.read_csv(experiment / "trials.csv").iloc[0]
    assert row.status == "failed" and pd.isna(row.epochs)  # not one epoch on the CPU
    assert "granted GPU(s)" in row.error and "sees no CUDA device" in row.error


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once the socket is closed


@pytest.mark.slow
def test_an_unreachable_wandb_turns_trials_offline_and_every_trial_ends_ok(
    ray_cluster, studies, tmp_path
):
    cluster = ray_cluster(head_cpus=2)
    experiment = tmp_path / "runs" / "outage"
    args = ["--storage", str(tmp_path / "runs"), "--name", "outage", "--stages", "final"]
    args += ["--set", "search.strategies=[decoder_4]", "--set", "search.seeds=[0,1]"]
    args += ["--set", "trial.epochs=1", "--set", "search.wandb_timeout_s=8", "--wandb", "online"]
    args += ["--set", "trial.image_size=32", "--set", "trial.batch_size=4"]
    study = studies(
        cluster.address,
        args,
        WANDB_BASE_URL=f"http://127.0.0.1:{closed_port()}",
        WANDB_API_KEY="0123456789abcdef0123456789abcdef01234567",  # a dummy: never checked
    )
    assert study.wait(240) == 0, study.log_tail()
    trials = pd.read_csv(experiment / "trials.csv")
    assert (trials.status == "ok").all(), trials[["trial_name", "status", "error"]]
    runs = sorted((experiment / "wandb").glob("offline-run-*"))
    assert len(runs) >= 2 and all(list(run.glob("run-*.wandb")) for run in runs)
    log = study.log_path.read_text()
    assert "W&B: " in log and "wandb sync" in log
