"""Shared fixtures: the real HC18 folder (skipped when absent), synthetic sets, the shipped sample,
one tiny trained trial, a private Ray cluster, studies as their own processes, the umask.

This file sits at the root of tests/ so that every test below it (tests/unit/..., tests/integration/)
gets these fixtures; pytest's `pythonpath = ["tests"]` makes `helpers` and `scoring` importable
from any of them."""

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
# Under pytest-xdist (`make check`: one worker per core) each worker gets its share of the cores
# for torch's and OpenCV's thread pools, and so do the processes its tests start: N workers each
# spinning one OpenMP thread per core oversubscribe the machine many times over (a test that
# took 80 s alone took 600 s so). Set before anything imports torch; a test or trial that sets
# its own thread count (trial.num_threads) still does.
_XDIST_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _XDIST_WORKERS > 1:
    _share = str(max(1, (os.cpu_count() or 1) // _XDIST_WORKERS))
    for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENCV_FOR_THREADS_NUM"):
        os.environ.setdefault(_name, _share)

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


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> tuple[Path, dict]:
    """One tiny trial on the shipped sample with ellipse post-processing and flip TTA (the smoke
    config at 32 px, 1 epoch); read-only for the tests that use it."""
    from trainables.data.arrays import default_data_dir
    from trainables.nets.resolve import load_trial_config
    from trainables.training.run import run_trial

    settings = ["image_size=32", "epochs=1", "max_images=None", "postprocess=ellipse", "tta=true"]
    out = tmp_path_factory.mktemp("trial") / "decoder__seed0"
    cfg = load_trial_config(
        REPO_ROOT / "configs" / "smoke.yaml", [f"data_dir={default_data_dir()}", *settings]
    )
    return out, run_trial(cfg, out, verbose=False)


@pytest.fixture
def umask():
    """Set the process umask for one test; restored after it."""
    old = os.umask(0o022)
    os.umask(old)
    yield lambda mask: os.umask(mask)
    os.umask(old)


def _private_ray_env(monkeypatch) -> str:
    """Point Ray and the trials' temp files at a new short folder (returned): see `ray_cluster`."""
    temp_dir = tempfile.mkdtemp(prefix="ffray", dir="/tmp")
    monkeypatch.setenv("RAY_TMPDIR", temp_dir)
    monkeypatch.setenv("TMPDIR", temp_dir)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    return temp_dir


@pytest.fixture
def ray_cluster(monkeypatch):
    """Start a private Ray cluster: `start(head_cpus, **head_args)`; shut down after the test.

    RAY_TMPDIR keeps its session files and its address file out of /tmp/ray, so a plain
    `ray.init()` elsewhere on this machine does not join it; TMPDIR sends what its trials leave
    in the temp folder (work folders of killed trials, downloaded weights) to the same place,
    removed afterwards. The folder is short because Ray's socket paths have a length limit.
    """
    from ray.cluster_utils import Cluster

    temp_dir = _private_ray_env(monkeypatch)
    clusters = []

    def start(head_cpus: int, **head_args) -> Cluster:
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": head_cpus, **head_args})
        clusters.append(cluster)
        return cluster

    yield start
    for cluster in clusters:
        cluster.shutdown()
    shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def module_ray_cluster():
    """`ray_cluster` for tests that need a cluster to run their studies on, not a fresh one:
    `start(head_cpus, **head_args)` starts a private cluster the first time, and returns that
    same cluster to the module's later tests that ask for the same one; all are shut down after
    the module's last test (a cluster costs ~3 s to start and stop on 2 cores).

    Only for clusters of a head alone whose tests neither change the cluster (nodes added or
    removed) nor look at what earlier trials left in its temp folder: each study is its own Ray
    job with its own experiment folder, and `studies` kills any study still running after its
    test."""
    from ray.cluster_utils import Cluster

    with pytest.MonkeyPatch.context() as monkeypatch:
        temp_dir = _private_ray_env(monkeypatch)
        clusters: dict[tuple, Cluster] = {}

        def start(head_cpus: int, **head_args) -> Cluster:
            key = (head_cpus, repr(sorted(head_args.items())))
            if key not in clusters:
                clusters[key] = Cluster(
                    initialize_head=True, head_node_args={"num_cpus": head_cpus, **head_args}
                )
            return clusters[key]

        yield start
        for cluster in clusters.values():
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
