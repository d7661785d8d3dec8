"""The search-efficiency benchmark (search.bench.efficiency): its 2-D hypervolume, the epochs a
replay counts (ASHA-stopped trials included), the surrogate's cross-validation, and the CLI's
errors on a missing table or bad arguments."""

from __future__ import annotations

import json
import math

import numpy as np
import optuna
import pandas as pd
import pytest

from search.bench import efficiency
from search.bench.hypervolume import Event, Reference, curve, hypervolume
from search.bench.replay import Asha, Oracle, Setup, config_of, replay
from search.bench.surrogate import cross_validate, fit
from search.bench.table import COLUMNS, FLAGS, read_table, write_table
from search.driver.config import ExploreSettings, TuneSettings
from search.driver.stages.explore import canonical, explore_space
from trainables.nets.freeze import PART_ORDER, mask_name
from trainables.nets.strategies import PAPER_STRATEGIES, get_strategy

EPOCHS = 4


def fake_dice(params: dict, trainable: int) -> np.ndarray:
    """A made-up but learnable response: more trained parts and a middling lr score higher."""
    lr = math.log10(params["lr"])
    level = 0.55 + 0.03 * math.log10(trainable) - 0.04 * (lr + 3) ** 2
    level += 0.05 * (params["encoder"] == "resnet18")
    return np.clip(level - 0.2 / np.arange(1, EPOCHS + 1), 0.05, 0.99)


def synthetic_table(n: int = 30) -> pd.DataFrame:
    """Explore rows from the explore stage's own space (random sampler) and paper-grid rows,
    scored by `fake_dice`."""
    settings = ExploreSettings(encoders=["mobilenet_v2", "resnet18"]).model_dump()
    study = optuna.create_study(
        directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=3)
    )
    rows = []
    while len(rows) < n:
        trial = study.ask()
        if explore_space(trial, settings, TuneSettings().model_dump()) is False:
            continue
        params = canonical(trial.params)
        parts = [p for p in PART_ORDER if params[f"train_{p}"]]
        trainable, total = get_strategy(mask_name(params["encoder"], parts)).counts()
        rows.append(row(params, "explore", len(rows), trainable, total))
    for seed in (0, 1):
        for name in PAPER_STRATEGIES:
            strategy = get_strategy(name)
            params = {"encoder": "mobilenet_v2", "bn": "update", "lr": 1e-4}
            params |= {"lr_schedule": "exponential", "lr_gamma": 0.9}
            parts = strategy.trainable_parts()
            params |= {f"train_{p}": "all" in parts or p in parts for p in PART_ORDER}
            trainable, total = strategy.counts()
            rows.append(row(params, "grid", len(rows), trainable, total, seed, name))
    table = pd.DataFrame(rows)
    for column in COLUMNS:
        if column not in table:
            table[column] = np.nan
    return table


def row(params, source, i, trainable, total, seed=0, strategy=None) -> dict:
    dice = fake_dice(params, trainable) + 0.01 * seed
    out = {
        **params,
        **{f: int(params[f]) for f in FLAGS},
        "source": source,
        "trial_name": f"t{i}",
        "status": "ok",
        "strategy": strategy or f"mask{i}",
        "pretrained": strategy != "baseline",
        "seed": seed,
        "trainable_params": trainable,
        "total_params": total,
        "epochs_trained": EPOCHS,
        "val_dice": float(dice.max()),
        "ended": float(i),
    }
    return out | {f"dice_e{e + 1}": float(d) for e, d in enumerate(dice)}


@pytest.fixture(scope="module")
def table_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "table.csv"
    write_table(synthetic_table(), path, "synthetic (tests)")
    return path


def test_hypervolume_matches_a_hand_computed_front():
    ref = Reference(dice=0.5, log_params=7.0)
    # Points (log10 params, Dice): (3, 0.7), (5, 0.9), (6, 0.8) dominated by (5, 0.9),
    # and (8, 0.99) and (4, 0.4) outside the box. Strips: (7-3)x(0.7-0.5) + (7-5)x(0.9-0.7).
    dice = [0.7, 0.9, 0.8, 0.99, 0.4]
    log_params = [3.0, 5.0, 6.0, 8.0, 4.0]
    assert hypervolume(dice, log_params, ref) == pytest.approx(4 * 0.2 + 2 * 0.2)
    assert hypervolume([], [], ref) == 0.0
    # The same as Optuna's (minimisation of -Dice and log10 parameters), where it exists.
    hv = getattr(getattr(optuna, "_hypervolume", None), "compute_hypervolume", None)
    if hv is not None:
        inside = np.array([[-0.7, 3.0], [-0.9, 5.0], [-0.8, 6.0]])
        assert hv(inside, np.array([-0.5, 7.0])) == pytest.approx(1.2)


