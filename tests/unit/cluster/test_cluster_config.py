"""The cluster descriptions in cluster/ hold what the search needs, checked offline.

cluster.yaml goes through Ray's own cluster-launcher validation: its JSON schema, then the
defaults and checks `ray up` applies before it first talks to AWS. rayjob.yaml has no KubeRay
schema available offline, so its tests check the fields that make the search run and keep it
closed, and the agreement between the manifest, cluster.yaml, the torch pin and cluster/README.md.
cluster/aws_setup.sh has its own tests (test_cluster_aws_setup.py).
"""

import ast
import copy
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import ray
import ray.autoscaler
import tomllib
import torch
import yaml
from helpers import REPO
from packaging.requirements import Requirement
from ray.autoscaler._private.command_runner import SSHCommandRunner
from ray.autoscaler._private.util import prepare_config, validate_config
from ray.runtime_env import RuntimeEnv

CLUSTER_DIR = REPO / "cluster"
CLUSTER_YAML = CLUSTER_DIR / "cluster.yaml"
RAYJOB_YAML = CLUSTER_DIR / "rayjob.yaml"
CLUSTER_README = CLUSTER_DIR / "README.md"
CONSTRAINTS = CLUSTER_DIR / "constraints.txt"
DOCKERFILE = CLUSTER_DIR / "Dockerfile"
CHECK_GPU = CLUSTER_DIR / "check_gpu.py"
SETUP_SCRIPT = CLUSTER_DIR / "aws_setup.sh"
# The cluster's Ray must match the Ray that launches it (pyproject pins 2.60.x): compare x.y.
RAY_MINOR = ".".join(ray.__version__.split(".")[:2])
DLAMI_LOOKUP = re.compile(
    r"^resolve:ssm:/aws/service/deeplearning/ami/x86_64/"
    r"base-oss-nvidia-driver-gpu-ubuntu-22\.04/latest/ami-id$"
)
PINNED_AMI = re.compile(r"^ami-[0-9a-f]{8,17}$")
RAY_AWS_CONFIG = Path(ray.autoscaler.__file__).parent / "_private" / "aws" / "config.py"

# A value assigned to a key-like name, or a bare 40-hex token (the shape of a W&B API key).
SECRET_ASSIGNMENT = re.compile(r"(WANDB_API_KEY|api[_-]?key)\s*[=:]\s*[\"']?[\w-]{20,}", re.I)
HEX_TOKEN = re.compile(r"\b[0-9a-f]{40,}\b")


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


@pytest.fixture
def cluster() -> dict:
    return load_yaml(CLUSTER_YAML)


@pytest.fixture
def manifests() -> list[dict]:
    return list(yaml.safe_load_all(RAYJOB_YAML.read_text()))


@pytest.fixture
def rayjob(manifests) -> dict:
    (job,) = [m for m in manifests if m["kind"] == "RayJob"]
    return job


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


def head_type(config: dict) -> dict:
    return config["available_node_types"][config["head_node_type"]]


def image_tag(image: str) -> str:
    repository, _, tag = image.partition(":")
    assert repository == "rayproject/ray", image
    return tag


def pinned() -> dict[str, str]:
    """{'torch': '2.14.1', 'torchvision': '0.29.1'} from cluster/constraints.txt."""
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        requirement = line.split("#", 1)[0].strip()
        if requirement:
            name, _, version = requirement.partition("==")
            pins[name] = version
    return pins


def script_setting(name: str) -> str:
    """A NAME=value line of cluster/aws_setup.sh (the names it creates)."""
    (value,) = re.findall(rf"^{name}=(\S+)$", SETUP_SCRIPT.read_text(), re.M)
    return value


def rays_default_amis() -> set[str]:
    """The AMI ids Ray fills in when a node type names none (`DEFAULT_AMI`, read from Ray's
    source: importing the module needs boto3, which only the launcher's machine has)."""
    tree = ast.parse(RAY_AWS_CONFIG.read_text())
    (value,) = [
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "DEFAULT_AMI"
    ]
    return set(ast.literal_eval(value).values())


def ray_aws_bootstrap():
    """Ray's AWS bootstrap module (`ray up` runs it before launching); skips without boto3."""
    pytest.importorskip("boto3", reason="boto3 (the cluster launcher's AWS SDK) is not installed")
    from ray.autoscaler._private.aws import config

    return config


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
    head = head_type(cluster)
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
    from search.driver.config import load_config

    requested = load_config(REPO / "configs" / "paper.yaml").search.resources
    worker = worker_type(cluster)["resources"]
    assert 0 < requested.gpu <= worker["GPU"]
    assert requested.cpu <= worker["CPU"]


