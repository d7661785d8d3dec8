"""What the connected Ray cluster can run: its nodes now, and the nodes its autoscaler may add.

A cluster that starts with its head alone (`min_workers: 0`) holds no GPU when a study starts;
sizing the tune and explore stages' concurrency from `ray.cluster_resources()` at that moment
gives one trial at a time, and checking a trial's resources against it refuses every GPU trial.
So the capacity counts, beside the alive nodes, every node type of the autoscaling config x its
`max_workers` (capped by the config's global `max_workers`), read from the config the cluster's
autoscaler runs with: the `--autoscaling-config` of the Ray monitor process on this machine that
serves the connected cluster (`ray start --head --autoscaling-config=...`, cluster/local.yaml),
else `~/ray_bootstrap_config.yaml` (what `ray up` puts on the head; Ray Tune's own test for an
autoscaling cluster). A driver that sees neither (a KubeRay head, where the autoscaler runs in
its own container) counts the nodes alive now, and says so: `search.max_concurrent_trials`
then sets the concurrency.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import ray
import yaml

BOOTSTRAP_CONFIG = Path("~/ray_bootstrap_config.yaml")
HEAD_RESOURCE = "node:__internal_head__"


@dataclass(frozen=True)
class Capacity:
    """The connected cluster's nodes now and what its autoscaler may add."""

    nodes: list[dict[str, float]]  # every alive node's resources
    head: dict[str, float]  # the head node's
    # {node type: (its resources, its max_workers)}; empty without an autoscaling config
    node_types: dict[str, tuple[dict[str, float], int]] = field(default_factory=dict)
    max_workers: int | None = None  # the config's global cap on workers
    source: str = ""  # where node_types came from

    @property
    def autoscaling(self) -> bool:
        return any(count > 0 for _, count in self.node_types.values())

    @property
    def multi_node(self) -> bool:
        """More than one node now, or the autoscaler may add one."""
        return len(self.nodes) > 1 or self.autoscaling

    def fits(self, cpu: float, gpu: float) -> bool:
        """A trial asking this much fits on one node that exists or may be added."""
        shapes = self.nodes + [res for res, count in self.node_types.values() if count > 0]
        return any(_per_node(res, cpu, gpu) > 0 for res in shapes)

    def slots(self, cpu: float, gpu: float) -> int:
        """Trials that can run at once: on the nodes now, or on the head plus every worker the
        autoscaler may add (the larger), at least 1."""
        now = sum(_per_node(res, cpu, gpu) for res in self.nodes)
        if not self.autoscaling:
            return max(1, now)
        per_worker = sorted(
            ((_per_node(res, cpu, gpu), count) for res, count in self.node_types.values()),
            reverse=True,
        )
        left = math.inf if self.max_workers is None else self.max_workers
        added = 0
        for each, count in per_worker:  # the fullest workers first, up to the global cap
            take = min(count, left)
            added, left = added + each * take, left - take
        return max(1, now, _per_node(self.head, cpu, gpu) + added)

    def describe(self, cpu: float, gpu: float) -> str:
        """Why `slots` says what it says, for the start-up line."""
        ask = f"{cpu:g} CPU" + (f" + {gpu:g} GPU" if gpu else "")
        if self.autoscaling:
            types = ", ".join(
                f"{name} x{count} {shape(res)}" for name, (res, count) in self.node_types.items()
            )
            cap = f", at most {self.max_workers} workers" if self.max_workers is not None else ""
            return f"{ask} per trial; the autoscaler ({self.source}) may add {types}{cap}"
        where = f"{len(self.nodes)} node(s) now, {shape(_total(self.nodes))}"
        return f"{ask} per trial; {where}; no autoscaling config found on this machine"


def trial_slots(search, capacity: Capacity) -> tuple[int, str]:
    """How many trials the tune and explore stages run at once, and why: the study's
    `search.max_concurrent_trials` when set, else the cluster's capacity (`Capacity.slots`)."""
    if search.max_concurrent_trials:
        return search.max_concurrent_trials, "search.max_concurrent_trials"
    cpu, gpu = search.resources.cpu, search.resources.gpu
    return capacity.slots(cpu, gpu), capacity.describe(cpu, gpu)


def _per_node(resources: dict[str, float], cpu: float, gpu: float) -> int:
    fits = [int(resources.get("CPU", 0) // cpu)] if cpu else []
    if gpu:
        fits.append(int(resources.get("GPU", 0) // gpu))
    return max(0, min(fits)) if fits else 0


def shape(resources: dict[str, float]) -> str:
    shown = {k: v for k, v in resources.items() if k in ("CPU", "GPU") and v}
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in shown.items()) + "}"


def _total(nodes: list[dict[str, float]]) -> dict[str, float]:
    total: dict[str, float] = {}
    for node in nodes:
        for key, value in node.items():
            total[key] = total.get(key, 0) + value
    return total


def read_autoscaling_config(path: str | Path) -> tuple[dict, int | None]:
    """{node type: (resources, max_workers)} of the worker types, and the global cap."""
    config = yaml.safe_load(Path(path).expanduser().read_text()) or {}
    head_type = config.get("head_node_type")
    types = {
        name: (
            {k: float(v) for k, v in (spec.get("resources") or {}).items()},
            int(spec.get("max_workers", 0)),
        )
        for name, spec in (config.get("available_node_types") or {}).items()
        if name != head_type
    }
    cap = config.get("max_workers")
    return types, None if cap is None else int(cap)


def monitor_config(gcs_address: str) -> Path | None:
    """The `--autoscaling-config` of the Ray monitor on this machine serving `gcs_address`."""
    port = gcs_address.rsplit(":", 1)[-1]
    for process in psutil.process_iter(["cmdline"]):
        args = process.info.get("cmdline") or []
        if not any(a.endswith(("monitor.py", "monitor")) for a in args[:3]):
            continue
        if not any(a.startswith("--gcs-address=") and a.rsplit(":", 1)[-1] == port for a in args):
            continue
        for arg in args:
            if arg.startswith("--autoscaling-config="):
                path = Path(arg.split("=", 1)[1]).expanduser()
                try:
                    return path if path.is_absolute() else Path(process.cwd()) / path
                except psutil.Error:
                    return None
    return None


def cluster_capacity(joined: bool = True) -> Capacity:
    """The connected cluster's capacity (`ray.init` done). `joined`: a cluster this driver
    joined (its autoscaling config is looked up); False for a Ray this command started, which
    has no autoscaler."""
    alive = [node for node in ray.nodes() if node.get("Alive")]
    nodes = [dict(node.get("Resources", {})) for node in alive]
    head = next((res for res in nodes if HEAD_RESOURCE in res), nodes[0] if nodes else {})
    if not joined:
        return Capacity(nodes, head)
    gcs = ray.get_runtime_context().gcs_address
    path = monitor_config(gcs) if gcs else None
    if path is None and BOOTSTRAP_CONFIG.expanduser().is_file():
        path = BOOTSTRAP_CONFIG.expanduser()
    if path is None or not path.is_file():
        return Capacity(nodes, head)
    types, cap = read_autoscaling_config(path)
    return Capacity(nodes, head, types, cap, str(path))
