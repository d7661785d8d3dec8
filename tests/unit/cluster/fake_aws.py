"""A stand-in for the `aws` command line, for testing cluster/aws_setup.sh without AWS.

It answers the calls the setup script makes from a small JSON state (roles, instance profiles,
bucket, security group and its ingress rules), updates that state the way AWS would, and appends
every call to a log: the arguments, plus the contents of each `file://` argument (the script
deletes its rendered policies when it exits). Paths come from FAKE_AWS_STATE and FAKE_AWS_LOG.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

ACCOUNT_ID = "123456789012"
VPC_ID = "vpc-0fake"
NEW_GROUP_ID = "sg-0fake"
AMI_ID = "ami-0fake"
AMI_NAME = "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04) 20261006"


def option(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


def missing(what: str) -> None:
    print(f"An error occurred (NoSuchEntity): {what} not found", file=sys.stderr)
    sys.exit(254)


def parse_permission(shorthand: str) -> dict:
    """'IpProtocol=tcp,FromPort=22,ToPort=22,IpRanges=[{CidrIp=1.2.3.4/32,...}]' -> a rule."""
    rule = {"IpProtocol": re.search(r"IpProtocol=([^,]+)", shorthand).group(1)}
    if port := re.search(r"FromPort=(-?\d+)", shorthand):
        rule["FromPort"] = int(port.group(1))
    rule["IpRanges"] = re.findall(r"CidrIp=([^,}\]]+)", shorthand)
    rule["Ipv6Ranges"] = re.findall(r"CidrIpv6=([^,}\]]+)", shorthand)
    rule["Groups"] = re.findall(r"GroupId=([^,}\]]+)", shorthand)
    return rule


def matching_rules(rules: list[dict], query: str) -> list[dict]:
    """The three filters aws_setup.sh asks for, evaluated on the stored rules."""
    if cidr := re.search(r"FromPort==`22` && IpRanges\[\?CidrIp=='([^']+)'\]", query):
        return [r for r in rules if r.get("FromPort") == 22 and cidr.group(1) in r["IpRanges"]]
    if cidr := re.search(r"FromPort==`22` && Ipv6Ranges\[\?CidrIpv6=='([^']+)'\]", query):
        return [r for r in rules if r.get("FromPort") == 22 and cidr.group(1) in r["Ipv6Ranges"]]
    if group := re.search(r"IpProtocol=='-1' && UserIdGroupPairs\[\?GroupId=='([^']+)'\]", query):
        return [r for r in rules if r["IpProtocol"] == "-1" and group.group(1) in r["Groups"]]
    raise SystemExit(f"fake aws: unexpected security group query {query!r}")


def main(args: list[str]) -> None:
    state_path = Path(os.environ["FAKE_AWS_STATE"])
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    files = {
        a: Path(a.removeprefix("file://")).read_text() for a in args if a.startswith("file://")
    }
    with open(os.environ["FAKE_AWS_LOG"], "a") as log:
        log.write(json.dumps({"argv": args, "files": files}) + "\n")

    roles = state.setdefault("roles", {})
    profiles = state.setdefault("profiles", {})
    command = tuple(args[:2])
    query = option(args, "--query") or ""
    if command == ("sts", "get-caller-identity"):
        print(ACCOUNT_ID)
    elif command == ("iam", "get-role"):
        if option(args, "--role-name") not in roles:
            missing("role")
    elif command == ("iam", "create-role"):
        roles[option(args, "--role-name")] = {"policies": {}}
    elif command == ("iam", "put-role-policy"):
        document = files[option(args, "--policy-document")]
        roles[option(args, "--role-name")]["policies"][option(args, "--policy-name")] = document
    elif command == ("iam", "get-instance-profile"):
        name = option(args, "--instance-profile-name")
        if name not in profiles:
            missing("instance profile")
        if query:
            print("\t".join(profiles[name]))
    elif command == ("iam", "create-instance-profile"):
        profiles[option(args, "--instance-profile-name")] = []
    elif command == ("iam", "add-role-to-instance-profile"):
        profiles[option(args, "--instance-profile-name")].append(option(args, "--role-name"))
    elif command == ("s3api", "head-bucket"):
        if not state.get("bucket"):
            missing("bucket")
    elif command == ("s3api", "create-bucket"):
        state["bucket"] = option(args, "--bucket")
    elif command == ("ec2", "describe-vpcs"):
        print(VPC_ID)
    elif command == ("ec2", "describe-security-groups"):
        group = state.get("group")
        if "--group-ids" in args:
            found = matching_rules(group["rules"], query)
            print(json.dumps(found) if found else "")
        else:
            print(group["id"] if group else "None")
    elif command == ("ec2", "create-security-group"):
        state["group"] = {"id": NEW_GROUP_ID, "name": option(args, "--group-name"), "rules": []}
        print(NEW_GROUP_ID)
    elif command == ("ec2", "authorize-security-group-ingress"):
        state["group"]["rules"].append(parse_permission(option(args, "--ip-permissions")))
    elif command == ("ec2", "revoke-security-group-ingress"):
        revoked = parse_permission(option(args, "--ip-permissions"))
        for rule in state["group"]["rules"]:
            rule["IpRanges"] = [c for c in rule["IpRanges"] if c not in revoked["IpRanges"]]
            rule["Ipv6Ranges"] = [c for c in rule["Ipv6Ranges"] if c not in revoked["Ipv6Ranges"]]
    elif command == ("ssm", "get-parameter"):
        print(state.get("ami", AMI_ID))
    elif command == ("ec2", "describe-images"):
        if "VolumeSize" in query:
            print(state.get("ami_root_gib", 75))
        else:
            print(f"{state.get('ami_root_device', '/dev/sda1')}\t{AMI_NAME}")
    elif command == ("service-quotas", "get-service-quota"):
        print("32.0")
    elif command not in {
        ("iam", "update-assume-role-policy"),
        ("s3api", "put-public-access-block"),
    }:
        raise SystemExit(f"fake aws: unexpected call {args}")
    state_path.write_text(json.dumps(state))


if __name__ == "__main__":
    main(sys.argv[1:])