def test_head_keeps_the_boto3_install_the_autoscaler_needs(cluster):
    # Declaring head_setup_commands replaces Ray's default one, which installs boto3: kept.
    prepared = validate_like_ray_up(cluster)
    assert any("boto3" in command for command in prepared["head_setup_commands"])


def test_cluster_image_is_rays_gpu_image_for_the_installed_ray(cluster):
    tag = image_tag(cluster["docker"]["image"])
    assert tag.startswith(f"{RAY_MINOR}.")
    assert tag.endswith("-gpu")
    assert "py311" in tag


def test_project_is_mounted_and_every_node_installs_the_lock(cluster):
    assert cluster["file_mounts"]["~/freezeframe"] == "."
    prepared = validate_like_ray_up(cluster)
    lock = "pip install -q --require-hashes -r ~/freezeframe/requirements.txt"
    project = "pip install -q --no-deps --no-build-isolation -e ~/freezeframe"
    for role in ("head_setup_commands", "worker_setup_commands"):
        commands = prepared[role]
        # The lock before the project, and no other pip install that could resolve anew.
        assert lock in commands and project in commands, role
        assert commands.index(lock) < commands.index(project), role
        installs = [c for c in commands if c.startswith("pip install") and "boto3" not in c]
        assert installs == [lock, project], role


@pytest.mark.skipif(shutil.which("rsync") is None, reason="rsync is not installed")
def test_rsync_uploads_the_project_without_local_clutter(cluster, tmp_path):
    source = tmp_path / "checkout"
    kept = ["pyproject.toml", "search/run.py", "trainables/runs_table.py", "configs/paper.yaml"]
    kept += ["requirements.txt", "cluster/check_gpu.py"]  # the nodes' setup reads them
    dropped_dirs = [".venv", ".venv-latest", ".git", "runs", "wandb", "search/__pycache__"]
    dropped_dirs += ["freezeframe.egg-info"]
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
    # The entrypoint is one the CLI accepts, and a retried job needs no edit (--resume auto).
    from search.cli import build_parser

    parsed = build_parser().parse_args(argv[2:])
    assert parsed.resume == "auto" and parsed.name


def test_files_the_cluster_files_name_exist_and_rsync_follows_gitignore(cluster):
    named = set()
    for path in (CLUSTER_YAML, RAYJOB_YAML, CLUSTER_README):
        named |= set(re.findall(r"cluster/iam/[\w.-]+\.json", path.read_text()))
    assert named, "no IAM policy named"
    missing = sorted(p for p in named if not (REPO / p).is_file())
    assert not missing, missing
    # What .gitignore excludes is not copied to the cluster: Ray reads the file itself.
    assert cluster["rsync_filter"] == [".gitignore"]
    assert ".git" in cluster["rsync_exclude"]


# --- cluster.yaml: GPU nodes that can use their GPU (issue 11, item 2) -------------------------


def test_nodes_boot_a_current_gpu_ami_not_rays_cuda_11_default(cluster):
    # Without ImageId Ray fills in "Deep Learning AMI (Ubuntu 18.04) V71.0" (CUDA 11.2 era
    # driver), too old for the pinned torch: every trial would run on a GPU node's CPU.
    prepared = validate_like_ray_up(cluster)
    images = {
        t["node_config"].get("ImageId", "") for t in prepared["available_node_types"].values()
    }
    for image in images:
        assert DLAMI_LOOKUP.match(image) or PINNED_AMI.match(image), image
    assert len(rays_default_amis()) > 10  # the table was found
    assert not images & rays_default_amis()
    # aws_setup.sh looks up the same parameter to check the AMI's root device and size.
    parameter = worker_type(cluster)["node_config"]["ImageId"].removeprefix("resolve:ssm:")
    assert script_setting("AMI_PARAMETER") == parameter


def test_root_volume_is_the_device_and_size_the_setup_script_checks(cluster):
    for node_type in cluster["available_node_types"].values():
        (root,) = node_type["node_config"]["BlockDeviceMappings"]
        assert root["DeviceName"] == script_setting("ROOT_DEVICE")
        assert root["Ebs"]["VolumeSize"] == int(script_setting("ROOT_VOLUME_GIB"))


