"""The search-efficiency benchmark's tables of REAL trials (`search.bench.efficiency`).

`python -m search.bench.table EXPERIMENT[:stage=source,...] ... --out FILE` turns finished
experiments (by default their explore and final stages' result files) into one row per trial: the
configuration as the explore stage proposes it (encoder, one flag per part, BatchNorm mode,
recipe), trainable parameters and the validation Dice after every epoch. Rows: `source` =
`explore` (an explore proposal) or `grid` (a final-stage trial of a named strategy: the paper's
grid). A comment line at the top names the command and the experiment it came from.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from search.experiment.folder import Experiment
from trainables.core.recipe import RECIPE_KEYS
from trainables.nets.freeze import PART_ORDER
from trainables.nets.strategies import get_strategy

FLAGS = [f"train_{part}" for part in PART_ORDER]
# Columns every table has (dice_e1 ... dice_eN follow, one per epoch).
COLUMNS = [
    "source",
    "trial_name",
    "status",
    "strategy",
    "encoder",
    "pretrained",
    *FLAGS,
    "bn",
    *RECIPE_KEYS,
    "seed",
    "trainable_params",
    "total_params",
    "epochs_trained",
    "val_dice",
    "ended",
]


def dice_columns(table: pd.DataFrame) -> list[str]:
    """dice_e1, dice_e2, ... in epoch order."""
    cols = [c for c in table.columns if c.startswith("dice_e")]
    return sorted(cols, key=lambda c: int(c.removeprefix("dice_e")))


def row_of(result: dict, source: str) -> dict:
    """One result file as a table row (the flags from the mask, Dice per epoch from history)."""
    strategy = get_strategy(result["strategy"])
    config = result["config"]
    parts = strategy.trainable_parts(bool(config.get("train_head", False)))
    everything = "all" in parts
    bn = config.get("bn_update_frozen")
    if bn is None:
        bn = strategy.bn_update_frozen
    row = {
        "source": source,
        "trial_name": result["trial_name"],
        "status": result.get("status", "ok"),
        "strategy": strategy.name,
        "encoder": strategy.network,
        "pretrained": bool(strategy.pretrained),
        **{f"train_{part}": int(everything or part in parts) for part in PART_ORDER},
        "bn": "update" if bn else "pinned",
        **{key: config.get(key) for key in RECIPE_KEYS},
        "seed": config["seed"],
        "trainable_params": int(result["trainable_params"]),
        "total_params": int(result["total_params"]),
        "epochs_trained": result.get("epochs_trained", len(result["history"])),
        "val_dice": float(result["val"]["dice"]),
        "ended": result.get("ended"),
    }
    for entry in result["history"]:
        row[f"dice_e{int(entry['epoch'])}"] = float(entry["val_dice"])
    return row


def stopped_result(trial: dict) -> dict:
    """A trial ASHA stopped (no result file: trials.csv's row only) in a result file's form;
    its Dice per epoch is unknown, its last reported Dice is `val.dice`."""
    config = {key: trial.get(key) for key in (*RECIPE_KEYS, "seed", "bn_update_frozen")}
    return {
        "strategy": trial["strategy"],
        "trial_name": trial["trial_name"],
        "status": trial["status"],
        "config": config,
        "trainable_params": trial["trainable_params"],
        "total_params": trial["total_params"],
        "history": [],
        "epochs_trained": int(trial["epochs"]),
        "val": {"dice": trial["val_dice"]},
        "ended": trial["ended"],
    }


def experiment_table(location: str | Path, stages: dict[str, str]) -> pd.DataFrame:
    """Every finished trial of `stages` ({stage: source}) of the experiment at `location`,
    and every trial ASHA stopped (status `stopped_early`, no Dice per epoch), in the order the
    trials ended (trials.csv's `ended`)."""
    experiment = Experiment.at(location)
    if not experiment.exists():
        raise SystemExit(f"experiment: no experiment at {location}")
    trials = experiment.read_trials() if experiment.has_trials() else pd.DataFrame()
    ended = dict(zip(trials.get("trial_name", []), trials.get("ended", []), strict=True))
    rows = []
    for stage, source in stages.items():
        for result in experiment.results(stage):
            result = {**result, "ended": ended.get(result["trial_name"])}
            rows.append(row_of(result, source))
        if len(trials):
            stopped = trials[(trials["stage"] == stage) & (trials["status"] == "stopped_early")]
            rows += [row_of(stopped_result(t), source) for t in stopped.to_dict("records")]
    if not rows:
        raise SystemExit(f"experiment {location}: no finished trial in {sorted(stages)}")
    table = pd.DataFrame(rows)
    for column in ("dice_e1",):  # a table of stopped trials only still has the column
        if column not in table:
            table[column] = np.nan
    table = table.sort_values(["ended", "trial_name"], kind="stable", na_position="last")
    return table[COLUMNS + dice_columns(table)].reset_index(drop=True)


def write_table(table: pd.DataFrame, path: str | Path, command: str) -> None:
    """The CSV with one comment line naming the command that made it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        f.write(f"# made by: {command}\n")
        table.to_csv(f, index=False)  # full precision: the recipe must compare equal


def read_table(path: str | Path) -> pd.DataFrame:
    """A table `write_table` wrote; a clear error naming the file when it is missing or lacks
    columns."""
    path = Path(path)
    if not path.is_file():
        raise SystemExit(
            f"--table: no such file {path} (make it with `python -m search.bench.table "
            "EXPERIMENT --out FILE`; README 'Search efficiency')"
        )
    table = pd.read_csv(path, comment="#")
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing or not dice_columns(table):
        raise SystemExit(f"{path}: not a benchmark table, lacks {missing or ['dice_e1 ...']}")
    return table


def parse_source(text: str) -> tuple[str, dict[str, str]]:
    """'runs/NAME' or 'runs/NAME:stage=source,...' as (location, {stage: source})."""
    location, _, pairs = text.rpartition(":")
    if "=" not in pairs:
        return text, dict(DEFAULT_STAGES)
    try:
        return location, dict(pair.split("=", 1) for pair in pairs.split(","))
    except ValueError:
        raise SystemExit(f"{text}: expected EXPERIMENT[:stage=source,...]") from None


DEFAULT_STAGES = {"explore": "explore", "final": "grid"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m search.bench.table", description=__doc__)
    parser.add_argument(
        "experiments",
        nargs="+",
        help="experiment folders (runs/NAME), each optionally with ':stage=source,...' (which "
        "stages' trials, labelled how; default explore=explore,final=grid)",
    )
    parser.add_argument("--out", required=True, help="the CSV to write")
    args = parser.parse_args(argv)
    tables = [experiment_table(*parse_source(text)) for text in args.experiments]
    table = pd.concat(tables, ignore_index=True)
    command = "python -m search.bench.table " + " ".join(argv if argv is not None else sys.argv[1:])
    write_table(table, args.out, command)
    print(f"{args.out}: {len(table)} trials ({table['source'].value_counts().to_dict()})")


if __name__ == "__main__":
    main()
