"""The cluster descriptions in cluster/ hold what the search needs, checked offline.

cluster.yaml goes through Ray's own cluster-launcher validation: its JSON schema, then the
defaults and checks `ray up` applies before it first talks to AWS. rayjob.yaml has no KubeRay
schema available offline, so its tests check the fields that make the search run and the
agreement between the manifest, cluster.yaml and cluster/README.md.
"""

import copy
import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import ray
import ray.autoscaler
import yaml
from ray.autoscaler._private.command_runner import SSHCommandRunner
from ray.autoscaler._private.util import prepare_config, validate_config
from ray.runtime_env import RuntimeEnv

REPO = Path(__file__).resolve().parents[1]
CLUSTER_YAML = REPO / "cluster" / "cluster.yaml"
RAYJOB_YAML = REPO / "cluster" / "rayjob.yaml"
CLUSTER_README = REPO / "cluster" / "README.md"
# The cluster's Ray must match the Ray that launches it (pyproject pins 2.60.x): compare x.y.
RAY_MINOR = ".".join(ray.__version__.split(".")[:2])

# A value assigned to a key-like name, or a bare 40-hex token (the shape of a W&B API key).
SECRET_ASSIGNMENT = re.compile(r"(WANDB_API_KEY|api[_-]?key)\s*[=:]\s*[\"']?[\w-]{20,}", re.I)
HEX_TOKEN = re.compile(r"\b[0-9a-f]{40,}\b")


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


@pytest.fixture
def cluster() -> dict:
    return load_yaml(CLUSTER_YAML)


@pytest.fixture
def rayjob() -> dict:
    return load_yaml(RAYJOB_YAML)


def validate_like_ray_up(config: dict) -> dict:
    """Validate a launcher config as `ray up` does before contacting the cloud provider.

    Args:
        config: the parsed cluster YAML (left unchanged).

    Returns:
        The config with Ray's provider defaults filled in and setup commands merged.
    """
    schema_path = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
    jsonschema.validate(config, json.loads(schema_path.read_text()))
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def worker_type(config: dict) -> dict:
    """The one node type that is not the head."""
    workers = [
        node_type
        for name, node_type in config["available_node_types"].items()
        if name != config["head_node_type"]
    ]
    assert len(workers) == 1, f"expected one worker type, found {len(workers)}"
    return workers[0]


def image_tag(image: str) -> str:
    repository, _, tag = image.partition(":")
    assert repository == "rayproject/ray", image
    return tag


def secret_findings(text: str) -> list[str]:
    return SECRET_ASSIGNMENT.findall(text) + HEX_TOKEN.findall(text)


# --- cluster.yaml: Ray's validator -------------------------------------------------------------


def test_cluster_yaml_passes_rays_validator(cluster):
    prepared = validate_like_ray_up(cluster)
    # prepare_config gives the head no workers of its own and keeps the GPU type's 0..N range.
    assert prepared["available_node_types"][cluster["head_node_type"]]["max_workers"] == 0
    assert worker_type(prepared)["min_workers"] == 0


def _rename(mapping: dict, old: str, new: str) -> None:
    mapping[new] = mapping.pop(old)


BREAKAGES = {
    "misspelled top-level key": lambda c: _rename(c, "setup_commands", "setup_comands"),
    "misspelled node-type key": lambda c: _rename(worker_type(c), "min_workers", "min_worker"),
    "GPU count as text": lambda c: worker_type(c)["resources"].update(GPU="1"),
    "head type not declared": lambda c: c.update(head_node_type="ray.head.gpu"),
    "more minimum workers than the cap": lambda c: worker_type(c).update(min_workers=99),
}


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_rays_validator_rejects_a_broken_copy(cluster, breakage):
    BREAKAGES[breakage](cluster)
    with pytest.raises((jsonschema.ValidationError, ValueError)):
        validate_like_ray_up(cluster)


# --- cluster.yaml: what the search needs ---------------------------------------------------------


def test_cluster_has_cpu_head_and_t4_workers_scaling_from_zero(cluster):
    head = cluster["available_node_types"][cluster["head_node_type"]]
    assert head["node_config"]["InstanceType"] == "m5.xlarge"
    assert "GPU" not in head["resources"]
    worker = worker_type(cluster)
    assert worker["node_config"]["InstanceType"] == "g4dn.xlarge"
    # configs/paper.yaml asks {gpu: 1, cpu: 4} per trial: exactly one trial per worker.
    assert worker["resources"] == {"CPU": 4, "GPU": 1}
    assert worker["min_workers"] == 0
    assert 1 <= worker["max_workers"] <= cluster["max_workers"]


