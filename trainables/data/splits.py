"""Train/val/test splits of HC18 file names: from a CSV (the paper's), random, or by exam.

Several HC18 images come from one examination (`010_HC.png`, `010_2HC.png`); the 'grouped' split
keeps each exam on one side so near-duplicate images cannot leak from train into test.
Every split is deterministic for a seed and independent of the order of the input names.
`train_subset` takes a share of a split's training side, whole exams too (`train_fraction`).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from trainables.core.atomic import atomic_output
from trainables.core.config import shipped_config
from trainables.core.errors import SplitError

SIDES = ("train", "val", "test")
SPLIT_CSV_COLUMNS = ("filename", "split")
# The earlier study's split (999 annotated HC18 images: 799 train, 200 test), shipped in configs/.
PAPER_SPLIT_CSV = shipped_config("paper_split.csv")
_EXAM_PATTERN = re.compile(r"^(\d+)_\d*HC")


def exam_id(filename: str) -> str:
    """The examination a file belongs to: '010_2HC.png' -> '010' (else the stem before '_')."""
    name = Path(filename).name
    match = _EXAM_PATTERN.match(name)
    return match.group(1) if match else Path(name).stem.split("_")[0]


def by_exam(names: Sequence[str]) -> dict[str, list[str]]:
    """{exam: its file names, in the order given}."""
    exams: dict[str, list[str]] = {}
    for name in names:
        exams.setdefault(exam_id(name), []).append(name)
    return exams


def read_split_csv(path: str | Path) -> dict[str, str]:
    """CSV `filename,split` -> {filename: 'train'|'val'|'test'}. SplitError names bad rows."""
    path = Path(path)
    if not path.is_file():
        raise SplitError(f"split file not found: {path}")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        columns = tuple(c.strip() for c in reader.fieldnames or ())
        if columns[:2] != SPLIT_CSV_COLUMNS:
            raise SplitError(f"{path}: expected columns {list(SPLIT_CSV_COLUMNS)}, found {columns}")
        labels: dict[str, str] = {}
        bad: list[str] = []
        for line_no, row in enumerate(reader, start=2):
            name, side = ((row.get(c) or "").strip() for c in SPLIT_CSV_COLUMNS)
            if side not in SIDES or not name:
                bad.append(f"line {line_no}: {name!r} -> {side!r}")
            else:
                labels[name] = side
    if bad:
        raise SplitError(f"{path}: labels must be one of {list(SIDES)}:\n  " + "\n  ".join(bad))
    return labels


def split_csv(split: dict[str, list[str]]) -> str:
    """{'train': [...], ...} as CSV text `filename,split`, rows sorted by filename."""
    rows = sorted((name, side) for side, names in split.items() for name in names)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(SPLIT_CSV_COLUMNS)
    writer.writerows(rows)
    return buffer.getvalue()


def write_split(split: dict[str, list[str]], path: str | Path) -> None:
    with atomic_output(path, "w") as f:
        f.write(split_csv(split))


def _side_counts(n_items: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    """(n_val, n_test) by rounding; at least 1 for a side asked for when there are 3+ items."""
    n_val, n_test = round(n_items * val_fraction), round(n_items * test_fraction)
    if n_items >= 3:
        n_val = max(1, n_val) if val_fraction > 0 else 0
        n_test = max(1, n_test) if test_fraction > 0 else 0
        while n_val + n_test > n_items - 1:  # leave train at least one
            if n_val >= n_test:
                n_val -= 1
            else:
                n_test -= 1
    return n_val, n_test


def _random_split(
    names: list[str], *, val_fraction: float, test_fraction: float, seed: int, **_
) -> dict[str, list[str]]:
    """Seeded shuffle of the images; the first go to test, the next to val, the rest train."""
    order = np.random.default_rng(seed).permutation(len(names))
    n_val, n_test = _side_counts(len(names), val_fraction, test_fraction)
    shuffled = [names[i] for i in order]
    return {
        "test": shuffled[:n_test],
        "val": shuffled[n_test : n_test + n_val],
        "train": shuffled[n_test + n_val :],
    }


def _grouped_split(
    names: list[str], *, val_fraction: float, test_fraction: float, seed: int, **_
) -> dict[str, list[str]]:
    """Seeded shuffle of the exams; they fill test, then val, to their share of IMAGES."""
    exams = by_exam(names)
    n_val, n_test = _side_counts(len(names), val_fraction, test_fraction)
    sides_needed = 1 + (n_val > 0) + (n_test > 0)
    if len(exams) < sides_needed:
        raise SplitError(
            f"split='grouped' needs at least {sides_needed} exams, found {len(exams)} "
            f"({sorted(exams)}); use split='random'"
        )
    exam_ids = sorted(exams)
    order = np.random.default_rng(seed).permutation(len(exam_ids))
    split: dict[str, list[str]] = {side: [] for side in SIDES}
    targets = {"test": n_test, "val": n_val, "train": len(names)}
    remaining = len(exam_ids)

    def leaves_enough(side: str) -> bool:
        """After `side` takes this exam, one is left for every other side still empty."""
        empty = [s for s, n in targets.items() if n > 0 and s != side and not split[s]]
        return remaining - 1 >= len(empty)

    for i in order:
        group = exams[exam_ids[i]]
        # Fill test first, then val, each to its share; never at the cost of an empty side.
        side = next(
            (s for s in ("test", "val") if len(split[s]) < targets[s] and leaves_enough(s)),
            "train",
        )
        split[side] += group
        remaining -= 1
    return split


def _file_split(
    names: list[str],
    *,
    split_file: str | Path | None,
    val_fraction: float,
    seed: int,
    **_,
) -> dict[str, list[str]]:
    """Sides as labelled in a CSV; val carved out of train (by exam) when it has none."""
    split_file = PAPER_SPLIT_CSV if split_file is None else split_file
    labels = read_split_csv(split_file)
    absent = [n for n in names if n not in labels]
    if absent:
        more = f" and {len(absent) - 10} more" if len(absent) > 10 else ""
        raise SplitError(
            f"{len(absent)} file(s) are not in {split_file}: {', '.join(absent[:10])}{more}"
        )
    split = {side: [n for n in names if labels[n] == side] for side in SIDES}
    if not split["test"]:
        raise SplitError(
            f"split='file' with {split_file} leaves the test side empty: none of these "
            f"{len(names)} images is labelled 'test' (the earlier study's test images are not "
            "in this data folder). Use split='grouped' (or 'random') to hold out test images "
            "from this folder."
        )
    if not split["val"] and split["train"]:
        # Carve val out of train by exam, so the CSV's test side stays exactly as published.
        several_exams = len({exam_id(n) for n in split["train"]}) >= 2
        carve = _grouped_split if several_exams else _random_split
        carved = carve(split["train"], val_fraction=val_fraction, test_fraction=0.0, seed=seed)
        split["train"], split["val"] = carved["train"], carved["val"]  # test_fraction=0: none
    return split


_SPLITTERS: dict[str, Callable[..., dict[str, list[str]]]] = {
    "file": _file_split,
    "random": _random_split,
    "grouped": _grouped_split,
}


def make_split(
    filenames: Sequence[str],
    kind: Literal["file", "random", "grouped"],
    *,
    split_file: str | Path | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> dict[str, list[str]]:
    """Split file names into train/val/test.

    Args:
        filenames: the images to split (order does not matter).
        kind: 'file' (CSV `filename,split`; default the earlier study's configs/paper_split.csv;
            without val rows a seeded `val_fraction` of train, by exam, becomes val),
            'random' (by image) or 'grouped' (by exam: one exam never spans two sides).
        val_fraction, test_fraction: shares of the images ('grouped': approximately; at least
            one image each when there are 3+ images). 'file' uses only val_fraction.
        seed: the same seed gives the same split.

    Returns:
        {'train': [...], 'val': [...], 'test': [...]}: sorted, disjoint, covering `filenames`.
    """
    if kind not in _SPLITTERS:
        raise SplitError(f"unknown split kind {kind!r}; valid: {sorted(_SPLITTERS)}")
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise SplitError(
            f"val_fraction={val_fraction} and test_fraction={test_fraction} must each be in "
            "[0, 1) and sum to less than 1"
        )
    names = sorted(set(filenames))
    if len(names) != len(filenames):
        raise SplitError("filenames contains duplicates")
    split = _SPLITTERS[kind](
        names,
        split_file=split_file,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
    )
    asked = {"val": val_fraction > 0, "test": test_fraction > 0 and kind != "file"}
    empty = [side for side in SIDES if not split[side] and asked.get(side, True)]
    if empty:
        raise SplitError(
            f"split={kind!r} of {len(names)} image(s) leaves {' and '.join(empty)} empty; "
            "use more images"
        )
    return {side: sorted(split[side]) for side in SIDES}


def train_subset(train: Sequence[str], fraction: float, seed: int) -> list[str]:
    """A share of the training images for a learning curve: whole exams, in a seeded order,
    until `fraction` of the images is reached (at least 2 images).

    Nested by construction: every fraction takes a prefix of the same exam order, so for one
    seed the 10% subset lies inside the 30% one, and curves compare like with like. The order
    depends on the seed and the set of names only (not their order). Validation and test are
    not touched: this is applied to the training side of a split.

    Returns:
        the chosen file names, sorted (`train` itself when fraction is 1).
    """
    if not 0 < fraction <= 1:
        raise SplitError(f"train_fraction={fraction} must be in (0, 1]")
    names = sorted(set(train))
    if fraction == 1:
        return names
    exams = by_exam(names)
    exam_ids = sorted(exams)
    # Its own stream (not the split's): the same seed must not tie the subset to the split.
    order = np.random.default_rng([seed, 0x5EB5E7]).permutation(len(exam_ids))
    target = max(2, round(fraction * len(names)))  # BatchNorm trains on 2 images at least
    chosen: list[str] = []
    for i in order:
        if len(chosen) >= target:
            break
        chosen += exams[exam_ids[i]]
    return sorted(chosen)
