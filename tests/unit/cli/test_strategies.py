"""`python -m trainables.strategies --json`: the strategy table with the paper's counts."""

import json
import subprocess
import sys

from helpers import PAPER_TRAINABLE

EXPECTED_TRAINABLE = {**PAPER_TRAINABLE, "all": 6_628_945}


def test_strategies_json_cli():
    out = subprocess.run(
        [sys.executable, "-m", "trainables.strategies", "--json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = {r["name"]: r for r in json.loads(out)}
    assert {n: r["trainable_params"] for n, r in rows.items()} == EXPECTED_TRAINABLE
    assert all(set(r) >= {"name", "trainable_params", "total_params"} for r in rows.values())
