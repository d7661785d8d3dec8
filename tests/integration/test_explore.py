"""Freeze masks and the explore stage: strategies as masks with exact counts, no all-frozen
mask trained, explore rows and their front, a resumed explore stage, a busy cluster."""

from __future__ import annotations

import dataclasses
import functools
import time

import optuna
import pandas as pd
import pytest
from helpers import PAPER_TRAINABLE, TINY, wait_for_trials

from search.driver.config import load_config
from search.driver.searcher import Past
from search.driver.stages.common import StageRunner
from search.driver.stages.explore import build_plan
from search.experiment.folder import Experiment
from search.report.explore import explore_rows
from trainables.nets.freeze import PART_ORDER, mask_name, parse_mask, part_sizes
from trainables.nets.models import ENCODERS, build_model, count_params
from trainables.nets.strategies import PAPER_STRATEGIES, apply_strategy, get_strategy


@pytest.mark.parametrize("name", PAPER_STRATEGIES)
def test_every_paper_strategy_is_a_mask_with_its_exact_count(name):
    strategy = get_strategy(name)
    network, parts = parse_mask(strategy.mask)
    assert network == ("unet64" if name == "baseline" else "mobilenet_v2")
    # The mask's name alone rebuilds the same strategy, and it trains exactly the paper's count.
    rebuilt = get_strategy(strategy.mask)
    assert (rebuilt.network, rebuilt.parts) == (strategy.network, strategy.parts)
    model = build_model(rebuilt.model, "none")
    applied = apply_strategy(model, rebuilt, verbose=False)
    assert applied.trainable_params == PAPER_TRAINABLE[name]
    assert applied.trainable_params == count_params(model, trainable_only=True)


def test_masks_are_named_readably_and_stably():
    assert get_strategy("decoder").mask == "mobilenet_v2:dec0-4"
    assert get_strategy("decoder_2_3_4").mask == "mobilenet_v2:dec2-4"
    assert get_strategy("all").mask == "mobilenet_v2:enc0-4+dec0-4+head"
    parts = {"enc4", "dec0", "dec1", "dec3", "head"}
    assert mask_name("resnet18", parts) == "resnet18:enc4+dec0-1+dec3+head"
    assert parse_mask("resnet18:enc4+dec0-1+dec3+head") == ("resnet18", frozenset(parts))
    with pytest.raises(ValueError, match=r"mask parts \['dec9'\] invalid"):
        parse_mask("mobilenet_v2:dec9")
    with pytest.raises(ValueError, match="'body' is not a part"):
        parse_mask("mobilenet_v2:body")
    with pytest.raises(KeyError, match="unknown network 'vgg11'"):
        get_strategy("vgg11:dec0-4")


@pytest.mark.parametrize("encoder", ENCODERS)
def test_every_parameter_of_each_encoder_is_in_exactly_one_part(encoder):
    sizes = part_sizes(encoder)
    model = build_model(f"unet_{encoder}", "none")
    assert sum(sizes.values()) == count_params(model)
    assert all(sizes[part] > 0 for part in PART_ORDER)  # five stages, five blocks, a head
    # Stages follow the resolution: the deepest stage holds the most encoder parameters.
    assert sizes["enc4"] == max(sizes[f"enc{i}"] for i in range(5))


def test_an_all_frozen_mask_is_never_trained(tmp_path):
    cfg = load_config(None, ["search.explore.trials=5", "search.explore.population=4"])
    runner = StageRunner(cfg, Experiment(str(tmp_path), "x"), "disabled")
    plan = build_plan(runner, "none")
    frozen = {f"train_{part}": False for part in PART_ORDER}
    recipe = {"lr": 1e-3, "lr_schedule": "none"}
    plan.queue.insert(0, {"encoder": "mobilenet_v2", "bn": "update", **frozen, **recipe})
    specs = [plan.propose()[0] for _ in range(5)]
    assert all(get_strategy(spec.trial.strategy).parts for spec in specs)
    failed = [t for t in plan.study.trials if t.state == optuna.trial.TrialState.FAIL]
    assert failed and not any(failed[0].params[f"train_{p}"] for p in PART_ORDER)
    assert plan.proposed == 5  # the refused proposal used no budget


def test_a_rebuilt_nsga2_study_breeds_from_the_earlier_generations(tmp_path):
    cfg = load_config(None, ["search.explore.trials=12", "search.explore.population=4"])
    runner = StageRunner(cfg, Experiment(str(tmp_path), "x"), "disabled")
    first = build_plan(runner, "none")
    past = []
    for i in range(8):
        _spec, trial = first.propose()
        past.append(Past(first.canonical(trial.params), "complete", {"val_dice": 0.5 + i / 100}))
    factory = functools.partial(optuna.samplers.NSGAIISampler, seed=1, population_size=4)
    rebuilt = dataclasses.replace(first, history=past, sampler=factory)
    sampler = rebuilt.study.sampler
    generation = sampler._get_generation_key()
    assert [t.system_attrs[generation] for t in rebuilt.study.trials] == [0] * 4 + [1] * 4
    _spec, trial = rebuilt.propose()
    assert rebuilt.study.trials[trial.number].system_attrs[generation] == 2
    parents = sampler.get_parent_population(rebuilt.study, 2)
    assert parents and {p.number for p in parents} <= set(range(8))


