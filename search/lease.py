"""One driver per experiment: a lease in the experiment folder names the driver running it.

The driver refreshes the lease's heartbeat every `HEARTBEAT_S` seconds from a background thread
and removes it when it exits. A second driver on the same experiment (a `--resume` started
while the first is alive) finds a fresh heartbeat and stops, naming the owner. A lease whose
heartbeat is older than `STALE_S` belongs to a driver that died (SIGKILL, a lost head node):
`--resume` takes it over - at once when the lease names a process of this machine that no longer
runs (a driver killed on a laptop need not wait). Heartbeats compare clocks of two machines when
the storage is shared: keep them synchronised (NTP), as any cluster does.

Object stores have no atomic create-if-absent, so taking a lease is write-then-verify: a
driver writes its token, waits `SETTLE_S`, and reads it back; of two drivers that raced, the
one whose write landed last keeps the lease and the other stops.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import sys
import threading
import time
import uuid

from search.experiment import LEASE, Experiment
from search.stop import STOP
from trainables.config import ConfigError

HEARTBEAT_S = 5.0
STALE_S = 30.0
SETTLE_S = 0.5


class LeaseHeld(ConfigError):
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
        store = self.experiment.store
        if not store.exists(LEASE):
            return None
        try:
            return json.loads(store.read_text(LEASE))
        except (OSError, ValueError):
            return None  # half-written by a racing driver: treat as absent, verify below

    def _write(self) -> None:
        record = {"token": self.token, "owner": self.owner, "heartbeat": time.time()}
        self.experiment.store.write_text(LEASE, json.dumps(record))

    def acquire(self) -> None:
        """Take the lease, or raise LeaseHeld naming the live owner."""
        current = self._read()
        if current is not None and not _is_stale(current):
            raise LeaseHeld(_held_message(self.experiment, current))
        self._write()
        time.sleep(SETTLE_S)
        current = self._read()
        if current is None or current.get("token") != self.token:
            raise LeaseHeld(_held_message(self.experiment, current or {}))
        self._thread = threading.Thread(target=self._beat, name="freezeframe-lease", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                current = self._read()
                if current is not None and current.get("token") != self.token:
                    # Two drivers must not write one experiment: this one stops (search.stop:
                    # the running stage is cut short, no later stage runs, the CLI exits 2).
                    print(
                        "error: another driver took this experiment's lease (no heartbeat from "
                        f"here reached the storage for {STALE_S:.0f} s?); stopping",
                        file=sys.stderr,
                        flush=True,
                    )
                    self.lost = True
                    STOP.request("another driver took this experiment's lease", 2)
                    return
                self._write()
            except Exception as err:  # a storage hiccup: the next beat tries again
                print(f"warning: lease heartbeat failed ({err})", file=sys.stderr, flush=True)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=HEARTBEAT_S)
        current = self._read()
        if current is not None and current.get("token") == self.token:
            self.experiment.store.delete(LEASE)


def _is_stale(record: dict) -> bool:
    """No heartbeat for STALE_S, or the owner was a process on this machine that has ended."""
    if time.time() - record.get("heartbeat", 0) >= STALE_S:
        return True
    owner = record.get("owner", {})
    if owner.get("host") != socket.gethostname() or not isinstance(owner.get("pid"), int):
        return False
    try:
        os.kill(owner["pid"], 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except PermissionError:  # it exists, as another user's process
        pass
    return False


def _held_message(experiment: Experiment, record: dict) -> str:
    owner = record.get("owner", {})
    age = time.time() - record.get("heartbeat", time.time())
    return (
        f"experiment {experiment.uri} is being run by another driver "
        f"(pid {owner.get('pid', '?')} of {owner.get('user', '?')} on {owner.get('host', '?')}, "
        f"started {owner.get('started', '?')}, heartbeat {age:.0f} s ago); wait for it to "
        f"finish, or, if it died, --resume after {STALE_S:.0f} s without a heartbeat"
    )
