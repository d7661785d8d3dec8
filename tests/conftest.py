"""Shared fixtures: the real HC18 folder (skipped when absent), synthetic sets, the shipped sample."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

# Ray must not ask for a token or phone home during tests; set before anything imports ray.
os.environ["RAY_AUTH_MODE"] = "disabled"
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
# Resized-array caches of this test session stay in a temporary folder, not in ~/.cache.
os.environ.setdefault("FREEZEFRAME_CACHE", tempfile.mkdtemp(prefix="freezeframe_test_cache_"))

REPO_ROOT = Path(__file__).resolve().parents[1]
# The shared data lives beside the repo: <workspace>/main (repo) and <workspace>/shared/data/hc18.
DEFAULT_HC18_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "hc18"


@pytest.fixture(scope="session")
def real_hc18_dir() -> Path:
    """The 799-image HC18 folder (FREEZEFRAME_HC18 or ../shared/data/hc18); skips if absent."""
    path = Path(os.environ.get("FREEZEFRAME_HC18", DEFAULT_HC18_DIR))
    if not (path / "training_set_pixel_size_and_HC.csv").is_file():
        pytest.skip(f"HC18 data not found at {path} (set FREEZEFRAME_HC18 to its folder)")
    return path


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory) -> Path:
    """24 synthetic HC18-like images, 800x540, filled masks (seed 0)."""
    from trainables.data.synthetic import generate_dataset

    return generate_dataset(tmp_path_factory.mktemp("synthetic"), 24, seed=0)


@pytest.fixture(scope="session")
def synthetic_outline_dir(tmp_path_factory) -> Path:
    """The first 8 images of `synthetic_dir`, with official-style outline annotations."""
    from trainables.data.synthetic import generate_dataset

    return generate_dataset(tmp_path_factory.mktemp("synthetic_outline"), 8, seed=0, outline=True)


@pytest.fixture
def sample_dir() -> Path:
    """The shipped sample of 12 real images (trainables/sample)."""
    from trainables.data.arrays import default_data_dir

    return default_data_dir()


@pytest.fixture
def ray_cluster(monkeypatch):
    """Start a private Ray cluster: `start(head_cpus, **head_args)`; shut down after the test.

    RAY_TMPDIR keeps its session files and its address file out of /tmp/ray, so a plain
    `ray.init()` elsewhere on this machine does not join it; TMPDIR sends what its trials leave
    in the temp folder (work folders of killed trials, downloaded weights) to the same place,
    removed afterwards. The folder is short because Ray's socket paths have a length limit.
    """
    from ray.cluster_utils import Cluster

    temp_dir = tempfile.mkdtemp(prefix="ffray", dir="/tmp")
    monkeypatch.setenv("RAY_TMPDIR", temp_dir)
    monkeypatch.setenv("TMPDIR", temp_dir)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    clusters = []

    def start(head_cpus: int, **head_args) -> Cluster:
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": head_cpus, **head_args})
        clusters.append(cluster)
        return cluster

    yield start
    for cluster in clusters:
        cluster.shutdown()
    shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture
def studies(tmp_path):
    """`start(address, args, log_name, **env)` -> a `helpers.Study` (search/run.py in its own process
    group); any still running are killed after the test."""
    from helpers import Study

    started: list[Study] = []

    def start(address: str, args: list[str], log_name: str = "study.log", **env) -> Study:
        started.append(Study(address, tmp_path, args, log_name, **env))
        return started[-1]

    yield start
    for study in started:
        study.kill()
