"""One driver per experiment: a lease in the experiment folder names the driver running it.

The driver refreshes the lease's heartbeat every `HEARTBEAT_S` seconds from a background thread
and removes it when it exits. A second driver on the same experiment (a `--resume` started
while the first is alive) finds a fresh heartbeat and stops, naming the owner. A lease whose
heartbeat is older than `STALE_S` belongs to a driver that died (SIGKILL, a lost head node):
`--resume` takes it over - at once when the lease names a process of this machine that no longer
runs (a driver killed on a laptop need not wait). Heartbeats compare clocks of two machines when
the storage is shared: keep them synchronised (NTP), as any cluster does.

On a local path (a laptop, a shared mount) taking the lease is exclusive: a driver holds an
exclusive lock on `.lease.lock` (flock) while it reads the lease and writes its own, however
slowly the disk writes. Object stores (s3://, gs://) offer no create-if-absent through pyarrow,
so there a driver writes its token, waits a settle time of at least `SETTLE_S` and
`SETTLE_FACTOR` times its own measured write time, and reads it back; of two drivers that raced,
the one whose write landed last keeps the lease, and a loser that verified too early finds the
other's token at its next heartbeat and stops the study (`search.shared.stop`).

A lease naming a live process of this machine is held whatever its heartbeat (a driver
suspended with Ctrl+Z keeps it); a lease file that is not a lease record is refused before
Ray starts (`read_lease` in preflight), naming the file.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import json
import os
import socket
import sys
import threading
import time
import uuid

from search.experiment.folder import LEASE, LEASE_LOCK, Experiment
from search.shared.stop import STOP
from trainables.core.errors import UserError

HEARTBEAT_S = 5.0
STALE_S = 30.0
SETTLE_S = 0.5
SETTLE_FACTOR = 3.0


class LeaseHeld(UserError):
    """Another live driver runs this experiment."""


class Lease:
    """The lease of one driver on one experiment: `acquire()`, then `release()` at exit."""

    def __init__(self, experiment: Experiment):
        self.experiment = experiment
        self.token = uuid.uuid4().hex
        self.owner = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "user": getpass.getuser(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        }
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = False

    def _read(self) -> dict | None:
        return read_lease(self.experiment)

    def _write(self) -> float:
        """Write this driver's record; the seconds the write took."""
        started = time.monotonic()
        record = {"token": self.token, "owner": self.owner, "heartbeat": time.time()}
        self.experiment.store.write_text(LEASE, json.dumps(record))
        return time.monotonic() - started

    @contextlib.contextmanager
    def _exclusive(self):
        """On a local path, an exclusive lock on the lease for the block (True); on an object
        store, nothing (False)."""
        folder = self.experiment.store.local_path()
        if folder is None:
            yield False
            return
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / LEASE_LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield True
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def acquire(self) -> None:
        """Take the lease, or raise LeaseHeld naming the live owner."""
        with self._exclusive() as exclusive:
            current = self._read()
            if current is not None and not _is_stale(current):
                raise LeaseHeld(_held_message(self.experiment, current))
            write_s = self._write()
        if not exclusive:  # an object store: write, settle, verify
            time.sleep(max(SETTLE_S, SETTLE_FACTOR * write_s))
            current = self._read()
            if current is None or current.get("token") != self.token:
                raise LeaseHeld(_held_message(self.experiment, current or {}))
        self._thread = threading.Thread(target=self._beat, name="freezeframe-lease", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                with self._exclusive():
                    self._heartbeat()
            except Exception as err:  # a storage hiccup: the next beat tries again
                print(f"warning: lease heartbeat failed ({err})", file=sys.stderr, flush=True)
            if self.lost:
                return

    def _heartbeat(self) -> None:
        current = self._read()
        if current is not None and current.get("token") != self.token:
            # Two drivers must not write one experiment: this one stops (shared.stop: the
            # running stage is cut short, no later stage runs, the CLI exits 2).
            print(
                "error: another driver took this experiment's lease (no heartbeat from here "
                f"reached the storage for {STALE_S:.0f} s?); stopping",
                file=sys.stderr,
                flush=True,
            )
            self.lost = True
            STOP.request("another driver took this experiment's lease", 2)
            return
        self._write()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=HEARTBEAT_S)
        with self._exclusive():
            try:
                current = self._read()
            except LeaseHeld:  # not a lease record any more: not ours to delete
                return
            if current is not None and current.get("token") == self.token:
                self.experiment.store.delete(LEASE)


def record_problem(text: str) -> str | None:
    """Why `text` is not a lease record (None when it is one)."""
    try:
        record = json.loads(text)
    except ValueError as err:
        return f"not JSON ({err})"
    if not isinstance(record, dict):
        return f"a JSON {type(record).__name__}, not an object"
    if not isinstance(record.get("token"), str):
        return "no 'token' string"
    if not isinstance(record.get("owner"), dict):
        return "no 'owner' object"
    heartbeat = record.get("heartbeat")
    if isinstance(heartbeat, bool) or not isinstance(heartbeat, int | float):
        return "no 'heartbeat' number"
    return None


def read_lease(experiment: Experiment) -> dict | None:
    """The experiment's lease record, None when there is none; LeaseHeld (a UserError: exit 2)
    for a file that is not one (every write is whole: a local rename or one object, so never a
    half-written one)."""
    store = experiment.store
    if not store.exists(LEASE):
        return None
    text = store.read_text(LEASE)
    problem = record_problem(text)
    if problem:
        raise LeaseHeld(_malformed_message(experiment, problem))
    return json.loads(text)


def _is_stale(record: dict) -> bool:
    """A lease is held while its owner is a live process of this machine, whatever its heartbeat
    (a suspended driver keeps it); a lease of this machine whose process has ended is stale at
    once; one of another machine is stale after STALE_S without a heartbeat."""
    owner = record["owner"]
    if owner.get("host") == socket.gethostname() and isinstance(owner.get("pid"), int):
        try:
            os.kill(owner["pid"], 0)  # signal 0: only asks whether the process exists
        except ProcessLookupError:
            return True
        except PermissionError:  # it exists, as another user's process
            pass
        return False
    return time.time() - record["heartbeat"] >= STALE_S


def _malformed_message(experiment: Experiment, problem: str) -> str:
    return (
        f"{experiment.store.uri_of(LEASE)} is not a lease record ({problem}); if no driver runs "
        "this experiment, delete the file and start again"
    )


def _held_message(experiment: Experiment, record: dict) -> str:
    owner = record.get("owner", {})
    age = time.time() - record.get("heartbeat", time.time())
    return (
        f"experiment {experiment.uri} is being run by another driver "
        f"(pid {owner.get('pid', '?')} of {owner.get('user', '?')} on {owner.get('host', '?')}, "
        f"started {owner.get('started', '?')}, heartbeat {age:.0f} s ago); wait for it to "
        f"finish, or, if it died, --resume after {STALE_S:.0f} s without a heartbeat"
    )
