"""The errors a user can fix, all under one base: `UserError`.

Every CLI catches `UserError` once, prints its message (which names the file, key or setting at
fault) and exits 2, before any work starts where it can. Each subclass keeps the built-in base it
had (ValueError, RuntimeError), so `except ValueError` elsewhere still sees it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


class UserError(Exception):
    """A problem in what the user asked for or provided; the message says what and where."""


class DeviceError(UserError, RuntimeError):
    """The asked-for device cannot be used; the message says what torch sees."""


class ConfigError(UserError, ValueError):
    """A config file or override that cannot be used; the message names the file and key."""


class DataError(UserError, ValueError):
    """Bad input found before training; `.problems` lists 'file: what is wrong' strings.

    str(err) is one message, headed by the data dir, with every problem on its own line.
    """

    def __init__(self, problems: Sequence[str], data_dir: str | Path | None = None):
        self.problems = list(problems)
        self.data_dir = data_dir
        head = f"{data_dir}: " if data_dir is not None else ""
        count = len(self.problems)
        lines = [f"{head}{count} problem(s) in the HC18 data:"]
        lines += [f"  {p}" for p in self.problems]
        super().__init__("\n".join(lines))

    def __reduce__(self):  # pickled across processes (a Ray trial's error) with its problems
        return type(self), (self.problems, self.data_dir)


class SplitError(UserError, ValueError):
    """A split that cannot be made as asked; the message says why and what to do instead."""


class WeightsError(UserError, RuntimeError):
    """Encoder weights could not be obtained; the message says what to do instead."""


class CheckpointError(UserError, RuntimeError):
    """A checkpoint that cannot be loaded safely."""