def test_curve_counts_a_trial_once_its_epochs_are_spent_and_strategy_seeds_at_their_mean():
    ref = Reference(dice=0.5, log_params=7.0)
    events = [Event(4, 0.7, 3.0, "a"), Event(2, 0.9, 5.0, "b"), Event(4, 0.5 + 0.2, 5.0, "b")]
    hv = curve(events, [3, 4, 6, 10], ref)
    assert hv[0] == 0.0  # nothing has ended after 3 epochs
    assert hv[1] == pytest.approx(4 * 0.2)
    assert hv[2] == pytest.approx(4 * 0.2 + 2 * 0.2)
    # b's two trials average to 0.8: its strip shrinks to (7 - 5) x (0.8 - 0.7).
    assert hv[3] == pytest.approx(4 * 0.2 + 2 * 0.1)


def test_asha_follows_ray_tunes_rungs_and_cutoff():
    asha = Asha(grace_period=2, max_t=5)  # the explore stage: max_t = epochs + 1
    assert list(asha.rungs) == [2]
    assert list(Asha(grace_period=1, max_t=5).rungs) == [4, 1]
    assert not asha.stops(2, 0.5)  # the first trial at a rung goes on
    assert not asha.stops(1, 0.0) and not asha.stops(3, 0.0)  # no rung there
    assert asha.stops(2, 0.4)
    assert not asha.stops(2, 0.6)
    # recorded 0.5, 0.4, 0.6: the 75th percentile is 0.55.
    assert asha.stops(2, 0.54) and not asha.stops(2, 0.56)


def test_replay_spends_the_epochs_its_trials_trained_asha_stops_included(table_csv):
    table = read_table(table_csv)
    encoders = ["mobilenet_v2", "resnet18"]
    oracle = Oracle(table, fit(table, "knn", encoders), encoders)
    setup = Setup(tuple(encoders), EPOCHS, budget=60, grace_period=2)
    with_asha = replay("random+asha", 0, oracle, setup)
    spent = sum(e.epochs for e in with_asha)
    assert {e.epochs for e in with_asha} <= {2, 4}
    assert any(e.epochs == 2 for e in with_asha), "ASHA stopped no trial"
    # A stopped trial spends its epochs but is not on the validation front (no result file).
    assert all(math.isnan(e.dice) == (e.epochs == 2) for e in with_asha)
    # Proposals run until the budget is spent; the last may overrun it by less than a trial.
    assert 60 <= spent < 60 + EPOCHS
    assert spent - with_asha[-1].epochs < 60
    plain = replay("random", 0, oracle, setup)
    assert all(e.epochs == EPOCHS for e in plain) and len(plain) == 15
    # The random sampler with seed 3 proposes what the table holds: looked up, not predicted.
    oracle.hits = 0
    replay("random", 3, oracle, Setup(tuple(encoders), EPOCHS, budget=20))
    assert oracle.hits == 5
    grid = replay("grid", 0, oracle, Setup(tuple(encoders), EPOCHS, budget=1000))
    assert sum(e.epochs for e in grid) == 16 * EPOCHS  # 8 strategies x 2 seeds, measured


def test_table_rows_compare_equal_to_the_explore_stages_canonical_form(table_csv):
    table = read_table(table_csv)
    first = table[table["source"] == "explore"].iloc[0].to_dict()
    params = config_of(first)
    assert set(params) >= {"encoder", "bn", "lr", "lr_schedule", *FLAGS}
    assert params["lr"] == pytest.approx(first["lr"], rel=1e-11)


def test_surrogate_cross_validation_reports_every_model_and_epoch(table_csv):
    table = read_table(table_csv)
    cv = cross_validate(table, ["mobilenet_v2", "resnet18"])
    assert set(cv["model"]) == {"knn", "ridge", "mean"}
    assert sorted(cv["epoch"].unique()) == [1, 2, 3, 4]
    assert (cv["rmse"] >= cv["mae"] - 1e-12).all()
    # The made-up response is learnable: ridge beats predicting the mean at the last epoch.
    last = cv[cv["epoch"] == 4].set_index("model")["rmse"]
    assert last["ridge"] < last["mean"]
    # 44 pretrained rows (30 explore + 14 grid, the 2 baseline rows are from scratch).
    assert cv["rows"].iloc[0] == 44


def test_cli_writes_table_plot_and_check_verdict(table_csv, tmp_path):
    out = tmp_path / "out"
    argv = ["--table", str(table_csv), "--out", str(out), "--seeds", "2", "--budget", "24"]
    argv += ["--budgets", "12,24", "--algorithms", "random,nsga2+asha,grid"]
    argv += ["--check", str(table_csv), "--check-algorithm", "random"]
    efficiency.main(argv)
    facts = json.loads((out / "efficiency.json").read_text())
    assert facts["reference"] == {"dice": 0.5, "log10_params": 7.5}
    assert facts["check"]["points"] >= 1
    text = (out / "efficiency.md").read_text()
    assert "| nsga2+asha |" in text and "x1.00" in text  # random against itself
    curves = pd.read_csv(out / "curves.csv")
    assert set(curves["seed"]) == {0, 1} and curves["epochs"].max() == 24
    assert (out / "efficiency.png").stat().st_size > 1000


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--algorithms", "bayes"], "--algorithms: unknown ['bayes']"),
        (["--seeds", "0"], "--seeds: must be a positive count"),
        (["--budgets", "10,x"], "--budgets: comma-separated"),
        (["--budget", "50", "--budgets", "100"], "--budgets: each in 1..--budget (50)"),
    ],
)
def test_cli_rejects_bad_arguments_by_name(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit):
        efficiency.main(["--out", str(tmp_path), *argv])
    assert message in capsys.readouterr().err


