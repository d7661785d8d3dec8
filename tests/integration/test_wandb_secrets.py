"""The W&B API key never reaches disk: not the experiment folder (Ray's pickled state, trials.csv,
configs, checkpoints, W&B's offline files), not Ray's logs, not the home folder. The same study's
offline runs carry what a team filters and compares by: tags, the best validation Dice as the
summary, the per-image test table, the dataset artifact as the trials' input, the report
artifact."""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from helpers import REPO, read_result
from wandb_records import read_runs

MARKER = "ffmarkerkey0123456789abcdef0123456789abcd"  # 40 characters, like a real key


def files_containing(root: Path, needle: bytes) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            try:
                if needle in path.read_bytes():
                    hits.append(str(path))
            except OSError:
                pass
    return hits


@pytest.fixture
def isolated_env(tmp_path):
    # A short Ray temp dir (Unix socket paths are limited to ~107 characters).
    ray_tmp = Path(tempfile.mkdtemp(prefix="ffw_", dir="/tmp"))
    env = {
        **os.environ,
        "WANDB_API_KEY": MARKER,
        "HOME": str(tmp_path / "home"),
        "RAY_TMPDIR": str(ray_tmp),
        "FREEZEFRAME_CACHE": str(tmp_path / "cache"),
        "RAY_ADDRESS": "",
    }
    env.pop("RAY_ADDRESS")
    (tmp_path / "home").mkdir()
    yield env, ray_tmp
    subprocess.run(["rm", "-rf", str(ray_tmp)], check=False)


@pytest.mark.slow
def test_marker_key_is_written_nowhere(tmp_path, isolated_env):
    env, ray_tmp = isolated_env
    cmd = [sys.executable, str(REPO / "search" / "run.py"), "--storage", str(tmp_path / "runs")]
    cmd += ["--name", "secret", "--stages", "final", "--wandb", "offline", "--num-cpus", "2"]
    cmd += ["--set", "search.strategies=[decoder_4]", "--set", "search.seeds=[0]"]
    cmd += ["--set", "trial.image_size=32", "--set", "trial.epochs=1"]
    # The model artifact too (demo.yaml, the default config, deletes the checkpoints).
    cmd += [
        "--set",
        "search.wandb.log_checkpoints=true",
        "--set",
        "search.keep_best_checkpoints=true",
    ]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    exp = tmp_path / "runs" / "secret"
    assert (exp / "final" / "tuner.pkl").exists()  # Ray's pickled state is among what we search
    offline_runs = list(exp.rglob("offline-run-*"))
    assert offline_runs, "W&B offline run files were not written"
    leaks = files_containing(tmp_path, MARKER.encode()) + files_containing(ray_tmp, MARKER.encode())
    assert leaks == []
    assert MARKER not in result.stdout + result.stderr
    check_what_the_runs_carry(exp)


def check_what_the_runs_carry(exp: Path) -> None:
    """The study's offline runs: the driver's data run, the final trial's, the driver's
    models run, the report run."""
    from search.worker.wandb_artifacts import dataset_name
    from trainables.data.arrays import digest_of

    runs = {run.job_type: run for run in read_runs(exp)}
    assert sorted(runs) == ["data", "final", "models", "report"]
    trial, result = runs["final"], read_result(exp, "final", "decoder_4__seed0")
    assert {"final", "decoder_4", "encoder:mobilenet_v2", "mask:mobilenet_v2:dec4"} <= set(
        trial.tags
    )
    assert "recipe:paper" in trial.tags
    assert trial.summary["val_dice"] == {"max": pytest.approx(result["val"]["dice"])}
    assert trial.summary["test_dice"] == pytest.approx(result["test"]["dice"])
    assert trial.metrics["val_dice"].step_metric == "epoch"
    per_image = pd.read_csv(exp / "results" / "final" / "decoder_4__seed0.test_per_image.csv")
    assert trial.summary["test_per_image"]["nrows"] == len(per_image) > 0
    expected = dataset_name(digest_of(json.loads((exp / "data.json").read_text())))
    (logged,) = [a for a in runs["data"].artifacts if a.type == "dataset"]
    (used,) = [a for a in trial.artifacts if a.type == "dataset"]
    assert logged.name == used.name == expected  # logged once by the driver, used by the trial
    assert used.use_after_commit and not logged.use_after_commit
    assert used.digest == logged.digest  # one content: W&B keeps one version
    (report,) = [a for a in runs["report"].artifacts if a.type == "report"]
    assert "report.md" in {entry.path for entry in report.manifest.contents}
    (model,) = [a for a in runs["models"].artifacts if a.type == "model"]  # the best seed's
    assert model.name == "secret-decoder_4" and model.manifest.contents[0].path == "best.pt"
    assert json.loads(model.metadata)["run_id"] == trial.run_id


def test_key_shared_through_ray_memory_reaches_a_trial_and_no_file(tmp_path, isolated_env):
    env, ray_tmp = isolated_env
    script = f"""
import ray
from search.worker.wandb_link import fetch_key, share_key
ray.init(num_cpus=1, include_dashboard=False)
share_key({MARKER!r})
@ray.remote
def trial_side():
    return fetch_key()
assert ray.get(trial_side.remote()) == {MARKER!r}
ray.shutdown()
print("fetched")
"""
    env = {**env, "WANDB_API_KEY": ""}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert "fetched" in result.stdout, result.stderr[-3000:]
    assert files_containing(ray_tmp, MARKER.encode()) == []
    assert files_containing(tmp_path, MARKER.encode()) == []
