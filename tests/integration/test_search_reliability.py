"""The search survives what clusters do: a lost worker node (on either kind of storage), a killed
driver, a diverging trial.

Each test runs `search/run.py` as its own process against a private multi-node Ray cluster
(`ray.cluster_utils.Cluster`) that the test starts and always shuts down, and reads back what a
user reads: the exit status, `trials.csv`, the per-trial result JSONs. Tiny settings (the
shipped 12-image sample at 32 px, a few epochs of ~1 s) keep each test near a minute on 2 cores.
Faults are real, not injected: the test removes a node, SIGKILLs the driver, or lets Optuna
propose a learning rate whose first Adam step overflows the weights (a NaN loss).
"""

from __future__ import annotations

import os
import time

import pandas as pd
import pytest
import yaml
from helpers import TINY, read_result, wait_for_trials, wandb_run_ids


@pytest.mark.slow
@pytest.mark.parametrize("storage", ["uri", "shared_path"])
def test_lost_worker_node_retries_its_trial_on_the_other_node_from_its_checkpoint(
    storage, ray_cluster, studies, tmp_path
):
    """A two-node study loses a worker node: its trial runs again on the other node from its
    last checkpoint. Once on a file:// URI (the object-store code path, as s3:// takes), once on
    a local path said to be shared (`search.shared_storage=true`; one machine: it is)."""
    # Health checks every second: the lost node is declared dead in ~3 s, not Ray's ~30 s.
    health = {
        "health_check_initial_delay_ms": 0,
        "health_check_period_ms": 1000,
        "health_check_failure_threshold": 3,
    }
    # Head: the driver only. Trials ask for a (logical) GPU: they run only on these two nodes,
    # one trial on each, each node with its own temp folder (as two machines); they train on the
    # CPU on purpose (trial.device=cpu), as a granted GPU is otherwise required.
    cluster = ray_cluster(head_cpus=0, _system_config=health)
    node_tmp = [tmp_path / f"node{i}" for i in range(2)]
    gpu_nodes = []
    for folder in node_tmp:
        folder.mkdir()
        gpu_nodes.append(cluster.add_node(num_cpus=1, num_gpus=1, env_vars={"TMPDIR": str(folder)}))
    cluster.wait_for_nodes()
    epochs = 8
    experiment = tmp_path / "runs" / "lost_node"
    if storage == "uri":
        where = ["--storage", (tmp_path / "runs").as_uri()]
    else:
        where = ["--storage", str(tmp_path / "runs"), "--set", "search.shared_storage=true"]
    study = studies(
        cluster.address,
        [*where, "--name", "lost_node", "--stages", "final"]
        + ["--set", "search.strategies=[decoder]", "--set", "search.seeds=[0,1]"]
        + ["--set", "search.resources={cpu: 1, gpu: 1}", "--set", "search.max_failures=1"]
        + ["--set", "trial.device=cpu", "--set", f"trial.epochs={epochs}"]
        + ["--set", "search.keep_best_checkpoints=true"]  # the demo config drops them
        + ["--wandb", "offline", "--set", "trial.image_size=32", "--set", "trial.batch_size=4"],
    )

    # Both trials have checkpointed epoch 2 and neither has finished: lose a node, hard.
    before = wait_for_trials(
        study,
        experiment,
        lambda t: len(t) == 2 and (t.status == "running").all() and (t.epochs >= 2).all(),
        timeout=180,
    )
    cluster.remove_node(gpu_nodes[1], allow_graceful=False)

    assert study.wait(240) == 0, study.log_tail()
    trials = pd.read_csv(experiment / "trials.csv").set_index("trial_name")
    assert sorted(trials.index) == ["decoder__seed0", "decoder__seed1"]
    assert (trials.status == "ok").all(), trials[["status", "error"]]
    assert (trials.device == "cpu").all() and (trials.precision == "fp32").all()
    assert trials.test_dice.between(0, 1).all()
    assert trials.retries.fillna(0).sum() == 1
    retried = trials.index[trials.retries.fillna(0) == 1]
    assert len(retried) == 1, trials.retries  # only the lost node's trial ran again
    lost, kept = retried[0], (set(trials.index) - {retried[0]}).pop()

    # The retry (on the only GPU node left) continued after the last checkpointed epoch.
    seen = int(before.set_index("trial_name").epochs[lost])
    result = read_result(experiment, "final", lost)
    assert result["resumed_after_epoch"] >= seen >= 2
    assert [record["epoch"] for record in result["history"]] == list(range(1, epochs + 1))
    assert read_result(experiment, "final", kept)["resumed_after_epoch"] == 0

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


