"""One way to write a file so that readers see the whole old file or the whole new one.

Used for every file a reader may open while it is being written: checkpoints (torch.save), the
array cache (.npz), CSVs, the experiment folder's small files on a local path.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


@contextmanager
def atomic_output(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """Open a private temporary file beside `path`; rename it into place when the block ends.

    Concurrent writers (trials sharing a node) each get their own temporary file, and the last
    rename wins with a complete file. On an exception the temporary file is removed and `path`
    is left as it was.

    Args:
        path: the file to (re)write; its folder is created.
        mode: 'wb' or 'w' (text, newline='' so the csv module controls line endings).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The writer's pid in the name lets a clean-up tell a killed writer's leftovers (pid_of).
    fd, tmp = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp"
    )
    try:
        # mkstemp makes the file 0600; the rename would keep that, leaving results unreadable
        # to a team sharing the experiment folder. Give it what open() would: 0666 less umask.
        os.chmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, mode, **({} if "b" in mode else {"newline": ""})) as handle:
            yield handle
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def current_umask() -> int:
    """This process's umask, read without changing it where Linux tells it (/proc), else by
    setting and restoring it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def pid_of(leftover: Path) -> int | None:
    """The writer's pid of a temporary file `atomic_output` left behind, else None."""
    parts = leftover.name.split(".")
    if leftover.name.startswith(".") and parts[-1] == "tmp" and len(parts) >= 4:
        return int(parts[-3]) if parts[-3].isdigit() else None
    return None
