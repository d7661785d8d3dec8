"""One stop path for a study: Ctrl+C (SIGINT), SIGTERM and a lost lease all end it.

A stop request records its reason and interrupts the Tune experiment in progress the way Tune's
own Ctrl+C handling does (SIGUSR1, which Tune listens to during `fit`): running trials stop with
their last epoch's checkpoint, and their rows stay open for `--resume`. The driver then checks
the request after each stage's Tune run and before each later stage or the report, and raises
`StudyStopped`, so nothing a finished stage would write (best recipes, the next stage, the
report) is written from a cut-short one. A second Ctrl+C stops at once (KeyboardInterrupt).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading

# Tune installs its own SIGINT handler during `fit`, which ends only that Tune run and returns
# as if it had finished; the study's handler must see Ctrl+C instead.
os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")


class _NoTuneRestoreHint(logging.Filter):
    """Tune's "Resume experiment with: Tuner.restore(...)" does not apply (FreezeFrame resumes
    with --resume); the driver prints its own resume command instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Tuner.restore" not in record.getMessage()


logging.getLogger("ray.tune.tune").addFilter(_NoTuneRestoreHint())

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}  # 128 + signal number, as shells do


class StudyStopped(Exception):
    """The study was asked to stop; `exit_code` is what the driver exits with."""

    def __init__(self, reason: str, exit_code: int):
        super().__init__(reason)
        self.exit_code = exit_code


class StopRequest:
    """The study's stop request: set once (the first reason wins), from any thread."""

    def __init__(self):
        self._lock = threading.Lock()
        self.reason: str | None = None
        self.exit_code = 1

    @property
    def requested(self) -> bool:
        return self.reason is not None

    def request(self, reason: str, exit_code: int) -> None:
        with self._lock:
            if self.reason is not None:
                return
            self.reason, self.exit_code = reason, exit_code
        # Tune's handler (installed during `fit`) ends its run as on Ctrl+C; outside `fit` the
        # handler `install` set ignores it. Delivered to the main thread whoever asks.
        os.kill(os.getpid(), signal.SIGUSR1)

    def check(self) -> None:
        """Raise `StudyStopped` if a stop was requested."""
        if self.reason is not None:
            raise StudyStopped(self.reason, self.exit_code)

    @contextlib.contextmanager
    def installed(self):
        """Within the block, SIGINT and SIGTERM request a stop (a second SIGINT raises
        KeyboardInterrupt); the request starts empty and the old handlers come back after."""

        def on_signal(signum, frame):
            if signum == signal.SIGINT and self.requested:
                raise KeyboardInterrupt
            name = signal.Signals(signum).name
            how = "Ctrl+C" if signum == signal.SIGINT else "a termination request"
            self.request(f"{how} ({name})", EXIT_CODES[signum])

        self.reason, self.exit_code = None, 1
        handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)}
        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGUSR1, lambda signum, frame: None)
        try:
            yield self
        finally:
            for signum, handler in handlers.items():
                signal.signal(signum, handler)


STOP = StopRequest()