@pytest.mark.slow
def test_explore_writes_its_rows_front_and_resumes_without_repeating(
    ray_cluster, studies, tmp_path
):
    cluster = ray_cluster(head_cpus=2)
    experiment = tmp_path / "runs" / "explore"
    args = ["--storage", str(tmp_path / "runs"), "--name", "explore", "--stages", "explore"]
    args += ["--set", "search.explore.trials=6", "--set", "search.explore.population=4"]
    args += ["--set", "search.explore.encoders=[mobilenet_v2,resnet18]"]
    args += ["--set", "search.max_concurrent_trials=1", "--set", "trial.epochs=3", *TINY]
    # Start-or-resume: one command line for the first start and the restart (a Ray job retry).
    args += ["--resume", "auto"]
    first = studies(cluster.address, args, "first.log")
    wait_for_trials(first, experiment, lambda t: (t.status == "ok").sum() >= 2, timeout=240)
    first.kill()
    time.sleep(2)
    assert "--resume auto: starting" in first.log_path.read_text()
    written = {p: p.stat().st_mtime_ns for p in (experiment / "results").rglob("*.json")}
    assert (experiment / "lease.json").exists()  # the killed driver's: taken over at once
    resumed = studies(cluster.address, args, "resume.log")
    assert resumed.wait(400) == 0, resumed.log_tail()
    assert "--resume auto: continuing" in resumed.log_path.read_text()
    assert {p: p.stat().st_mtime_ns for p in written} == written  # none trained twice

    trials = pd.read_csv(experiment / "trials.csv")
    rows = trials[trials.stage == "explore"]
    assert len(rows) == 6 and rows.trial_name.is_unique
    assert set(rows.encoder) <= {"mobilenet_v2", "resnet18"}
    for row in rows.itertuples():
        strategy = get_strategy(row.strategy)  # the mask name, readable and parseable
        assert strategy.parts and row.encoder == strategy.network
        sizes = part_sizes(strategy.network)
        assert row.trainable_params == sum(sizes[p] for p in strategy.parts)
        assert row.total_params == sum(sizes.values())
    finished = rows[rows.status == "ok"]
    assert finished.val_dice.between(0, 1).all() and len(finished) >= 2

    # The report's front (search.report.explore) is the one recomputed here from trials.csv.
    shown = explore_rows(trials)
    ok = shown[shown.status == "ok"]
    expected = {
        r.trial_name
        for r in ok.itertuples()
        if not any(
            o.trainable_params <= r.trainable_params
            and o.val_dice >= r.val_dice
            and (o.trainable_params < r.trainable_params or o.val_dice > r.val_dice)
            for o in ok.itertuples()
        )
    }
    assert set(shown.loc[shown.on_front, "trial_name"]) == expected
    top = Experiment(str(tmp_path / "runs"), "explore").read_explore_top()
    assert {t["strategy"] for t in top} <= set(shown.loc[shown.on_front, "strategy"])
    assert (experiment / "studies" / "explore.db").exists()


@pytest.mark.slow
def test_one_tune_experiment_keeps_every_gpu_busy_until_the_budget_runs_out(
    ray_cluster, studies, tmp_path
):
    gpus = 2
    cluster = ray_cluster(head_cpus=0)
    cluster.add_node(num_cpus=gpus, num_gpus=gpus)  # logical GPUs: trials train on the CPU
    cluster.wait_for_nodes()
    experiment = tmp_path / "runs" / "busy"
    args = ["--storage", (tmp_path / "runs").as_uri(), "--name", "busy", "--stages", "tune"]
    args += ["--set", "search.strategies=[decoder_4,decoder_0_1]"]
    args += ["--set", "search.tune.trials_per_strategy=3", "--set", "search.tune.asha=false"]
    args += ["--set", "search.resources={cpu: 1, gpu: 1}", "--set", "trial.device=cpu"]
    # 20 epochs: a trial must outlast HAND_OVER_S for the test to tell a hand-over from a GPU
    # idle for a whole trial; at 10 epochs the shortest trial took 9.9 s on a quiet machine.
    args += ["--set", "trial.epochs=20", *TINY, "--set", "trial.image_size=320"]
    study = studies(cluster.address, args)
    assert study.wait(600) == 0, study.log_tail()
    trials = pd.read_csv(experiment / "trials.csv")
    assert len(trials) == 6 and (trials.status == "ok").all()
    # A freed GPU takes the next proposal at once: after every trial's end, while proposals
    # remain, the next trial starts within HAND_OVER_S (a new worker process starts: ~8 s
    # here). With one Tune experiment per strategy, a strategy's last proposal trained alone
    # while the next strategy waited: a GPU idle for a whole trial (20 s and more here).
    starts = sorted(trials.started)
    for end in sorted(trials.ended):
        later = [start for start in starts if start > end]
        if later:
            assert later[0] - end < HAND_OVER_S, (end, later[0], trials)
    assert (trials.started < trials.ended.min()).sum() == gpus  # both GPUs busy at once
    assert (trials.ended - trials.started).min() > HAND_OVER_S  # trials long enough to tell


HAND_OVER_S = 15