def test_workers_check_their_gpu_at_setup_and_the_head_does_not(cluster):
    prepared = validate_like_ray_up(cluster)
    check = "python ~/freezeframe/cluster/check_gpu.py"
    # After the install (it imports the project), before Ray starts on the node.
    assert prepared["worker_setup_commands"][-1] == check
    assert check not in prepared["head_setup_commands"]  # the m5.xlarge head has no GPU
    assert CHECK_GPU.is_file()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_gpu_check_fails_a_node_whose_torch_sees_no_gpu_naming_cuda():
    result = subprocess.run(
        [sys.executable, str(CHECK_GPU)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 1
    assert "GPU check failed" in result.stderr
    assert "sees no CUDA device" in result.stderr and "NVIDIA driver" in result.stderr


def test_gpu_check_fails_a_node_with_another_torch_than_the_pinned_one(tmp_path):
    other_pin = tmp_path / "constraints.txt"
    other_pin.write_text("torch==0.0.1\n")
    result = subprocess.run(
        [sys.executable, str(CHECK_GPU), "--constraints", str(other_pin)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    installed = torch.__version__.split("+")[0]
    assert f"torch {installed} is installed, but {other_pin} pins torch==0.0.1" in result.stderr


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_gpu_check_passes_on_a_gpu_and_names_the_trials_precision():
    result = subprocess.run(
        [sys.executable, str(CHECK_GPU)], capture_output=True, text=True, timeout=300
    )
    installed = torch.__version__.split("+")[0]
    if installed != pinned()["torch"]:
        assert result.returncode == 1 and "pins torch==" in result.stderr
        pytest.skip(f"torch {installed} here, the cluster pins {pinned()['torch']}")
    assert result.returncode == 0, result.stderr
    precision = "bf16" if torch.cuda.get_device_capability()[0] >= 8 else "fp16"
    assert result.stdout.startswith("GPU check passed: cuda:")
    assert f"trials train in {precision}" in result.stdout


# --- the torch pin: one place, one build ---------------------------------------------------------


def locked() -> dict[str, str]:
    """{package: version} of the committed lock (requirements.txt)."""
    pins = re.findall(r"^([A-Za-z0-9._-]+)==(\S+)", (REPO / "requirements.txt").read_text(), re.M)
    return {name.lower(): version for name, version in pins}


def test_torch_is_pinned_once_and_the_lock_holds_that_build():
    pins = pinned()
    assert set(pins) == {"torch", "torchvision"}
    # `make lock` compiles with -c cluster/constraints.txt: the lock (what `make test`, CI and
    # every node install) holds exactly that build.
    lock = locked()
    assert {name: lock[name] for name in pins} == pins
    assert "-c cluster/constraints.txt" in (REPO / "Makefile").read_text()


def test_the_lock_is_complete_hashed_and_satisfies_pyprojects_ranges():
    text = (REPO / "requirements.txt").read_text()
    lock = locked()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for declared in project["dependencies"] + project["optional-dependencies"]["dev"]:
        req = Requirement(declared)
        assert req.name.lower() in lock, f"{req.name} is not in the lock: run make lock"
        assert req.specifier.contains(lock[req.name.lower()]), (declared, lock[req.name.lower()])
    # Every pin carries its hashes (pip then checks every file, dependencies included).
    entries = re.split(r"\n(?=[A-Za-z0-9._-]+==)", text.split("\n", 6)[-1])
    assert len(entries) == len(lock) and all("--hash=sha256:" in e for e in entries)
    # No index or local path of the machine that made it.
    assert not re.search(r"^\s*(--index-url|--extra-index-url|--find-links|-f )", text, re.M)
    assert "file://" not in text


def test_the_pinned_build_has_t4_kernels_and_the_cuda_runtime_the_ami_driver_runs():
    if torch.__version__.split("+")[0] != pinned()["torch"]:
        pytest.skip(f"torch {torch.__version__} installed here, not the pinned build")
    # The default wheel's CUDA runtime sets the oldest driver it runs on: CUDA 13.x needs a
    # 580+ driver (the DLAMI has 580/595), CUDA 12.8 570+. Ray's default AMI has neither.
    assert torch.version.cuda.split(".")[0] in {"12", "13"}, torch.version.cuda
    assert "sm_75" in torch.cuda.get_arch_list()  # the T4 of a g4dn.xlarge


def test_dockerfile_builds_on_rays_gpu_image_and_installs_the_lock(cluster, rayjob):
    text = DOCKERFILE.read_text()
    (base,) = re.findall(r"^FROM (\S+)$", text, re.M)
    assert base == cluster["docker"]["image"]  # the fallback image, plus the lock and project
    installs = [line for line in text.splitlines() if line.startswith("RUN pip install")]
    assert installs == [
        "RUN pip install --no-cache-dir --require-hashes -r /home/ray/freezeframe/requirements.txt",
        "RUN pip install --no-cache-dir --no-deps --no-build-isolation -e /home/ray/freezeframe \\",
    ]
    assert "COPY --chown=ray:users requirements.txt /home/ray/freezeframe/requirements.txt" in text
    # The image's tag names the Ray and the torch inside; the RayJob runs exactly that image.
    tag = f"ray{rayjob['spec']['rayClusterSpec']['rayVersion']}-torch{pinned()['torch']}"
    assert f"freezeframe:{tag}" in text
    assert locked()["ray"] == rayjob["spec"]["rayClusterSpec"]["rayVersion"]
    ignored = set((CLUSTER_DIR / "Dockerfile.dockerignore").read_text().split())
    assert {".git", ".venv", ".venv-*", "runs", "wandb"} <= ignored
    assert "requirements.txt" not in ignored


# --- cluster.yaml: exposure (issue 11, items 3 and 5) --------------------------------------------


def test_workers_and_head_have_their_own_active_instance_profiles(cluster):
    prepared = validate_like_ray_up(cluster)
    worker = worker_type(prepared)["node_config"]
    head = head_type(prepared)["node_config"]
    assert worker["IamInstanceProfile"] == {"Name": script_setting("WORKER_NAME")}
    assert head["IamInstanceProfile"] == {"Name": script_setting("HEAD_NAME")}
    # A head profile in the config keeps Ray from creating ray-autoscaler-v1 (EC2 and S3 full
    # access), which it does only when the head's node_config names none.
    assert (
        "IamInstanceProfile"
        in cluster["available_node_types"][cluster["head_node_type"]]["node_config"]
    )
    assert cluster["cluster_name"] == script_setting("CLUSTER_NAME")
    assert worker["InstanceType"] == script_setting("WORKER_INSTANCE_TYPE")


class _Group:
    """A security group as Ray's AWS bootstrap sees it: its rules, and what it is given."""

    def __init__(self, ip_permissions: list):
        self.id, self.ip_permissions, self.authorized = "sg-0test", ip_permissions, []

    def authorize_ingress(self, IpPermissions):  # noqa: N803 - boto3's keyword
        self.authorized += IpPermissions


def test_ssh_is_limited_by_the_group_the_setup_script_prepares(cluster):
    security_group = validate_like_ray_up(cluster)["provider"]["security_group"]
    # Only the group's name: rules given here would be added to Ray's SSH-from-anywhere default.
    assert security_group == {"GroupName": script_setting("SECURITY_GROUP")}
    node_configs = [t["node_config"] for t in cluster["available_node_types"].values()]
    assert not any("SecurityGroupIds" in node_config for node_config in node_configs)


def test_rays_bootstrap_keeps_the_prepared_group_closed_and_the_ami(cluster):
    bootstrap = ray_aws_bootstrap()
    prepared = validate_like_ray_up(cluster)
    # Ray adds no rule to a group that has rules: the setup script's SSH-from-one-CIDR group is
    # used as it is ...
    ssh_from_one_address = {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22}
    ssh_from_one_address["IpRanges"] = [{"CidrIp": "203.0.113.7/32"}]
    prepared_group = _Group([ssh_from_one_address])
    bootstrap._upsert_security_group_rules(prepared, {"ray.worker.t4": prepared_group})
    assert prepared_group.authorized == []
    # ... while a group Ray has to create gets SSH from anywhere: why the script runs first.
    new_group = _Group([])
    bootstrap._upsert_security_group_rules(prepared, {"ray.worker.t4": new_group})
    opened = [r["CidrIp"] for p in new_group.authorized for r in p.get("IpRanges", [])]
    assert "0.0.0.0/0" in opened
    # `ray up` fills in its default AMI only where a node type names none.
    bootstrap._check_ami(prepared)
    for node_type in prepared["available_node_types"].values():
        assert DLAMI_LOOKUP.match(node_type["node_config"]["ImageId"])


def test_dashboard_listens_on_loopback_with_rays_other_default_flags(cluster):
    defaults = load_yaml(Path(ray.autoscaler.__file__).parent / "aws" / "defaults.yaml")
    expected = [
        command.replace("--dashboard-host=0.0.0.0", "--dashboard-host=127.0.0.1")
        for command in defaults["head_start_ray_commands"]
    ]
    assert any("--dashboard-host=0.0.0.0" in c for c in defaults["head_start_ray_commands"])
    assert validate_like_ray_up(cluster)["head_start_ray_commands"] == expected
    assert "head_start_ray_commands" in cluster  # declared, so Ray's 0.0.0.0 default is replaced
    assert "ray dashboard cluster/cluster.yaml" in CLUSTER_README.read_text()


# --- rayjob.yaml -------------------------------------------------------------------------------


def containers(group: dict) -> list[dict]:
    return group["template"]["spec"]["containers"]


def groups(rayjob: dict) -> list[dict]:
    cluster_spec = rayjob["spec"]["rayClusterSpec"]
    return [cluster_spec["headGroupSpec"], *cluster_spec["workerGroupSpecs"]]


def test_manifest_holds_service_accounts_a_network_policy_and_the_rayjob(manifests):
    kinds = sorted((m["apiVersion"], m["kind"]) for m in manifests)
    assert kinds == [
        ("networking.k8s.io/v1", "NetworkPolicy"),
        ("ray.io/v1", "RayJob"),
        ("v1", "ServiceAccount"),
        ("v1", "ServiceAccount"),
    ]
    assert not [m for m in manifests if m["kind"] == "Secret"]  # the W&B key is never a file


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


def test_rayjob_runtime_env_is_accepted_by_ray_and_installs_only_the_images_lock(rayjob):
    runtime_env = yaml.safe_load(rayjob["spec"]["runtimeEnvYAML"])
    parsed = RuntimeEnv(**runtime_env)  # Ray's own validation of working_dir and pip
    assert runtime_env["working_dir"].startswith(("https://", "s3://", "gs://"))
    assert runtime_env["working_dir"].endswith(".zip")
    # The lock the image was built with (cluster/Dockerfile copies it there): every pin is
    # already satisfied on that image, so no pod resolves or downloads anything and Ray's 600 s
    # setup timeout is not at stake; nothing else (uv, conda, another requirement) is installed.
    assert set(runtime_env) == {"working_dir", "pip"}
    assert parsed["pip"]["packages"] == ["-r /home/ray/freezeframe/requirements.txt"]
    assert "COPY --chown=ray:users requirements.txt /home/ray/freezeframe/requirements.txt" in (
        DOCKERFILE.read_text()
    )


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


def test_rayjob_runs_the_prebuilt_image_of_the_installed_ray_and_pinned_torch(rayjob):
    ray_version = rayjob["spec"]["rayClusterSpec"]["rayVersion"]
    assert ray_version.startswith(f"{RAY_MINOR}.")
    for container in (c for group in groups(rayjob) for c in containers(group)):
        repository, _, tag = container["image"].rpartition(":")
        assert repository.endswith("/freezeframe"), container["image"]
        assert tag == f"ray{ray_version}-torch{pinned()['torch']}"


def test_rayjob_data_mount_is_where_the_entrypoint_reads(rayjob):
    argv = shlex.split(rayjob["spec"]["entrypoint"])
    data_dir = argv[argv.index("--data") + 1]
    for group in groups(rayjob):
        for container in containers(group):
            mounts = [m["mountPath"] for m in container.get("volumeMounts", [])]
            assert data_dir in mounts, container["name"]


def test_pods_reach_the_bucket_through_annotated_service_accounts(manifests, rayjob):
    accounts = {m["metadata"]["name"]: m for m in manifests if m["kind"] == "ServiceAccount"}
    cluster_spec = rayjob["spec"]["rayClusterSpec"]
    head_account = cluster_spec["headGroupSpec"]["template"]["spec"]["serviceAccountName"]
    (worker_group,) = cluster_spec["workerGroupSpecs"]
    worker_account = worker_group["template"]["spec"]["serviceAccountName"]
    assert {head_account, worker_account} == set(accounts)
    role_arn = re.compile(r"^arn:aws:iam::[\w-]+:role/freezeframe-bucket$")
    for account in accounts.values():
        assert role_arn.match(account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"])
    # KubeRay binds its autoscaler Role to the head's account; trials need no Kubernetes API.
    assert accounts[worker_account]["automountServiceAccountToken"] is False
    assert accounts[head_account].get("automountServiceAccountToken", True) is True
    # The EKS role's trust policy admits exactly these two accounts.
    trust = json.loads((CLUSTER_DIR / "iam" / "eks-irsa-trust-policy.json").read_text())
    subjects = trust["Statement"][0]["Condition"]["StringEquals"]["__OIDC_PROVIDER__:sub"]
    assert sorted(s.rsplit(":", 1)[1] for s in subjects) == sorted(accounts)


def test_rayjob_turns_on_ray_token_authentication(rayjob):
    spec = rayjob["spec"]
    cluster_spec = spec["rayClusterSpec"]
    assert cluster_spec["authOptions"] == {"mode": "token"}
    # KubeRay refuses token mode below Ray 2.52.0.
    major, minor, _patch = (int(part) for part in cluster_spec["rayVersion"].split("."))
    assert (major, minor) >= (2, 52)
    # The submitter runs inside the head pod (no pod of its own to admit through the policy);
    # KubeRay's SidecarMode takes no submitter template and a head that is never restarted.
    assert spec["submissionMode"] == "SidecarMode"
    assert "submitterPodTemplate" not in spec and "submitterConfig" not in spec
    assert (
        cluster_spec["headGroupSpec"]["template"]["spec"].get("restartPolicy", "Never") == "Never"
    )
    # No container opts out by setting the mode itself.
    for container in (c for group in groups(rayjob) for c in containers(group)):
        assert "RAY_AUTH_MODE" not in {e["name"] for e in container.get("env", [])}


def test_wandb_key_comes_from_the_readme_secret_into_trial_workers_only(rayjob):
    created = re.search(
        r"kubectl create secret generic (\S+) --from-literal=([\w-]+)=", CLUSTER_README.read_text()
    )
    assert created, "cluster/README.md does not show how to create the W&B secret"
    cluster_spec = rayjob["spec"]["rayClusterSpec"]
    (head,) = containers(cluster_spec["headGroupSpec"])
    assert "WANDB_API_KEY" not in {e["name"] for e in head.get("env", [])}
    for group in cluster_spec["workerGroupSpecs"]:
        for container in containers(group):
            (entry,) = [e for e in container["env"] if e["name"] == "WANDB_API_KEY"]
            reference = entry["valueFrom"]["secretKeyRef"]
            assert (reference["name"], reference["key"]) == created.groups()
    for group in groups(rayjob):
        for container in containers(group):
            inlined = [e for e in container.get("env", []) if "value" in e and "KEY" in e["name"]]
            assert inlined == [], container["name"]
    # The driver on the head runs online although it holds no key (see cluster/README.md).
    argv = shlex.split(rayjob["spec"]["entrypoint"])
    assert argv[argv.index("--wandb") + 1] == "online"
    assert "search.wandb_key_on_workers=true" in argv


def test_rayjob_entrypoint_settings_are_config_keys(rayjob):
    from search.driver.config import SearchConfig, load_config
    from trainables.core.errors import ConfigError

    argv = shlex.split(rayjob["spec"]["entrypoint"])
    sets = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--set"]
    if "wandb_key_on_workers" not in SearchConfig.model_fields:
        pytest.skip("search.wandb_key_on_workers (the KubeRay W&B design) is not in the config yet")
    try:
        load_config(REPO / argv[argv.index("--config") + 1], sets)
    except ConfigError as err:
        pytest.fail(f"the RayJob entrypoint's --set options do not load: {err}")


def _admits(policy: dict, labels: dict, namespace_labels: dict, port: int) -> bool:
    """Whether a NetworkPolicy's ingress rules let a pod in (standard semantics, the shapes
    used here: podSelector / namespaceSelector matchLabels, TCP ports)."""

    def matches(selector: dict | None, have: dict) -> bool:
        return selector is not None and selector.get("matchLabels", {}).items() <= have.items()

    for rule in policy["spec"]["ingress"]:
        ports = [p["port"] for p in rule.get("ports", [])]
        if ports and port not in ports:
            continue
        for peer in rule["from"]:
            if "namespaceSelector" in peer:  # any namespace matching it (and the pod selector)
                in_namespace = matches(peer["namespaceSelector"], namespace_labels)
                if in_namespace and matches(peer.get("podSelector", {}), labels):
                    return True
            elif matches(peer["podSelector"], labels):  # pods of the policy's own namespace
                return True
    return False


def test_network_policy_admits_only_the_jobs_own_pods_to_rays_ports(manifests, rayjob):
    (policy,) = [m for m in manifests if m["kind"] == "NetworkPolicy"]
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert all(rule.get("from") for rule in policy["spec"]["ingress"])  # no admit-all rule
    assert not [p for r in policy["spec"]["ingress"] for p in r["from"] if "ipBlock" in p]
    selected = policy["spec"]["podSelector"]["matchLabels"]
    for group in groups(rayjob):
        assert selected.items() <= group["template"]["metadata"]["labels"].items()
    job_pod = dict(
        rayjob["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["metadata"]["labels"]
    )
    other_pod = {"app": "something-else"}
    operator = {"app.kubernetes.io/name": "kuberay-operator"}
    namespace = {"kubernetes.io/metadata.name": "default"}
    for port in (6379, 8265, 10001, 8076):  # GCS, dashboard/job API, client, object manager
        assert _admits(policy, job_pod, namespace, port), port
        assert not _admits(policy, other_pod, namespace, port), port
    # The KubeRay operator polls the job on the dashboard port, and nothing else.
    assert _admits(policy, operator, {"kubernetes.io/metadata.name": "ray-system"}, 8265)
    assert not _admits(policy, operator, namespace, 6379)


# --- README and secrets ------------------------------------------------------------------------


def test_readme_walks_from_nothing_to_the_report_with_cost_and_what_ran():
    text = CLUSTER_README.read_text()
    steps = [
        "aws configure",
        "L-DB2E81BA",  # the G-instance vCPU quota
        "pip install -e '.[dev]' boto3",
        "cluster/aws_setup.sh --bucket",
        "docker build -f cluster/Dockerfile",
        "ray up cluster/cluster.yaml",
        "ray submit cluster/cluster.yaml search/run.py",
        "--resume",
        "python -m search.report s3://",
        "ray down cluster/cluster.yaml",
    ]
    positions = [text.find(step) for step in steps]
    assert -1 not in positions, [s for s, p in zip(steps, positions, strict=True) if p == -1]
    assert positions == sorted(positions), "the walk-through's steps are out of order"
    assert "## Cost of one paper study" in text and "$0.526/h" in text and "$0.192/h" in text
    assert "not measured" in text and "December 2026" in text
    assert "## What was and was not run for real" in text


CLUSTER_FILES = sorted(
    p for p in CLUSTER_DIR.rglob("*") if p.is_file() and "__pycache__" not in p.parts
)


@pytest.mark.parametrize("path", CLUSTER_FILES, ids=lambda p: str(p.relative_to(CLUSTER_DIR)))
def test_cluster_files_hold_no_secret(path):
    assert secret_findings(path.read_text()) == []


def test_secret_check_catches_a_written_key():
    leaked = CLUSTER_YAML.read_text() + "\nsetup_commands: [export WANDB_API_KEY=" + "ab12" * 10
    assert secret_findings(leaked)


def test_the_heads_login_shell_joins_the_cluster_for_ray_submit(cluster, tmp_path):
    # `ray submit` runs `python ~/run.py ...` in an interactive login shell on the head; a study
    # joins a running Ray only when RAY_ADDRESS (or --address) says so.
    prepared = validate_like_ray_up(cluster)
    (line,) = [c for c in prepared["head_setup_commands"] if "RAY_ADDRESS" in c]
    assert not any("RAY_ADDRESS" in c for c in prepared["worker_setup_commands"])
    env = {"HOME": str(tmp_path), "PATH": os.environ["PATH"]}
    for _ in range(2):  # setup commands run again on every `ray up`: one line, not two
        subprocess.run(["bash", "-c", line], env=env, check=True)
    assert (tmp_path / ".bashrc").read_text() == "export RAY_ADDRESS=auto\n"
    shell = subprocess.run(
        ["bash", "-i", "-c", "echo address=$RAY_ADDRESS"], env=env, capture_output=True, text=True
    )
    assert "address=auto" in shell.stdout