def test_paper_trials_fit_one_worker_and_need_a_gpu(cluster):
    # The autoscaler adds a T4 worker only for trials that ask for a GPU, and a trial asking
    # for more than a worker has would wait forever.
    from search.config import load_config

    requested = load_config(REPO / "configs" / "paper.yaml").search.resources
    worker = worker_type(cluster)["resources"]
    assert 0 < requested.gpu <= worker["GPU"]
    assert requested.cpu <= worker["CPU"]


def test_head_keeps_the_boto3_install_the_autoscaler_needs(cluster):
    # Declaring head_setup_commands would replace Ray's default one, which installs boto3.
    prepared = validate_like_ray_up(cluster)
    assert any("boto3" in command for command in prepared["head_setup_commands"])


def test_cluster_image_is_rays_gpu_image_for_the_installed_ray(cluster):
    tag = image_tag(cluster["docker"]["image"])
    assert tag.startswith(f"{RAY_MINOR}.")
    assert tag.endswith("-gpu")
    assert "py311" in tag


def test_project_is_mounted_and_installed_on_every_node(cluster):
    assert cluster["file_mounts"]["~/freezeframe"] == "."
    prepared = validate_like_ray_up(cluster)
    install = re.compile(r"^pip install (-e )?~/freezeframe$")
    for role in ("head_setup_commands", "worker_setup_commands"):
        assert any(install.match(command) for command in prepared[role]), role