def test_cli_names_a_missing_table(tmp_path):
    with pytest.raises(SystemExit, match="--table: no such file .*nowhere.csv"):
        efficiency.main(["--out", str(tmp_path), "--table", str(tmp_path / "nowhere.csv")])


def test_table_reads_an_experiments_result_files_in_the_order_trials_ended(tmp_path):
    from search.bench.table import experiment_table
    from search.experiment.folder import Experiment

    experiment = Experiment(str(tmp_path), "study")
    experiment.write_config({"search": {"name": "study"}})
    history = [{"epoch": e, "val_dice": 0.5 + 0.1 * e} for e in (1, 2)]
    config = {"seed": 0, "bn_update_frozen": False, "train_head": False, "lr": 1e-3}
    config |= {"lr_schedule": "none", "lr_gamma": 0.9, "lr_step_size": 5, "lr_min": 0.0}
    for name, strategy, stage in [
        ("late", "resnet18:enc0+head", "explore"),
        ("early", "decoder", "final"),
    ]:
        result = {"strategy": strategy, "trial_name": name, "config": config, "history": history}
        result |= {"trainable_params": 10, "total_params": 20, "val": {"dice": 0.7}}
        experiment.write_result(stage, name, result)
    stopped = {"trial_name": "stopped", "status": "stopped_early", "stage": "explore"}
    stopped |= {"strategy": "mobilenet_v2:dec4", "epochs": 1, "val_dice": 0.4, "ended": 1.5}
    stopped |= {"trainable_params": 5, "total_params": 20, "seed": 0, "bn_update_frozen": True}
    stopped |= {"lr": 1e-3, "lr_schedule": "none"}
    trials = pd.DataFrame({"trial_name": ["late", "early"], "status": "ok", "ended": [2.0, 1.0]})
    trials["stage"] = ["explore", "final"]
    experiment.write_trials(pd.concat([trials, pd.DataFrame([stopped])], ignore_index=True))
    table = experiment_table(tmp_path / "study", {"explore": "explore", "final": "grid"})
    assert list(table["trial_name"]) == ["early", "stopped", "late"]
    cut = table.iloc[1]  # ASHA stopped it: trials.csv's row, no Dice per epoch
    assert cut["status"] == "stopped_early" and cut["epochs_trained"] == 1
    assert cut["val_dice"] == 0.4 and math.isnan(cut["dice_e1"]) and cut["train_dec4"] == 1
    late = table.iloc[2]
    assert late["source"] == "explore" and late["encoder"] == "resnet18" and late["bn"] == "pinned"
    assert [late[f"train_{p}"] for p in ("enc0", "enc1", "head")] == [1, 0, 1]
    assert late["dice_e2"] == pytest.approx(0.7) and late["epochs_trained"] == 2
    early = table.iloc[0]  # the paper's decoder: every decoder block, MobileNetV2
    assert early["source"] == "grid" and early["encoder"] == "mobilenet_v2"
    assert [early[f"train_dec{i}"] for i in range(5)] == [1] * 5 and early["train_enc0"] == 0


def test_table_sources_name_the_stages_and_labels_of_each_experiment():
    from search.bench.table import parse_source

    assert parse_source("runs/a") == ("runs/a", {"explore": "explore", "final": "grid"})
    assert parse_source("s3://b/runs/a:explore=check") == ("s3://b/runs/a", {"explore": "check"})
    with pytest.raises(SystemExit, match="EXPERIMENT"):
        parse_source("runs/a:explore=x,final")


def test_a_check_runs_rows_are_never_fitted(table_csv):
    table = read_table(table_csv)
    checked = pd.concat([table, table.assign(source="check")], ignore_index=True)
    cv = cross_validate(checked, ["mobilenet_v2", "resnet18"])
    assert cv["rows"].iloc[0] == 44


def test_the_grid_is_charged_for_a_strategy_the_table_lacks(table_csv):
    table = read_table(table_csv)
    without = table[table["strategy"] != "baseline"].reset_index(drop=True)
    encoders = ["mobilenet_v2", "resnet18"]
    oracle = Oracle(without, fit(without, "knn", encoders), encoders)
    events = replay("grid", 1, oracle, Setup(tuple(encoders), EPOCHS, budget=1000))
    assert sum(e.epochs for e in events) == 16 * EPOCHS
    assert sum(math.isnan(e.dice) for e in events) == 2  # baseline, both seeds: no point
    hv = curve(events, [16 * EPOCHS])[0]
    assert hv > 0 and math.isfinite(hv)
