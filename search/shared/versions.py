"""The installed versions of FreezeFrame's dependencies, as the driver and each worker see them.

Every node installs the lock (requirements.txt: `make install`, cluster.yaml's setup commands,
cluster/Dockerfile, rayjob.yaml's runtime env). A node set up apart from it (an old image, a
hand-made environment, a worker launched after the lock changed) would run other code than the
driver: the driver sends its versions in each trial spec, and a worker whose versions differ
fails the trial before training, naming the packages.
"""

from __future__ import annotations

import functools
import importlib.metadata as metadata
import os

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PROJECT = "freezeframe"
LOCK_FILE = "requirements.txt"


class VersionMismatch(RuntimeError):
    """A worker's installed dependencies differ from the driver's."""


@functools.cache
def installed_versions() -> dict[str, str]:
    """{package: version} for FreezeFrame's runtime dependencies and theirs, as installed here
    (markers evaluated for this machine); empty when FreezeFrame is not installed (a bare
    checkout on PYTHONPATH: nothing to compare)."""
    try:
        wanted = [(PROJECT, frozenset())]
        metadata.distribution(PROJECT)
    except metadata.PackageNotFoundError:
        return {}
    versions: dict[str, str] = {}
    seen: set[tuple[str, frozenset]] = set()
    while wanted:
        name, extras = wanted.pop()
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # an optional dependency not installed: nothing runs it here
        key = canonicalize_name(dist.metadata["Name"])
        if key != PROJECT:
            versions[key] = dist.version
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker and not any(
                req.marker.evaluate({"extra": extra}) for extra in (extras or {""})
            ):
                continue
            wanted.append((canonicalize_name(req.name), frozenset(req.extras)))
    return dict(sorted(versions.items()))


def version_problems(driver: dict[str, str], here: dict[str, str]) -> list[str]:
    """One line per package whose version on this node differs from the driver's."""
    problems = []
    for name, version in driver.items():
        mine = here.get(name)
        if mine != version:
            problems.append(f"{name} {mine or 'not installed'} (driver: {version})")
    return problems


def check_versions(driver: dict[str, str] | None) -> None:
    """Raise `VersionMismatch` naming each package whose installed version differs from the
    driver's (None: the driver sent none, nothing to check)."""
    if not driver:
        return
    problems = version_problems(driver, installed_versions())
    if problems:
        shown = "; ".join(problems[:10]) + (
            f"; and {len(problems) - 10} more" if len(problems) > 10 else ""
        )
        raise VersionMismatch(
            f"node {os.uname().nodename} runs other package versions than the driver: {shown}. "
            f"Install the lock on every node (pip install --require-hashes -r {LOCK_FILE}; "
            "cluster/README.md) or rebuild the image"
        )
