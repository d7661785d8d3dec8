"""FreezeFrame's launcher: `python search/run.py --help`.

A thin script over the installed `freezeframe` package, so it also runs when copied alone to
another folder - which is what `ray submit cluster/cluster.yaml search/run.py -- ...` does.
"""

import atexit
import os
import sys

try:
    from search.cli import main
except ImportError as err:  # the script travelled without its package
    sys.exit(f"error: the freezeframe package is not installed here ({err}); run `pip install .`")


def exit_now(code: int) -> None:
    """Exit with `code` once everything is written: the atexit handlers run (Ray's shutdown of
    this study's cluster, W&B's, logging's), then the process ends without the interpreter's
    own teardown, in which torch's and Ray's native libraries held a finished driver for 3-12 s
    on a 2-core machine (measured: "done" printed, every atexit handler returned, then seconds
    with no Python frame running)."""
    sys.stdout.flush()
    sys.stderr.flush()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(int(code or 0))


if __name__ == "__main__":
    exit_now(main())
