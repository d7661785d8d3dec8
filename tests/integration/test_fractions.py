"""Training-set size as a search axis (`search.train_fractions`): nested, exam-grouped, seeded
subsets of the training split; a budget in steps or epochs; one trial per share; learning
curves in the report that equal a recomputation from trials.csv; a resume that repeats no
finished trial."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import TINY, wait_for_trials

from search.driver.config import load_config
from search.report import build_report
from search.report.fractions import (
    CURVES_CSV,
    CURVES_PNG,
    largest_fraction_only,
    learning_curves,
    ranking_changes,
)
from search.shared.metrics import get_metric
from trainables.core.config import TrialConfig
from trainables.core.errors import ConfigError
from trainables.data.splits import exam_id, make_split, train_subset
from trainables.data.trial_data import load_trial_data
from trainables.training.setup import fraction_of_training, steps_per_epoch


def hc18_like_names(exams: int = 120, seed: int = 0) -> list[str]:
    """HC18-style names: exams with 1-3 images each (`010_HC.png`, `010_2HC.png`)."""
    rng = np.random.default_rng(seed)
    names = []
    for exam in range(1, exams + 1):
        names.append(f"{exam:03d}_HC.png")
        names += [f"{exam:03d}_{k}HC.png" for k in range(2, 2 + rng.integers(0, 3))]
    return names


def test_subsets_are_nested_exam_grouped_disjoint_from_val_and_test_and_seeded():
    names = hc18_like_names()
    split = make_split(names, "grouped", seed=0)
    train = split["train"]
    for seed in (0, 1, 7):
        small, mid, large = (train_subset(train, f, seed) for f in (0.1, 0.3, 0.5))
        assert set(small) <= set(mid) <= set(large) <= set(train)  # nested, training side only
        assert not set(large) & (set(split["val"]) | set(split["test"]))
        for subset, fraction in ((small, 0.1), (mid, 0.3), (large, 0.5)):
            # Whole exams: an exam is either wholly inside or wholly outside the subset.
            inside = {exam_id(n) for n in subset}
            assert {n for n in train if exam_id(n) in inside} == set(subset)
            # The share asked for, give or take the last exam's images.
            target = round(fraction * len(train))
            assert target <= len(subset) < target + 3
        # The same file list for the same seed, whatever order the names come in.
        assert train_subset(list(reversed(train)), 0.3, seed) == mid
    assert train_subset(train, 0.3, 0) != train_subset(train, 0.3, 1)
    assert train_subset(train, 1.0, 3) == sorted(train)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        train_subset(train, 0.0, 0)


@pytest.mark.parametrize("schedule", ["exponential", "step", "cosine", "none"])
def test_steps_budget_matches_the_whole_split_and_stretches_the_decay(schedule, sample_dir):
    cfg = TrialConfig(
        data_dir=str(sample_dir),
        image_size=32,
        batch_size=2,
        epochs=3,
        lr_schedule=schedule,
        lr_gamma=0.8,
        lr_step_size=2,
        train_fraction=0.4,
        seed=5,
    )
    data = load_trial_data(cfg)
    part_cfg, part = fraction_of_training(cfg, data)
    names = train_subset(data.split["train"], 0.4, 5)
    assert list(part.train.filenames) == names and len(names) < len(data.train)
    # Val and test untouched; the fingerprint (what a node's data is checked against) unchanged.
    assert part.val.filenames == data.val.filenames and part.test.filenames == data.test.filenames
    assert part.digest() == data.digest()
    full_steps = cfg.epochs * steps_per_epoch(len(data.train), cfg.batch_size)
    per_epoch = steps_per_epoch(len(names), cfg.batch_size)
    assert full_steps <= part_cfg.epochs * per_epoch < full_steps + per_epoch
    stretch = part_cfg.epochs / cfg.epochs
    if schedule == "exponential":  # the rate falls as far over the same steps
        assert part_cfg.lr_gamma**part_cfg.epochs == pytest.approx(cfg.lr_gamma**cfg.epochs)
    if schedule == "step":
        assert part_cfg.lr_step_size == round(cfg.lr_step_size * stretch)
    # Applying it twice changes nothing more (the trial applies it once, but must not compound).
    assert fraction_of_training(part_cfg, part) == (part_cfg, part)
    # The epochs budget keeps the epochs: fewer steps.
    same_epochs, _ = fraction_of_training(
        cfg.model_copy(update={"fraction_budget": "epochs"}), data
    )
    assert same_epochs.epochs == cfg.epochs and same_epochs.lr_gamma == cfg.lr_gamma


def test_run_name_and_config_checks():
    assert TrialConfig(strategy="decoder", seed=1).run_name == "decoder__seed1"
    assert (
        TrialConfig(strategy="decoder", seed=1, train_fraction=0.1).run_name
        == "decoder__f10__seed1"
    )
    half = TrialConfig(strategy="mobilenet_v2:dec3+head", train_fraction=0.125)
    assert half.run_name == "mobilenet_v2_dec3.head__f12.5__seed0"
    for bad, message in (
        ("[0.5, 0.5]", "listed more than once"),
        ("[0, 1.0]", r"not in \(0, 1\]"),
        ("[1.5]", r"not in \(0, 1\]"),
        ("[]", "at least 1"),
    ):
        with pytest.raises(ConfigError, match=message):
            load_config(None, [f"search.train_fractions={bad}"])
    with pytest.raises(ConfigError, match="unknown"):
        load_config(None, ["search.final_configs=[{strategy: nonsense, lr: 0.001}]"])
    cfg = load_config(Path(__file__).parents[1] / "configs" / "hc18_fractions.yaml")
    assert cfg.search.train_fractions == [0.1, 0.3, 1.0]
    assert [c.strategy for c in cfg.search.final_configs] == [
        "resnet18:enc1-2+enc4+dec0-1+dec3+head",
        "resnet18:enc0-1+dec3+head",
    ]


def curve_rows() -> pd.DataFrame:
    """Final rows where `small` wins on few images and `big` on many (seeds 0 and 1)."""
    rows = []
    dice = {("small", 0.1): 0.80, ("big", 0.1): 0.70, ("small", 1.0): 0.85, ("big", 1.0): 0.92}
    for (strategy, fraction), mean in dice.items():
        for seed, offset in ((0, -0.01), (1, 0.01)):
            rows.append(
                {
                    "stage": "final",
                    "strategy": strategy,
                    "seed": seed,
                    "train_fraction": fraction,
                    "train_images": 56 + seed if fraction < 1 else 559,
                    "status": "ok",
                    "trainable_params": 1000 if strategy == "small" else 50_000,
                    "test_dice": mean + offset,
                    "test_hc_fail_rate": 1 - mean,
                }
            )
    rows.append({**rows[0], "stage": "tune", "test_dice": np.nan})
    return pd.DataFrame(rows)


def test_learning_curves_and_the_statement_where_the_ranking_changes():
    metric = get_metric("test_dice")
    trials = curve_rows()
    curves = learning_curves(trials, metric)
    assert len(curves) == 4
    few = curves[curves.train_fraction == 0.1].set_index("strategy")
    assert few.loc["small", "rank"] == 1 and few.loc["big", "rank"] == 2
    assert few.loc["small", "test_dice_mean"] == pytest.approx(0.80)
    assert few.loc["small", "test_dice_min"] == pytest.approx(0.79)
    assert few.loc["small", "train_images"] == pytest.approx(56.5)
    assert few.loc["small", "pareto"] and not few.loc["big", "pareto"]  # dominated at 10%
    lines = ranking_changes(curves, metric)
    assert any("`small` leads on Dice" in line and "56 training images" in line for line in lines)
    crossing = [line for line in lines if not line.startswith("With")]
    assert crossing == [
        "Dice: below about 559 images `small` beats `big` (by 10.00 points at 56 images); from "
        "559 images on `big` is ahead."
    ]
    # Seeds whose ranges overlap: the statement says it may be noise.
    close = curves.copy()
    close.loc[close.strategy == "big", "test_dice_max"] = 0.95
    assert ranking_changes(close, metric)[-1].endswith("this may be noise.")
    # The rest of the report ranks the largest share only; other stages' rows are kept.
    kept = largest_fraction_only(trials)
    assert set(kept.loc[kept.stage == "final", "train_fraction"]) == {1.0}
    assert (kept.stage == "tune").sum() == 1


@pytest.mark.slow
def test_a_study_with_fractions_resumes_without_repeating_a_trial_and_reports_curves(
    ray_cluster, studies, tmp_path
):
    """The final grid strategy x seed x share, killed midway and resumed: no finished trial
    trains again; every row knows its share and images; each result stores its file list,
    which is the seeded nested subset; the report's learning curves equal a recomputation."""
    cluster = ray_cluster(head_cpus=1)
    experiment = tmp_path / "runs" / "curves"
    args = ["--storage", str(tmp_path / "runs"), "--name", "curves", "--stages", "final"]
    args += ["--set", "search.strategies=[decoder_4,decoder_2_3_4]", "--set", "search.seeds=[0,1]"]
    args += ["--set", "search.train_fractions=[0.5,1.0]", "--set", "trial.epochs=3"]
    args += ["--set", "search.max_concurrent_trials=1", *TINY, "--set", "trial.image_size=96"]
    first = studies(cluster.address, args, "first.log")

    def midway(trials: pd.DataFrame) -> bool:
        final = trials[trials.stage == "final"]
        return bool((final.status == "ok").sum() >= 3)

    wait_for_trials(first, experiment, midway, timeout=300)
    first.kill()
    time.sleep(1)
    results = experiment / "results" / "final"
    written = {p.name: p.stat().st_mtime_ns for p in results.glob("*.json")}
    assert 3 <= len(written) < 8

    resumed = studies(cluster.address, [*args, "--resume"], "resume.log")
    assert resumed.wait(600) == 0, resumed.log_tail()
    for name, mtime in written.items():  # a finished trial is not trained (or written) again
        assert (results / name).stat().st_mtime_ns == mtime, name
    trials = pd.read_csv(experiment / "trials.csv")
    final = trials[trials.stage == "final"]
    assert len(final) == 8 and (final.status == "ok").all(), final[["trial_name", "status"]]
    assert sorted(final.trial_name) == sorted(
        f"{s}__{f}seed{k}"
        for s in ("decoder_4", "decoder_2_3_4")
        for f in ("", "f50__")
        for k in (0, 1)
    )
    split = pd.read_csv(experiment / "split.csv")
    train = sorted(split.loc[split.split == "train", "filename"])
    for row in final.itertuples():
        result = json.loads((results / f"{row.trial_name}.json").read_text())
        assert result["train_files"] == train_subset(train, row.train_fraction, row.seed)
        assert row.train_images == len(result["train_files"])
        if row.train_fraction == 1.0:
            assert result["train_files"] == train
    half = final[final.train_fraction == 0.5].set_index(["strategy", "seed"])
    full = final[final.train_fraction == 1.0].set_index(["strategy", "seed"])
    assert (half.train_images < full.train_images).all()
    assert (half.epochs > full.epochs).all()  # the steps budget: more epochs on fewer images

    report = build_report(str(experiment))
    curves = pd.read_csv(report.out_dir / CURVES_CSV)
    assert (report.out_dir / CURVES_PNG).stat().st_size > 0
    recomputed = (
        final.groupby(["train_fraction", "strategy"])
        .agg(dice=("test_dice", "mean"), low=("test_dice", "min"), images=("train_images", "mean"))
        .reset_index()
    )
    merged = curves.merge(recomputed, on=["train_fraction", "strategy"], validate="1:1")
    assert len(merged) == 4
    np.testing.assert_allclose(merged.test_dice_mean, merged.dice)
    np.testing.assert_allclose(merged.test_dice_min, merged.low)
    np.testing.assert_allclose(merged.train_images, merged.images)
    # The main ranking is the whole training split's: one row per strategy, 2 seeds each.
    assert sorted(report.table.strategy) == ["decoder_2_3_4", "decoder_4"]
    text = (report.out_dir / "report.md").read_text()
    assert "## Training-set size (learning curves)" in text and "fraction_budget: steps" in text


def test_wandb_run_carries_the_share_as_tag_config_and_summary(tmp_path):
    """An offline trial run: the `train_fraction:0.1` tag, the config key and the
    `train_images` summary are in the run file W&B syncs later."""
    from search.shared.spec import WandbSettings
    from search.worker.wandb_link import finish_run, run_tags, start_run

    settings = WandbSettings(mode="offline", project="p", group="g", dir=str(tmp_path))
    cfg = TrialConfig(strategy="decoder", train_fraction=0.1)
    tags = run_tags("final", cfg.strategy, cfg.train_fraction)
    assert tags == ("final", "decoder", "train_fraction:0.1")
    import wandb

    run = start_run(settings, "final", cfg.run_name, cfg.model_dump(mode="json"), tmp_path, tags)
    try:
        run.summary.update({"train_images": 56})
        finish_run(run, None)
    finally:
        wandb.teardown()  # W&B keeps process-wide settings (its folder): later tests get fresh ones
    (record,) = tmp_path.glob("wandb/offline-run-*/run-*.wandb")
    data = record.read_bytes()
    for text in (b"train_fraction:0.1", b"train_fraction", b"train_images", b"decoder__f10__seed0"):
        assert text in data, text
