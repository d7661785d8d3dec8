"""Splits: exams never straddle sides, splits are reproducible, the paper's CSV fails clearly."""

from __future__ import annotations

import pytest

from trainables.core.errors import SplitError
from trainables.data.hc18_files import scan_dataset
from trainables.data.splits import PAPER_SPLIT_CSV, exam_id, make_split, read_split_csv, write_split

# 100 names with multi-image exams, like HC18: every 4th exam has a second and third image.
NAMES = [
    f"{exam:03d}_{k}HC.png" if k else f"{exam:03d}_HC.png"
    for exam in range(80)
    for k in ([0, 2, 3] if exam % 4 == 0 else [0])
][:100]


def exams_by_side(split: dict[str, list[str]]) -> dict[str, set[str]]:
    return {side: {exam_id(n) for n in names} for side, names in split.items()}


def assert_partition(split: dict[str, list[str]], names: list[str]) -> None:
    assert set(split) == {"train", "val", "test"}
    everything = split["train"] + split["val"] + split["test"]
    assert sorted(everything) == sorted(names), "sides must cover the names exactly once"
    for side in split.values():
        assert side == sorted(side)


@pytest.mark.parametrize(
    "name, exam",
    [
        ("010_2HC.png", "010"),
        ("010_HC.png", "010"),
        ("133_4HC.png", "133"),
        ("scan7_a.png", "scan7"),
    ],
)
def test_exam_id(name, exam):
    assert exam_id(name) == exam


@pytest.mark.parametrize("kind", ["random", "grouped"])
def test_splits_partition_and_are_reproducible_whatever_the_input_order(kind):
    split = make_split(NAMES, kind, seed=3)
    assert_partition(split, NAMES)
    assert make_split(list(reversed(NAMES)), kind, seed=3) == split
    assert make_split(NAMES, kind, seed=4) != split


def test_random_split_sizes_follow_the_fractions():
    split = make_split(NAMES, "random", val_fraction=0.1, test_fraction=0.2, seed=0)
    assert [len(split[s]) for s in ("train", "val", "test")] == [70, 10, 20]
    assert exams_by_side(split)["train"] & exams_by_side(split)["test"], (
        "a random split over 100 images with multi-image exams should mix some exam"
    )


@pytest.mark.parametrize("seed", range(5))
def test_grouped_split_never_shares_an_exam_and_sizes_are_close(seed):
    split = make_split(NAMES, "grouped", val_fraction=0.1, test_fraction=0.2, seed=seed)
    assert_partition(split, NAMES)
    exams = exams_by_side(split)
    assert not exams["train"] & exams["val"]
    assert not exams["train"] & exams["test"]
    assert not exams["val"] & exams["test"]
    assert 20 <= len(split["test"]) <= 22 and 10 <= len(split["val"]) <= 12


@pytest.mark.parametrize("kind", ["random", "grouped"])
def test_three_images_give_one_per_side(kind):
    split = make_split(["001_HC.png", "002_HC.png", "003_HC.png"], kind, seed=0)
    assert [len(split[s]) for s in ("train", "val", "test")] == [1, 1, 1]


def test_grouped_split_with_too_few_exams_suggests_random():
    with pytest.raises(SplitError, match="use split='random'"):
        make_split(["001_HC.png", "001_2HC.png", "001_3HC.png", "002_HC.png"], "grouped")


def grouped_split_keeping_exams_together(folder, seed: int) -> dict[str, list[str]]:
    """The grouped split of a folder's images, checked: a partition, no exam on two sides."""
    names = [s.filename for s in scan_dataset(folder)]
    split = make_split(names, "grouped", seed=seed)
    assert_partition(split, names)
    exams = exams_by_side(split)
    assert not (exams["train"] & exams["val"] or exams["train"] & exams["test"])
    assert not exams["val"] & exams["test"]
    return split


@pytest.mark.parametrize("seed", range(3))
def test_grouped_split_of_synthetic_data(synthetic_dir, seed):
    grouped_split_keeping_exams_together(synthetic_dir, seed)


def test_unknown_kind_lists_the_valid_ones():
    with pytest.raises(SplitError, match=r"valid: \['file', 'grouped', 'random'\]"):
        make_split(NAMES, "stratified")


