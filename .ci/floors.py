"""Print pip constraints that pin every dependency of pyproject.toml (runtime and the given
extras) to its declared lower bound: `name==floor` for each `name>=floor`.

    python .ci/floors.py dev > floors.txt
    pip install -c floors.txt -e '.[dev]'

A dependency without a lower bound is an error: every range must say what it was tested with.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import tomllib

NAME = re.compile(r"\s*([A-Za-z0-9._-]+)")
FLOOR = re.compile(r">=\s*([^,;\s]+)")


def floors(pyproject: Path, extras: list[str]) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    declared = list(project["dependencies"])
    for extra in extras:
        declared += project["optional-dependencies"][extra]
    pins = []
    for text in declared:  # e.g. "ray[tune]>=2.60.0,<2.61" -> "ray==2.60.0"
        floor = FLOOR.search(text)
        if not floor:
            raise SystemExit(f"{pyproject}: {text!r} has no lower bound (>=)")
        pins.append(f"{NAME.match(text).group(1)}=={floor.group(1)}")
    return pins


if __name__ == "__main__":
    root = Path(__file__).resolve().parent.parent
    print("\n".join(floors(root / "pyproject.toml", sys.argv[1:])))
