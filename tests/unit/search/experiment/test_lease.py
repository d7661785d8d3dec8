"""The lease on any storage (issue 21, item 3): exclusive on a local path however slow the disk
writes, kept by a live process of this machine whatever its heartbeat, taken over when its
driver is gone, and a lease file that is not a lease record refused with exit 2 before Ray
starts."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading

import pytest

import search.driver.study
from search import cli
from search.experiment.folder import CONFIG, LEASE, Experiment
from search.experiment.lease import Lease, LeaseHeld
from search.experiment.storage import ExperimentStore


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[]", "a JSON list, not an object"),
        ("42", "a JSON int, not an object"),
        ('{"heartbeat": null}', "no 'token' string"),
        ('{"owner": "x"}', "no 'token' string"),
        ('{"token": "t", "owner": {}, "heartbeat": null}', "no 'heartbeat' number"),
        ("{not json", "not JSON"),
    ],
)
def test_a_malformed_lease_file_is_refused_before_ray_starts(
    text, problem, tmp_path, capsys, monkeypatch
):
    def no_ray(*args, **kwargs):
        raise AssertionError("Ray was started although lease.json is malformed")

    monkeypatch.setattr(search.driver.study, "connect_ray", no_ray)
    experiment = tmp_path / "runs" / "exp"
    experiment.mkdir(parents=True)
    (experiment / CONFIG).write_text("{}\n")
    (experiment / LEASE).write_text(text)
    code = cli.main(["--storage", str(tmp_path / "runs"), "--name", "exp", "--resume"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"{experiment / LEASE} is not a lease record ({problem}" in err
    assert (experiment / LEASE).read_text() == text  # nothing written over it


def slow_lease_writes(monkeypatch) -> None:
    """Lease writes from the thread named "slow" take 0.6 s (a slow disk, mount or bucket)."""
    write_text = ExperimentStore.write_text

    def slow_write(store, rel, text):
        if rel == LEASE and threading.current_thread().name == "slow":
            threading.Event().wait(0.6)
        write_text(store, rel, text)

    monkeypatch.setattr(ExperimentStore, "write_text", slow_write)


def test_a_local_lease_is_exclusive_however_slow_the_write(tmp_path, monkeypatch):
    # Both drivers read "no lease", then one's write takes 0.6 s (a slow disk or network mount):
    # with write-then-verify and a 0.5 s settle both acquired it. The lock makes one wait.
    slow_lease_writes(monkeypatch)
    experiment = Experiment(str(tmp_path), "exp")
    leases, outcomes = [], {}

    def take(name: str) -> None:
        lease = Lease(experiment)
        leases.append(lease)
        try:
            lease.acquire()
            outcomes[name] = "held"
        except LeaseHeld:
            outcomes[name] = "refused"

    threads = [threading.Thread(target=take, args=(n,), name=n) for n in ("slow", "fast")]
    threads[0].start()
    threading.Event().wait(0.1)  # the fast one starts while the slow write is under way
    threads[1].start()
    for thread in threads:
        thread.join()
    try:
        assert sorted(outcomes.values()) == ["held", "refused"], outcomes
        holder = next(lease for lease in leases if lease._thread is not None)
        assert json.loads((tmp_path / "exp" / LEASE).read_text())["token"] == holder.token
    finally:
        for lease in leases:
            lease.release()


def test_a_live_process_of_this_machine_keeps_its_lease_whatever_its_heartbeat(tmp_path):
    experiment = Experiment(str(tmp_path), "exp")
    first = Lease(experiment)
    first.acquire()
    first._stop.set()  # suspended (Ctrl+Z): no heartbeat any more, the process lives
    record = json.loads(experiment.store.read_text(LEASE))
    record["heartbeat"] -= 3600
    experiment.store.write_text(LEASE, json.dumps(record))
    with pytest.raises(LeaseHeld, match="heartbeat 3600 s ago"):
        Lease(experiment).acquire()
    first.release()
    assert not experiment.store.exists(LEASE)


def test_on_an_object_store_two_racing_drivers_end_with_one_holder(tmp_path, monkeypatch):
    """The object-store path (a file:// URI takes it: no lock): write, settle, verify. With one
    driver's write delayed 0.6 s both may pass the settle; the one whose token did not land last
    finds the other's at its next heartbeat and stops its study (exit 2), so one holder is
    left."""
    import search.experiment.lease

    requests = []

    class Recorder:  # STOP without the signal it sends to end a running Tune experiment
        def request(self, reason: str, exit_code: int) -> None:
            requests.append((reason, exit_code))

    monkeypatch.setattr(search.experiment.lease, "STOP", Recorder())
    slow_lease_writes(monkeypatch)
    experiment = Experiment(tmp_path.as_uri(), "exp")
    assert experiment.store.is_remote
    leases = []

    def take() -> None:
        lease = Lease(experiment)
        leases.append(lease)
        with contextlib.suppress(LeaseHeld):
            lease.acquire()

    threads = [threading.Thread(target=take, name=n) for n in ("slow", "fast")]
    threads[0].start()
    threading.Event().wait(0.1)
    threads[1].start()
    for thread in threads:
        thread.join()
    holders = [lease for lease in leases if lease._thread is not None]
    try:
        assert holders
        for lease in holders:
            lease._stop.set()  # the next heartbeat by hand
            lease._heartbeat()
        keeping = [lease for lease in holders if not lease.lost]
        assert len(keeping) == 1
        assert json.loads((tmp_path / "exp" / LEASE).read_text())["token"] == keeping[0].token
        assert requests == [("another driver took this experiment's lease", 2)] * (len(holders) - 1)
    finally:
        for lease in leases:
            lease.release()


def test_a_lease_is_held_by_a_live_driver_and_taken_over_when_stale(tmp_path, monkeypatch):
    experiment = Experiment(str(tmp_path), "exp")
    first = Lease(experiment)
    first.acquire()
    try:
        with pytest.raises(
            LeaseHeld, match=rf"pid {first.owner['pid']} of .* heartbeat [01] s ago"
        ):
            Lease(experiment).acquire()
    finally:
        first._stop.set()  # the driver died: no more heartbeats, the lease stays
    record = json.loads(experiment.store.read_text(LEASE))
    record["heartbeat"] -= 31
    experiment.store.write_text(LEASE, json.dumps(record))
    # Its process (this one) still lives on this machine: held whatever the heartbeat (a
    # driver suspended with Ctrl+Z keeps its lease; issue 21, item 3).
    with pytest.raises(LeaseHeld, match=rf"pid {first.owner['pid']} of .* heartbeat 31 s ago"):
        Lease(experiment).acquire()
    # A driver of another machine without a heartbeat for 30 s died: taken over.
    record["owner"]["host"] = "another-host"
    experiment.store.write_text(LEASE, json.dumps(record))
    second = Lease(experiment)
    second.acquire()
    second.release()
    assert not experiment.store.exists(LEASE)


def test_a_lease_of_an_ended_process_on_this_machine_is_taken_over_at_once(tmp_path):
    experiment = Experiment(str(tmp_path), "exp")
    code = "import os; print(os.getpid())"
    ended = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    first = Lease(experiment)
    first.owner["pid"] = int(ended.stdout)  # a driver that was killed a moment ago
    first.acquire()
    first._stop.set()
    second = Lease(experiment)
    second.acquire()  # the heartbeat is fresh, yet its process is gone
    assert json.loads(experiment.store.read_text(LEASE))["token"] == second.token
    second.release()
    # The same record from another machine is held until its heartbeat is stale.
    first.owner["host"] = "another-host"
    first._write()
    with pytest.raises(LeaseHeld, match="on another-host"):
        Lease(experiment).acquire()