@pytest.mark.skipif(shutil.which("rsync") is None, reason="rsync is not installed")
def test_rsync_uploads_the_project_without_local_clutter(cluster, tmp_path):
    source = tmp_path / "checkout"
    kept = ["pyproject.toml", "search/run.py", "trainables/runs_table.py", "configs/paper.yaml"]
    dropped_dirs = [".venv", ".git", "runs", "wandb", "search/__pycache__", "freezeframe.egg-info"]
    for relative in kept + [f"{directory}/file" for directory in dropped_dirs]:
        (source / relative).parent.mkdir(parents=True, exist_ok=True)
        (source / relative).write_text("x")
    # The same --exclude/--filter arguments Ray passes to rsync for file_mounts.
    filter_args = SSHCommandRunner._create_rsync_filter_args(None, cluster)
    listing = subprocess.run(
        ["rsync", "-a", "--dry-run", "--out-format=%n", *filter_args, f"{source}/", "dest/"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert set(kept) <= set(listing)
    uploaded_clutter = [p for p in listing if p.startswith(tuple(f"{d}/" for d in dropped_dirs))]
    assert uploaded_clutter == []


def test_relative_config_path_resolves_on_the_head(cluster, tmp_path):
    # `ray submit` runs `python ~/run.py --config configs/paper.yaml` from the home directory.
    home = tmp_path / "home"
    home.mkdir()
    (home / "freezeframe").symlink_to(REPO)  # where file_mounts puts the project
    links = [command for command in cluster["setup_commands"] if command.startswith("ln ")]
    assert links, "no setup command links the project's configs into the home directory"
    for command in links:
        subprocess.run(["bash", "-c", command], env={**os.environ, "HOME": str(home)}, check=True)
    assert (home / "configs").resolve() == (REPO / "configs").resolve()


def test_documented_commands_name_files_in_the_repository(rayjob):
    # `ray submit cluster/cluster.yaml search/run.py -- --config configs/paper.yaml` and the
    # RayJob entrypoint both need these paths inside the project.
    argv = shlex.split(rayjob["spec"]["entrypoint"])
    config_path = argv[argv.index("--config") + 1]
    assert (REPO / argv[1]).is_file(), argv[1]
    assert (REPO / config_path).is_file(), config_path


# --- rayjob.yaml -------------------------------------------------------------------------------


def containers(group: dict) -> list[dict]:
    return group["template"]["spec"]["containers"]


def test_rayjob_runs_the_search_entrypoint(rayjob):
    assert rayjob["apiVersion"] == "ray.io/v1"
    assert rayjob["kind"] == "RayJob"
    spec = rayjob["spec"]
    argv = shlex.split(spec["entrypoint"])
    assert argv[:2] == ["python", "search/run.py"]
    assert argv[argv.index("--config") + 1] == "configs/paper.yaml"
    # Trials on several pods need storage every pod can reach: a bucket or a mounted volume.
    assert argv[argv.index("--storage") + 1].startswith(("s3://", "gs://", "/mnt/"))
    assert spec["shutdownAfterJobFinishes"] is True


def test_rayjob_runtime_env_is_accepted_by_ray(rayjob):
    runtime_env = yaml.safe_load(rayjob["spec"]["runtimeEnvYAML"])
    RuntimeEnv(**runtime_env)  # Ray's own validation of working_dir and pip
    assert runtime_env["working_dir"].startswith(("https://", "s3://", "gs://"))
    assert runtime_env["working_dir"].endswith(".zip")


def test_rayjob_has_cpu_head_and_autoscaled_gpu_workers(rayjob, cluster):
    cluster_spec = rayjob["spec"]["rayClusterSpec"]
    assert cluster_spec["enableInTreeAutoscaling"] is True
    (head,) = containers(cluster_spec["headGroupSpec"])
    assert "nvidia.com/gpu" not in head["resources"].get("limits", {})
    (group,) = cluster_spec["workerGroupSpecs"]
    assert group["minReplicas"] == 0
    assert group["maxReplicas"] >= 1
    (worker,) = containers(group)
    assert int(worker["resources"]["limits"]["nvidia.com/gpu"]) == 1
    # The same worker as on AWS, so one {gpu: 1, cpu: 4} trial fits one pod.
    ray_cpus = int(group["rayStartParams"].get("num-cpus", worker["resources"]["limits"]["cpu"]))
    assert ray_cpus == worker_type(cluster)["resources"]["CPU"]


def test_rayjob_ray_version_matches_installed_ray_and_images(rayjob):
    cluster_spec = rayjob["spec"]["rayClusterSpec"]
    assert cluster_spec["rayVersion"].startswith(f"{RAY_MINOR}.")
    groups = [cluster_spec["headGroupSpec"], *cluster_spec["workerGroupSpecs"]]
    for container in (c for group in groups for c in containers(group)):
        assert image_tag(container["image"]).startswith(cluster_spec["rayVersion"])


def test_rayjob_data_mount_is_where_the_entrypoint_reads(rayjob):
    argv = shlex.split(rayjob["spec"]["entrypoint"])
    data_dir = argv[argv.index("--data") + 1]
    cluster_spec = rayjob["spec"]["rayClusterSpec"]
    for group in [cluster_spec["headGroupSpec"], *cluster_spec["workerGroupSpecs"]]:
        for container in containers(group):
            mounts = [m["mountPath"] for m in container.get("volumeMounts", [])]
            assert data_dir in mounts, container["name"]


def test_rayjob_reads_wandb_key_from_the_secret_the_readme_creates(rayjob):
    created = re.search(
        r"kubectl create secret generic (\S+) --from-literal=([\w-]+)=", CLUSTER_README.read_text()
    )
    assert created, "cluster/README.md does not show how to create the W&B secret"
    cluster_spec = rayjob["spec"]["rayClusterSpec"]
    # The driver runs on the head; search/run.py hands the key on to the trials.
    (head,) = containers(cluster_spec["headGroupSpec"])
    (entry,) = [e for e in head["env"] if e["name"] == "WANDB_API_KEY"]
    reference = entry["valueFrom"]["secretKeyRef"]
    assert (reference["name"], reference["key"]) == created.groups()
    for group in [cluster_spec["headGroupSpec"], *cluster_spec["workerGroupSpecs"]]:
        for container in containers(group):
            inlined = [e for e in container.get("env", []) if "value" in e and "KEY" in e["name"]]
            assert inlined == [], container["name"]


# --- no secrets ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [CLUSTER_YAML, RAYJOB_YAML, CLUSTER_README], ids=lambda p: p.name)
def test_cluster_files_hold_no_secret(path):
    assert secret_findings(path.read_text()) == []


def test_secret_check_catches_a_written_key():
    leaked = CLUSTER_YAML.read_text() + "\nsetup_commands: [export WANDB_API_KEY=" + "ab12" * 10
    assert secret_findings(leaked)
