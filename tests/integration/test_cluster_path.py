"""The cluster path on one CPU: precision per device, no silent CPU fallback, W&B outages
survived, a multi-node study on remote-style storage that loses a worker node."""

from __future__ import annotations

import os
import socket

import pandas as pd
import pytest
import torch
from helpers import TINY, wait_for_trials, wandb_run_ids

from search import cli
from trainables.core.config import TrialConfig
from trainables.core.device import resolve_precision
from trainables.train import main as train_main
from trainables.training.loop import train_one_epoch
from trainables.training.setup import build_training

CUDA = torch.device("cuda")


@pytest.mark.parametrize(
    ("amp", "device", "capability", "precision"),
    [
        ("auto", CUDA, (7, 5), "fp16"),  # T4: no native bf16 -> fp16 + GradScaler
        ("auto", CUDA, (7, 0), "fp16"),  # V100
        ("auto", CUDA, (8, 0), "bf16"),  # A100
        ("auto", CUDA, (9, 0), "bf16"),  # H100
        ("auto", torch.device("cpu"), None, "fp32"),
        ("off", CUDA, (9, 0), "fp32"),
        ("fp16", CUDA, (9, 0), "fp16"),  # forced, as the T4 path on any GPU
        ("bf16", CUDA, (7, 5), "bf16"),
    ],
)
def test_amp_auto_picks_the_precision_the_gpu_computes_natively(amp, device, capability, precision):
    assert resolve_precision(amp, device, capability) == precision


def test_old_boolean_amp_configs_still_load():
    assert TrialConfig(amp=True).amp == "auto" and TrialConfig(amp=False).amp == "off"


def test_an_fp16_step_with_a_grad_scaler_runs_on_the_cpu_and_lowers_the_loss(sample_dir):
    cfg = TrialConfig(
        encoder_weights="none", image_size=32, batch_size=4, amp="fp16", bn_momentum=None,
        lr=1e-3, num_threads=1,
    )  # fmt: skip
    training = build_training(cfg, verbose=False)
    assert training.precision == "fp16" and training.scaler is not None
    assert training.autocast_dtype == torch.float16
    losses = [train_one_epoch(training, epoch)["train_loss"] for epoch in range(1, 5)]
    assert losses[-1] < losses[0], losses
    assert training.scaler.get_scale() > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_device_cuda_without_cuda_fails_before_training_naming_cuda(tmp_path, capsys):
    code = train_main(["--set", "device=cuda", "--out", str(tmp_path / "trial")])
    assert code == 2
    err = capsys.readouterr().err
    assert "device='cuda'" in err and "sees no CUDA device" in err
    assert not (tmp_path / "trial").exists()
    # The search refuses a CUDA trial that Ray would give no GPU, before Ray starts.
    code = cli.main(["--storage", str(tmp_path / "runs"), "--set", "trial.device=cuda"])
    assert (
        code == 2 and "trial.device=cuda, but search.resources.gpu is 0" in capsys.readouterr().err
    )


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


def test_wandb_online_without_a_login_fails_before_ray(tmp_path, monkeypatch, capsys):
    import search.driver.study

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.setattr(search.driver.study, "connect_ray", lambda *a: pytest.fail("Ray started"))
    code = cli.main(["--storage", str(tmp_path / "runs"), "--wandb", "online"])
    assert code == 2 and "not logged in to W&B" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_multi_node_study_on_uri_storage_survives_a_lost_worker(ray_cluster, studies, tmp_path):
    # Head: the driver only. Two worker nodes, each with its own temp folder (as two machines).
    health = {"health_check_period_ms": 1000, "health_check_failure_threshold": 3}
    cluster = ray_cluster(head_cpus=0, _system_config=health)
    node_tmp = [tmp_path / f"node{i}" for i in range(2)]
    nodes = []
    for folder in node_tmp:
        folder.mkdir()
        nodes.append(cluster.add_node(num_cpus=1, env_vars={"TMPDIR": str(folder)}))
    cluster.wait_for_nodes()
    experiment = tmp_path / "runs" / "multi"
    epochs = 8
    args = ["--storage", (tmp_path / "runs").as_uri(), "--name", "multi", "--stages", "final"]
    args += ["--set", "search.strategies=[decoder]", "--set", "search.seeds=[0,1]"]
    args += ["--set", f"trial.epochs={epochs}", "--set", "search.max_failures=1"]
    args += ["--set", "search.keep_best_checkpoints=true"]  # the demo config drops them
    args += ["--wandb", "offline", "--set", "trial.image_size=32", "--set", "trial.batch_size=4"]
    study = studies(cluster.address, args)
    wait_for_trials(
        study,
        experiment,
        lambda t: len(t) == 2 and (t.status == "running").all() and (t.epochs >= 2).all(),
        timeout=180,
    )
    cluster.remove_node(nodes[1], allow_graceful=False)
    assert study.wait(240) == 0, study.log_tail()

    trials = pd.read_csv(experiment / "trials.csv").set_index("trial_name")
    assert (trials.status == "ok").all(), trials[["status", "error"]]
    assert (trials.device == "cpu").all() and (trials.precision == "fp32").all()
    assert trials.retries.fillna(0).sum() == 1
    for name in trials.index:  # in storage: the result, the model; not the resume state
        assert (experiment / "results" / "final" / f"{name}.json").exists()
        assert (experiment / "checkpoints" / "final" / name / "best.pt").exists()
        assert not (experiment / "checkpoints" / "final" / name / "last.pt").exists()
    runs = list((experiment / "wandb").glob("offline-run-*"))
    assert {
        log.stem.removeprefix("run-") for run in runs for log in run.glob("run-*.wandb")
    } >= set(wandb_run_ids(experiment, trials.index))
    # The surviving node's scratch folder holds no work folder: every trial cleaned up.
    scratch = node_tmp[0] / f"freezeframe-{os.getuid()}"
    assert not list(scratch.glob("work-*")) and (scratch.stat().st_mode & 0o777) == 0o700
