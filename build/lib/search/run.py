"""FreezeFrame's launcher: `python search/run.py --help`.

A thin script over the installed `freezeframe` package, so it also runs when copied alone to
another folder - which is what `ray submit cluster/cluster.yaml search/run.py -- ...` does.
"""

import sys

try:
    from search.cli import main
except ImportError as err:  # the script travelled without its package
    sys.exit(f"error: the freezeframe package is not installed here ({err}); run `pip install .`")

if __name__ == "__main__":
    sys.exit(main())
