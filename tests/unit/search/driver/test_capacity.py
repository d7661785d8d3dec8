"""Concurrency from capacity (`search.capacity`): an autoscaling cluster that starts with its
head alone gets as many trial slots as its autoscaler may add, never a silent 1; a trial that
fits on no node it has or may add is refused; a local path is refused where nodes may come."""

from __future__ import annotations

import pytest
from helpers import REPO

from search.driver.capacity import Capacity, monitor_config, read_autoscaling_config

CLUSTER = REPO / "cluster"
HEAD = {"CPU": 1.0, "node:__internal_head__": 1.0}


def local_capacity() -> Capacity:
    types, cap = read_autoscaling_config(CLUSTER / "local.yaml")
    return Capacity([HEAD], HEAD, types, cap, "cluster/local.yaml")


def test_local_yaml_is_shaped_like_cluster_yaml():
    local_types, local_cap = read_autoscaling_config(CLUSTER / "local.yaml")
    aws_types, aws_cap = read_autoscaling_config(CLUSTER / "cluster.yaml")
    assert local_types == {"ray.worker.gpu": ({"CPU": 1.0, "GPU": 1.0}, 3)} and local_cap == 3
    assert aws_types == {"ray.worker.t4": ({"CPU": 4.0, "GPU": 1.0}, 8)} and aws_cap == 8


def test_a_head_only_autoscaling_cluster_gets_a_slot_per_worker_it_may_add():
    capacity = local_capacity()
    assert capacity.autoscaling and capacity.multi_node
    # GPU trials: none fits on the head; three workers may come, one trial each.
    assert capacity.slots(1, 1) == 3
    # CPU trials: one on the head, one on each worker.
    assert capacity.slots(1, 0) == 4
    assert "may add ray.worker.gpu x3 {CPU: 1, GPU: 1}" in capacity.describe(1, 1)
    # cluster.yaml: 8 T4 workers of 4 CPUs; a head without GPU.
    types, cap = read_autoscaling_config(CLUSTER / "cluster.yaml")
    aws = Capacity([{"CPU": 8.0}], {"CPU": 8.0}, types, cap, "cluster.yaml")
    assert aws.slots(4, 1) == 8 and aws.slots(2, 0.5) == 16  # half a T4 each; none on the head
    assert aws.slots(2, 0) == 4 + 16  # CPU trials use the head too
    # The global cap holds even where the node types would allow more.
    capped = Capacity([HEAD], HEAD, {"a": ({"CPU": 1, "GPU": 1}, 5)}, 2, "x")
    assert capped.slots(1, 1) == 2


def test_fits_on_a_node_that_exists_or_may_be_added():
    capacity = local_capacity()
    assert capacity.fits(1, 1)  # a worker that may be added
    assert not capacity.fits(2, 1)  # no node type has 2 CPUs
    assert not capacity.fits(1, 2)
    fixed = Capacity([HEAD, {"CPU": 4.0, "GPU": 2.0}], HEAD)
    assert fixed.fits(4, 2) and not fixed.fits(5, 0) and fixed.slots(1, 1) == 2
    assert fixed.multi_node and not fixed.autoscaling
    alone = Capacity([HEAD], HEAD)
    assert not alone.multi_node and alone.slots(1, 1) == 1  # at least one, said so
    assert "no autoscaling config" in alone.describe(1, 1)


def test_the_monitor_config_is_found_by_the_gcs_port_it_serves(monkeypatch, tmp_path):
    import psutil

    class Process:
        def __init__(self, cmdline, cwd):
            self.info, self._cwd = {"cmdline": cmdline}, cwd

        def cwd(self):
            return self._cwd

    monitor = "/venv/lib/python3.11/site-packages/ray/autoscaler/_private/monitor.py"
    processes = [
        Process(["python", monitor, "--gcs-address=10.0.0.1:7000"], "/"),  # another cluster
        Process(
            ["python", monitor, "--gcs-address=10.0.0.1:6379", "--autoscaling-config=c/l.yaml"],
            str(tmp_path),
        ),
    ]
    monkeypatch.setattr(psutil, "process_iter", lambda attrs: iter(processes))
    assert monitor_config("10.0.0.1:6379") == tmp_path / "c" / "l.yaml"  # relative to its cwd
    assert monitor_config("10.0.0.1:7000") is None
    assert monitor_config("10.0.0.1:1234") is None


@pytest.mark.parametrize("storage_is_remote", [False, True])
def test_storage_rule_on_an_autoscaling_cluster(storage_is_remote, tmp_path, monkeypatch):
    from search.driver import preflight
    from search.driver.config import load_config
    from search.experiment.folder import Experiment
    from trainables.core.errors import ConfigError

    monkeypatch.setattr(preflight, "cluster_capacity", lambda joined: local_capacity())
    storage = (tmp_path / "runs").as_uri() if storage_is_remote else str(tmp_path / "runs")
    experiment = Experiment(storage, "x")
    gpu = load_config(None, ["search.resources={cpu: 1, gpu: 1}"])
    if storage_is_remote:
        assert preflight.check_cluster(gpu, experiment, started_here=False).slots(1, 1) == 3
    else:
        with pytest.raises(ConfigError, match=r"local path, and this Ray cluster's autoscaler"):
            preflight.check_cluster(gpu, experiment, started_here=False)
        shared = load_config(
            None, ["search.resources={cpu: 1, gpu: 1}", "search.shared_storage=true"]
        )
        preflight.check_cluster(shared, experiment, started_here=False)
    big = load_config(None, ["search.resources={cpu: 2, gpu: 1}", "search.shared_storage=true"])
    with pytest.raises(ConfigError, match="fits on no node of this cluster, nor on any node type"):
        preflight.check_cluster(big, experiment, started_here=False)
