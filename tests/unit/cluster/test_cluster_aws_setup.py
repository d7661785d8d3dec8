"""cluster/aws_setup.sh, run against a fake `aws` (tests/fake_aws.py) that records every call.

What a user would see go wrong on AWS, checked without it: a policy that names more than the
bucket's prefix, a head that may pass any role, SSH open to the world, a name that differs from
the one cluster.yaml launches with, bad input that reaches AWS before it is refused.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import REPO

SCRIPT = REPO / "cluster" / "aws_setup.sh"
IAM_DIR = REPO / "cluster" / "iam"
FAKE_AWS = Path(__file__).with_name("fake_aws.py")
CLUSTER = yaml.safe_load((REPO / "cluster" / "cluster.yaml").read_text())
BUCKET, PREFIX, CIDR = "ff-test-bucket", "studies/freezeframe", "203.0.113.7/32"
ACCOUNT = "123456789012"
ARGS = ["--bucket", BUCKET, "--prefix", PREFIX, "--region", "us-west-2", "--ssh-cidr", CIDR]

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


class Run:
    """One run of the setup script: exit status, output, the calls it made, AWS's end state."""

    def __init__(self, tmp_path: Path, args: list[str], state: dict | None = None):
        bin_dir, self._state, self._log = (
            tmp_path / "bin",
            tmp_path / "state.json",
            tmp_path / "log",
        )
        bin_dir.mkdir(exist_ok=True)
        (bin_dir / "aws").write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_AWS}" "$@"\n')
        (bin_dir / "aws").chmod(0o755)
        if state is not None:
            self._state.write_text(json.dumps(state))
        env = {
            **os.environ,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "FAKE_AWS_STATE": str(self._state),
            "FAKE_AWS_LOG": str(self._log),
        }
        result = subprocess.run(
            ["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=120
        )
        self.returncode, self.stdout, self.stderr = result.returncode, result.stdout, result.stderr

    @property
    def calls(self) -> list[dict]:
        if not self._log.exists():
            return []
        return [json.loads(line) for line in self._log.read_text().splitlines()]

    @property
    def state(self) -> dict:
        return json.loads(self._state.read_text())

    def policies(self, role: str) -> dict[str, dict]:
        return {
            name: json.loads(doc) for name, doc in self.state["roles"][role]["policies"].items()
        }


def statements(policy: dict) -> list[dict]:
    return policy["Statement"]


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def s3_resources(policy: dict) -> list[str]:
    return [
        resource
        for statement in statements(policy)
        for resource in as_list(statement["Resource"])
        if resource.startswith("arn:aws:s3:::")
    ]


def test_setup_succeeds_and_prints_what_to_run_next(tmp_path):
    run = Run(tmp_path, ARGS)
    assert run.returncode == 0, run.stderr
    assert "ray up cluster/cluster.yaml" in run.stdout
    assert f"--storage s3://{BUCKET}/{PREFIX}" in run.stdout
    assert "ami-0fake" in run.stdout  # the AMI of today, for pinning


def test_workers_may_touch_the_bucket_prefix_and_nothing_else(tmp_path):
    run = Run(tmp_path, ARGS)
    worker_name = CLUSTER["available_node_types"]["ray.worker.t4"]["node_config"][
        "IamInstanceProfile"
    ]["Name"]
    (policy,) = run.policies(worker_name).values()  # one policy, the bucket prefix's
    actions = {a for s in statements(policy) for a in as_list(s["Action"])}
    assert actions <= {
        "s3:ListBucket",
        "s3:GetBucketLocation",
        "s3:GetObject",
        "s3:PutObject",
        "s3:DeleteObject",
        "s3:AbortMultipartUpload",
    }
    for resource in s3_resources(policy):
        assert (
            resource == f"arn:aws:s3:::{BUCKET}" or resource == f"arn:aws:s3:::{BUCKET}/{PREFIX}/*"
        )
    for statement in statements(policy):
        if "s3:ListBucket" in as_list(statement["Action"]):
            listed = statement["Condition"]["StringLike"]["s3:prefix"]
            assert sorted(listed) == [PREFIX, f"{PREFIX}/*"]
        if any(r.endswith("/*") for r in as_list(statement["Resource"])):
            assert set(as_list(statement["Action"])) & {"s3:GetObject", "s3:PutObject"}


def test_the_head_may_launch_tag_and_pass_only_what_the_cluster_uses(tmp_path):
    run = Run(tmp_path, ARGS)
    head = CLUSTER["available_node_types"]["ray.head.cpu"]["node_config"]["IamInstanceProfile"]
    policies = run.policies(head["Name"])
    assert set(policies) == {"freezeframe-bucket-prefix", "freezeframe-autoscaler"}
    autoscaler = statements(policies["freezeframe-autoscaler"])
    by_action: dict[str, list[dict]] = {}
    for statement in autoscaler:
        for action in as_list(statement["Action"]):
            by_action.setdefault(action, []).append(statement)
    assert not [a for a in by_action if "*" in a]  # no ec2:* or s3:*
    (pass_role,) = by_action["iam:PassRole"]
    assert pass_role["Resource"] == f"arn:aws:iam::{ACCOUNT}:role/freezeframe-worker"
    # Instances of the worker type only, terminated only when tagged with this cluster's name.
    instance_launch = [s for s in by_action["ec2:RunInstances"] if "instance/*" in s["Resource"]]
    (launch,) = instance_launch
    worker_type = CLUSTER["available_node_types"]["ray.worker.t4"]["node_config"]["InstanceType"]
    assert launch["Condition"] == {"StringEquals": {"ec2:InstanceType": worker_type}}
    (terminate,) = by_action["ec2:TerminateInstances"]
    tag_condition = {"aws:ResourceTag/ray-cluster-name": CLUSTER["cluster_name"]}
    assert terminate["Condition"] == {"StringEquals": tag_condition}
    assert all(
        r.startswith("arn:aws:ec2:us-west-2:")
        for s in by_action["ec2:TerminateInstances"]
        for r in as_list(s["Resource"])
    )
    # The same bucket rights as the workers, no more.
    assert (
        policies["freezeframe-bucket-prefix"]
        == run.policies("freezeframe-worker")["freezeframe-bucket-prefix"]
    )


def test_instance_profiles_and_security_group_are_the_ones_cluster_yaml_names(tmp_path):
    run = Run(tmp_path, ARGS)
    node_configs = [t["node_config"] for t in CLUSTER["available_node_types"].values()]
    named = {node_config["IamInstanceProfile"]["Name"] for node_config in node_configs}
    assert set(run.state["profiles"]) == named
    assert all(run.state["profiles"][name] == [name] for name in named)  # each holds its role
    assert run.state["group"]["name"] == CLUSTER["provider"]["security_group"]["GroupName"]


def test_ssh_is_open_to_the_given_cidr_only(tmp_path):
    run = Run(tmp_path, ARGS)
    rules = run.state["group"]["rules"]
    ssh = [rule for rule in rules if rule.get("FromPort") == 22]
    assert [rule["IpRanges"] for rule in ssh] == [[CIDR]]
    internal = [rule for rule in rules if rule["IpProtocol"] == "-1"]
    assert [rule["Groups"] for rule in internal] == [[run.state["group"]["id"]]]  # itself only
    assert not [rule for rule in rules if rule["IpRanges"] and rule is not ssh[0]]


def test_a_world_open_ssh_rule_left_by_ray_is_removed(tmp_path):
    # Ray creates the named group with SSH from 0.0.0.0/0 when `ray up` ran before the setup.
    ray_made = {
        "id": "sg-0ray",
        "name": "freezeframe-ray-nodes",
        "rules": [
            {
                "IpProtocol": "tcp",
                "FromPort": 22,
                "IpRanges": ["0.0.0.0/0"],
                "Ipv6Ranges": ["::/0"],
                "Groups": [],
            }
        ],
    }
    run = Run(tmp_path, ARGS, state={"group": ray_made})
    assert run.returncode == 0, run.stderr
    assert "removed SSH from 0.0.0.0/0" in run.stdout and "removed SSH from ::/0" in run.stdout
    opened = [
        c for rule in run.state["group"]["rules"] for c in rule["IpRanges"] + rule["Ipv6Ranges"]
    ]
    assert opened == [CIDR]


@pytest.mark.parametrize("cidr", ["0.0.0.0/0", "::/0"])
def test_ssh_open_to_the_world_is_refused_before_any_aws_call(tmp_path, cidr):
    run = Run(tmp_path, [*ARGS[:-1], cidr])
    assert run.returncode == 2
    assert "opens SSH to the whole internet" in run.stderr
    assert run.calls == []


BAD_INPUT = {
    "bucket name": (["--bucket", "Bad_Bucket"], "is not an S3 bucket name"),
    "CIDR without length": (["--ssh-cidr", "203.0.113.7"], "is not an IPv4 CIDR"),
    "octet out of range": (["--ssh-cidr", "203.0.113.300/32"], "is not an IPv4 octet"),
    "too wide a CIDR": (["--ssh-cidr", "10.0.0.0/4"], "prefix length must be 8..32"),
    "wildcard prefix": (["--prefix", "runs/*"], "it becomes part of an IAM ARN"),
    "another region than cluster.yaml": (["--region", "eu-west-1"], "cluster.yaml launches in"),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_refused_before_any_aws_call(tmp_path, case):
    override, message = BAD_INPUT[case]
    args = list(ARGS)
    args[args.index(override[0]) + 1] = override[1]
    run = Run(tmp_path, args)
    assert run.returncode == 2, run.stdout
    assert message in run.stderr
    assert run.calls == []


def test_running_twice_creates_nothing_new(tmp_path):
    first = Run(tmp_path, ARGS)
    calls_before = len(first.calls)
    second = Run(tmp_path, ARGS)
    assert second.returncode == 0, second.stderr
    created = [
        c["argv"][:2]
        for c in second.calls[calls_before:]
        if c["argv"][1].startswith(("create", "authorize", "add-"))
    ]
    assert created == []
    assert len(second.state["group"]["rules"]) == 2


def test_an_ami_larger_than_cluster_yamls_root_volume_is_refused(tmp_path):
    run = Run(tmp_path, ARGS, state={"ami_root_gib": 200})
    assert run.returncode == 2
    assert "needs a 200 GiB root volume; raise VolumeSize" in run.stderr


def test_an_ami_booting_from_another_device_is_refused(tmp_path):
    run = Run(tmp_path, ARGS, state={"ami_root_device": "/dev/xvda"})
    assert run.returncode == 2
    assert "boots from /dev/xvda" in run.stderr


def test_ecr_repo_adds_pull_rights_for_that_repository_only(tmp_path):
    run = Run(tmp_path, [*ARGS, "--ecr-repo", "freezeframe"])
    assert run.returncode == 0, run.stderr
    for role in ("freezeframe-head", "freezeframe-worker"):
        pull = run.policies(role)["freezeframe-ecr-pull"]
        scoped = [s for s in statements(pull) if s["Resource"] != "*"]
        assert [s["Resource"] for s in scoped] == [
            f"arn:aws:ecr:us-west-2:{ACCOUNT}:repository/freezeframe"
        ]
        unscoped = {
            a for s in statements(pull) if s["Resource"] == "*" for a in as_list(s["Action"])
        }
        assert unscoped == {"ecr:GetAuthorizationToken"}  # has no resource-level form


def test_policy_templates_use_only_placeholders_the_script_fills():
    filled = set(re.findall(r'-e "s\|(__[A-Z_]+__)\|', SCRIPT.read_text()))
    for template in (
        "ec2-trust-policy.json",
        "bucket-prefix-policy.json",
        "head-autoscaler-policy.json",
        "ecr-pull-policy.json",
    ):
        text = (IAM_DIR / template).read_text()
        json.loads(text)
        assert set(re.findall(r"__[A-Z_]+__", text)) <= filled, template
