"""Resume and concurrency on a private Ray cluster: nothing repeated, nothing lost, nothing
silently wrong.

The tests run `search/run.py` as its own process against a private Ray cluster (the
`ray_cluster` fixture, or `module_ray_cluster`'s one for the tests that need a cluster but not a
fresh one) and read back what a user reads: the exit status, trials.csv, the result files."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from helpers import TINY, wait_for_log, wait_for_trials, wandb_run_ids

from search.experiment.folder import LEASE
from search.shared.spec import recipe_digest, recipe_params


def copy_sample(sample_dir: Path, target: Path) -> Path:
    shutil.copytree(sample_dir, target)
    return target


def same_size_other_pixels(png: Path) -> None:
    """Rewrite an image with 100 pixels inverted, at its old size and mtime (`cp -p` of an
    edited copy): what a stale copy on one worker looks like to size/mtime checks."""
    stat, original = png.stat(), png.read_bytes()
    image = cv2.imdecode(np.frombuffer(original, np.uint8), cv2.IMREAD_UNCHANGED)
    image[100:110, 100:110] = 255 - image[100:110, 100:110]
    encoded = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 9])[1].tobytes()
    assert len(encoded) <= len(original)
    png.write_bytes(encoded + b"\0" * (len(original) - len(encoded)))  # after IEND: ignored
    os.utime(png, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert png.stat().st_size == stat.st_size


def tune_results(experiment: Path) -> pd.DataFrame:
    rows = []
    for path in sorted((experiment / "results" / "tune").glob("*.json")):
        result = json.loads(path.read_text())
        rows.append(
            {
                "strategy": result["strategy"],
                "recipe": result["recipe"],
                "digest": recipe_digest(recipe_params(result["config"])),
            }
        )
    return pd.DataFrame(rows)


@pytest.mark.slow
def test_killed_tune_stage_resumes_on_a_fresh_home_from_a_file_uri(
    module_ray_cluster, studies, tmp_path
):
    cluster = module_ray_cluster(head_cpus=2)
    storage = (tmp_path / "runs").as_uri()  # the remote-storage code path, as s3:// takes
    experiment = tmp_path / "runs" / "tuned"
    budget = 3
    args = ["--storage", storage, "--name", "tuned", "--stages", "tune"]
    args += ["--set", "search.strategies=[decoder,decoder_4]", "--set", "search.seeds=[0]"]
    args += ["--set", f"search.tune.trials_per_strategy={budget}", "--set", "trial.epochs=4"]
    args += ["--set", "search.tune.asha=false", "--set", "search.max_concurrent_trials=1"]
    args += [*TINY, "--set", "trial.image_size=160", "--set", "trial.batch_size=1"]
    first_home = tmp_path / "home1"
    first_home.mkdir()
    first = studies(cluster.address, args, "first.log", HOME=str(first_home))

    def midway(trials: pd.DataFrame) -> bool:  # one proposal done, the next one training
        tune = trials[trials.stage == "tune"]
        return bool(
            (tune.status == "ok").sum() >= 1
            and (tune.epochs.fillna(0) >= 1).any()
            and (tune.status == "running").any()
        )

    wait_for_trials(first, experiment, midway, timeout=180)
    time.sleep(0.3)
    first.kill()  # SIGKILL: no clean-up, the lease left behind
    time.sleep(2)
    written = {p: p.stat().st_mtime_ns for p in (experiment / "results").rglob("*.json")}
    assert written and len(written) < 2 * budget
    shutil.rmtree(first_home)  # the first run's HOME is gone: nothing may live there

    # The dead driver's lease is taken over at once: it names a process here that has ended.
    assert (experiment / LEASE).exists()
    second_home = tmp_path / "home2"
    second_home.mkdir()
    resumed = studies(cluster.address, [*args, "--resume"], "resume.log", HOME=str(second_home))
    assert resumed.wait(300) == 0, resumed.log_tail()

    assert {p: p.stat().st_mtime_ns for p in written} == written  # none written twice
    results = tune_results(experiment)
    assert results.groupby("strategy").size().to_dict() == {"decoder": budget, "decoder_4": budget}
    assert (results[results.recipe == "paper"].groupby("strategy").size() == 1).all()
    assert not results.duplicated(["strategy", "digest"]).any()  # no proposal trained twice
    trials = pd.read_csv(experiment / "trials.csv")
    assert (trials.status == "ok").all(), trials[["trial_name", "status", "error"]]
    assert len(trials) == 2 * budget
    assert (experiment / "studies" / "tune.db").exists() and not (experiment / LEASE).exists()


@pytest.mark.slow
def test_a_second_driver_on_a_live_experiment_exits_2_naming_the_owner(
    module_ray_cluster, studies, tmp_path
):
    cluster = module_ray_cluster(head_cpus=2)
    experiment = tmp_path / "runs" / "busy"
    args = ["--storage", str(tmp_path / "runs"), "--name", "busy", "--stages", "final"]
    args += ["--set", "search.strategies=[decoder]", "--set", "search.seeds=[0,1]"]
    # 30 epochs: the first study must outlive the second driver's start-up (imports, data
    # check, Ray connection: ~5 s); at 6 epochs it finished in 10 s on a quiet machine.
    args += ["--set", "trial.epochs=30", *TINY, "--set", "trial.image_size=96"]
    first = studies(cluster.address, args)
    wait_for_trials(first, experiment, lambda t: (t.status == "running").any(), timeout=120)

    started = time.monotonic()
    second = studies(cluster.address, [*args, "--resume"], "second.log")
    assert second.wait(60) == 2
    assert time.monotonic() - started < 60
    log = second.log_path.read_text()
    assert "is being run by another driver" in log and "pid" in log

    assert first.wait(240) == 0, first.log_tail()
    trials = pd.read_csv(experiment / "trials.csv")
    assert sorted(trials.trial_name) == ["decoder__seed0", "decoder__seed1"]
    assert (trials.status == "ok").all(), trials[["trial_name", "status", "error"]]


@pytest.mark.slow
def test_changed_data_is_refused_on_resume_and_fails_a_worker_naming_the_files(
    module_ray_cluster, studies, tmp_path, sample_dir
):
    cluster = module_ray_cluster(head_cpus=2)
    data = copy_sample(sample_dir, tmp_path / "data")
    experiment = tmp_path / "runs" / "data"
    args = ["--storage", str(tmp_path / "runs"), "--name", "data", "--stages", "final"]
    args += ["--data", str(data), "--set", "search.strategies=[decoder]"]
    args += ["--set", "search.seeds=[0,1,2]", "--set", "search.max_failures=0"]
    args += ["--set", "trial.epochs=2", *TINY]
    first = studies(cluster.address, args)
    # The driver has fingerprinted the data; replace one image by another of the same size and
    # keep its mtime (`cp -p`), as a stale copy on a worker would look.
    wait_for_log(first, "FreezeFrame: experiment", timeout=120)
    images = sorted((data / "training_set").glob("*HC.png"))
    victim, other = images[0], images[1]
    same_size_other_pixels(victim)
    assert first.wait(240) == 0, first.log_tail()
    trials = pd.read_csv(experiment / "trials.csv")
    assert (trials.status == "failed").all(), trials[["trial_name", "status", "error"]]
    assert trials.error.str.contains(f"{victim.name}: content differs").all(), trials.error

    # Two images deleted before a resume: refused before Ray starts, the files named.
    victim.unlink()
    other.unlink()
    resumed = studies(cluster.address, [*args, "--resume"], "resume.log")
    assert resumed.wait(120) == 2
    log = resumed.log_path.read_text()
    assert victim.name in log and other.name in log


@pytest.mark.slow
def test_a_local_storage_path_on_a_multi_node_cluster_is_refused(ray_cluster, studies, tmp_path):
    cluster = ray_cluster(head_cpus=1)
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    storage = tmp_path / "runs"
    args = ["--storage", str(storage), "--name", "x", "--stages", "final", *TINY]
    study = studies(cluster.address, args)
    assert study.wait(120) == 2
    assert "is a local path, and this Ray cluster has 2 nodes" in study.log_path.read_text()
    assert not storage.exists()
    shared = studies(
        cluster.address,
        [*args, "--set", "search.shared_storage=true", "--set", "search.seeds=[0]"]
        + ["--set", "search.strategies=[decoder_4]", "--set", "trial.epochs=1"],
        "shared.log",
    )
    assert shared.wait(180) == 0, shared.log_tail()


@pytest.mark.slow
def test_trials_stopped_early_finish_their_wandb_run_and_clean_up(ray_cluster, studies, tmp_path):
    cluster = ray_cluster(head_cpus=1)
    experiment = tmp_path / "runs" / "asha"
    args = ["--storage", str(tmp_path / "runs"), "--name", "asha", "--stages", "tune"]
    args += ["--set", "search.strategies=[decoder_4]", "--set", "search.tune.trials_per_strategy=4"]
    args += ["--set", "search.tune.grace_period=1", "--set", "trial.epochs=4"]
    args += ["--wandb", "offline", "--set", "trial.image_size=32", "--set", "trial.batch_size=4"]
    study = studies(cluster.address, args)
    assert study.wait(400) == 0, study.log_tail()
    trials = pd.read_csv(experiment / "trials.csv")
    assert set(trials.status) <= {"ok", "stopped_early"}, trials[["trial_name", "status"]]
    assert (trials.status == "stopped_early").any(), "ASHA stopped no trial: nothing tested"
    assert "could not re-use actor" not in study.log_path.read_text().lower()
    run_ids = wandb_run_ids(experiment, trials.trial_name, stage="tune")
    for name, run_id in zip(trials.trial_name, run_ids, strict=True):  # stopped ones too
        (log,) = (experiment / "wandb").glob(f"offline-run-*/run-{run_id}.wandb")
        run = log.parent
        assert "all finished" in (run / "logs" / "debug-internal.log").read_text(), name
    scratch = next(Path(os.environ["TMPDIR"]).glob("freezeframe-*"))
    assert not list(scratch.glob("work-*"))  # every work folder removed