@pytest.mark.slow
def test_killed_driver_then_resume_runs_no_finished_trial_again(
    module_ray_cluster, studies, tmp_path
):
    cluster = module_ray_cluster(head_cpus=2)  # two trials at a time
    epochs = 5
    experiment = tmp_path / "runs" / "killed"
    # A file:// URI takes the object-store code path (as s3:// does); the pretrain stage makes
    # the final trials load its encoder from there. 192 px, batch 1: ~1 s epochs, so the kill
    # below can land well between two checkpoints.
    args = ["--storage", (tmp_path / "runs").as_uri(), "--name", "killed"]
    args += ["--stages", "pretrain,final", "--set", "search.strategies=[decoder]"]
    args += ["--set", "search.seeds=[0,1,2]", "--set", f"trial.epochs={epochs}"]
    args += ["--set", "search.pretrain.epochs=1", "--set", "search.pretrain.synthetic_images=16"]
    args += [*TINY, "--set", "trial.image_size=192", "--set", "trial.batch_size=1"]
    first = studies(cluster.address, args, "first.log")

    def mid_final_stage(trials: pd.DataFrame) -> bool:
        final = trials[trials.stage == "final"]
        # >= 2 epochs checkpointed and >= 2 to go, so it cannot finish before the kill lands
        midway = (final.status == "running") & final.epochs.between(2, epochs - 2)
        return bool((final.status == "ok").any() and midway.any())

    at_kill = wait_for_trials(first, experiment, mid_final_stage, timeout=150)
    # Kill mid-epoch, where a crash almost always lands. Tune snapshots its experiment state a
    # few milliseconds after each checkpoint; a kill inside that gap resumes one epoch earlier
    # (or, with num_to_keep=1, finds that checkpoint already deleted) - a Ray Tune limit this
    # test does not cover.
    time.sleep(0.4)
    first.kill()  # SIGKILL: no cleanup, no last experiment snapshot
    time.sleep(2)  # Ray ends the dead driver's trial actors; let any last write land first

    finished = {p: p.stat().st_mtime_ns for p in (experiment / "results").rglob("*.json")}
    final_at_kill = at_kill[at_kill.stage == "final"].set_index("trial_name")
    interrupted = [
        name
        for name, row in final_at_kill.iterrows()
        if row.status == "running"
        and row.epochs >= 1
        and not (experiment / "results" / "final" / f"{name}.json").exists()
    ]
    assert interrupted, final_at_kill
    assert len(finished) >= 2  # the pretrain trial and at least one final trial

    resumed = studies(cluster.address, [*args, "--resume"], "resume.log")
    assert resumed.wait(180) == 0, resumed.log_tail()

    # No finished trial ran again: their results were not rewritten.
    assert {p: p.stat().st_mtime_ns for p in finished} == finished
    trials = pd.read_csv(experiment / "trials.csv")
    assert sorted(trials.trial_name) == ["all__seed0"] + [f"decoder__seed{s}" for s in (0, 1, 2)]
    assert (trials.status == "ok").all(), trials[["trial_name", "status", "error"]]
    assert trials[trials.stage == "final"].test_dice.between(0, 1).all()
    for name in final_at_kill.index:
        result = read_result(experiment, "final", name)
        assert [record["epoch"] for record in result["history"]] == list(range(1, epochs + 1))
        if name in interrupted:  # continued after its last checkpoint, not from epoch 1
            assert result["resumed_after_epoch"] >= final_at_kill.epochs[name] >= 1
    assert "FreezeFrame report: killed" in resumed.log_path.read_text()


@pytest.mark.slow
def test_trial_with_nan_loss_is_retried_then_failed_while_the_study_goes_on(
    module_ray_cluster, studies, tmp_path
):
    cluster = module_ray_cluster(head_cpus=2)
    experiment = tmp_path / "runs" / "nan"
    # Two tune proposals: the paper's recipe (lr 1e-3) first, then Optuna's draw from
    # [1e29, 1e30] - one Adam step of that size overflows the weights, the loss turns NaN.
    args = ["--storage", str(tmp_path / "runs"), "--name", "nan", "--stages", "tune,final"]
    args += ["--set", "search.strategies=[decoder]", "--set", "search.seeds=[0]"]
    args += ["--set", "search.tune.trials_per_strategy=2", "--set", "search.tune.asha=false"]
    args += ["--set", "search.tune.lr_min=1e29", "--set", "search.tune.lr_max=1e30"]
    args += ["--set", "search.max_failures=2", "--set", "trial.epochs=2", *TINY]
    study = studies(cluster.address, args)
    assert study.wait(180) == 0, study.log_tail()

    trials = pd.read_csv(experiment / "trials.csv")
    tune = trials[trials.stage == "tune"]
    failed, ok = tune[tune.status == "failed"], tune[tune.status == "ok"]
    assert (len(failed), len(ok)) == (1, 1), tune[["trial_name", "status", "lr", "error"]]
    row = failed.iloc[0]
    assert row.lr >= 1e29
    assert row.retries == 2  # search.max_failures
    assert "FloatingPointError: training loss became" in row.error
    assert not (experiment / "results" / "tune" / f"{row.trial_name}.json").exists()

    # The other proposal finished, its recipe won, and the final stage trained with it.
    assert ok.iloc[0].lr == pytest.approx(1e-3) and 0 < ok.iloc[0].val_dice <= 1
    best = yaml.safe_load((experiment / "best_recipes.yaml").read_text())
    assert best["decoder"]["lr"] == pytest.approx(1e-3)
    final = trials[trials.stage == "final"]
    assert list(final.status) == ["ok"] and final.lr.iloc[0] == pytest.approx(1e-3)
    assert (experiment / "report" / "report.md").exists()