def test_paper_split_is_shipped_and_names_999_images():
    labels = read_split_csv(PAPER_SPLIT_CSV)
    assert len(labels) == 999
    assert sum(side == "test" for side in labels.values()) == 200


def test_paper_split_over_train_only_images_fails_clearly(sample_dir):
    names = [s.filename for s in scan_dataset(sample_dir)]
    with pytest.raises(SplitError, match="test side empty") as caught:
        make_split(names, "file")
    assert "split='grouped'" in str(caught.value)


def test_split_file_val_is_carved_from_train_by_exam_when_absent(tmp_path):
    csv = tmp_path / "split.csv"
    write_split({"train": NAMES[:80], "test": NAMES[80:]}, csv)
    split = make_split(NAMES, "file", split_file=csv, val_fraction=0.1, seed=1)
    assert split["test"] == sorted(NAMES[80:])
    assert 8 <= len(split["val"]) <= 10  # ~10% of the 80 train images, whole exams
    assert not exams_by_side(split)["train"] & exams_by_side(split)["val"]
    assert make_split(NAMES, "file", split_file=csv, seed=1) == split


def test_split_file_val_rows_are_kept(tmp_path):
    csv = tmp_path / "split.csv"
    write_split({"train": NAMES[:70], "val": NAMES[70:80], "test": NAMES[80:]}, csv)
    split = make_split(NAMES, "file", split_file=csv)
    assert split == {
        "train": sorted(NAMES[:70]),
        "val": sorted(NAMES[70:80]),
        "test": sorted(NAMES[80:]),
    }
    assert read_split_csv(csv)[NAMES[75]] == "val"


def test_split_file_names_files_it_does_not_list(tmp_path):
    csv = tmp_path / "split.csv"
    write_split({"train": NAMES[:50], "test": NAMES[50:60]}, csv)
    with pytest.raises(SplitError, match=r"40 file\(s\) are not in .*and 30 more"):
        make_split(NAMES, "file", split_file=csv)


def test_split_file_with_a_bad_label_names_the_line(tmp_path):
    csv = tmp_path / "split.csv"
    csv.write_text("filename,split\n000_HC.png,train\n001_HC.png,holdout\n")
    with pytest.raises(SplitError, match="line 3: '001_HC.png' -> 'holdout'"):
        read_split_csv(csv)


@pytest.mark.realdata
def test_paper_split_on_the_799_real_images(real_hc18_dir):
    names = [s.filename for s in scan_dataset(real_hc18_dir)]
    with pytest.raises(SplitError, match="test side empty"):
        make_split(names, "file")
    # With the paper's 200 test names beside them (a full download), the CSV's test side stays
    # as published and val is carved out of the 799 by exam.
    split = make_split(list(read_split_csv(PAPER_SPLIT_CSV)), "file")
    assert len(split["test"]) == 200 and not set(split["test"]) & set(names)
    assert sorted(split["train"] + split["val"]) == sorted(names)
    assert 70 <= len(split["val"]) <= 90
    assert not exams_by_side(split)["train"] & exams_by_side(split)["val"]


@pytest.mark.realdata
@pytest.mark.parametrize("seed", range(3))
def test_grouped_split_of_the_real_images_keeps_exams_together(real_hc18_dir, seed):
    split = grouped_split_keeping_exams_together(real_hc18_dir, seed)
    assert abs(len(split["test"]) - 160) <= 3 and abs(len(split["val"]) - 80) <= 3


@pytest.mark.parametrize("seed", range(8))
def test_grouped_split_never_leaves_a_side_empty_when_one_big_exam_comes_early(seed):
    # 3 exams, one holding 8 of the 10 images: filling test or val with the big exam must not
    # use up the exams the other sides need (an empty val once lost a whole trial at its end).
    names = ["000_HC.png", "001_HC.png"] + [f"002_{i}HC.png" for i in range(2, 10)]
    split = make_split(names, "grouped", seed=seed)
    assert all(split[side] for side in ("train", "val", "test")), split


def test_a_split_that_would_leave_val_empty_is_refused(tmp_path):
    csv = tmp_path / "split.csv"
    write_split({"train": ["000_HC.png"], "test": ["001_HC.png"]}, csv)
    with pytest.raises(SplitError, match="leaves val empty"):
        make_split(["000_HC.png", "001_HC.png"], "file", split_file=csv)
