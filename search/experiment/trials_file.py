"""The trials table's two files as text: a snapshot (one row per trial) and an events file (a
trial's row again at each change, one whole line each), and the one table they make together.

`search.experiment.folder` names the files and reads and writes them (`Experiment.read_trials`,
`write_trials`, `append_trials`); what a line holds and how the two merge is here.
"""

from __future__ import annotations

import csv
import io
import math

import pandas as pd


def csv_lines(rows: list[dict], columns: list[str], header: bool) -> bytes:
    """Rows (`columns` of each) as CSV lines, one line per row, as pandas writes them."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if header:
        writer.writerow(columns)
    writer.writerows([_field(row.get(column)) for column in columns] for row in rows)
    return buffer.getvalue().encode()


def _field(value):
    """Nothing for None or NaN (as pandas writes them); text on one line, so that a reader of
    a file cut short can keep every line up to its last newline."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, str):
        return " ".join(value.splitlines())
    return value


def whole_lines(data: bytes) -> pd.DataFrame | None:
    """The rows of an events file up to its last newline (a line a killed writer left unfinished
    is not read); None when it holds no row."""
    whole = data[: data.rfind(b"\n") + 1]
    if whole.count(b"\n") < 2:  # no row yet (or not even the header)
        return None
    return pd.read_csv(io.BytesIO(whole))


def last_row_per_trial(frame: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    """One row per trial (rows alike in the `key` columns): its last row, where its first stood."""
    if not set(key) <= set(frame.columns):
        return frame
    keys = list(zip(*(frame[column].astype(str) for column in key), strict=True))
    first: dict[tuple, int] = {}  # in the order trials first appear
    last: dict[tuple, int] = {}
    for position, trial in enumerate(keys):
        first.setdefault(trial, position)
        last[trial] = position
    return frame.iloc[[last[trial] for trial in first]].reset_index(drop=True)
