"""The learning-rate recipe's vocabulary (trainables.core.recipe): which schedule reads which
key, what the tune stage proposes, the trials.csv row as a proposal, the report's words, and
the configs refusing a schedule the vocabulary does not name."""

from __future__ import annotations

import io

import optuna
import pandas as pd
import pytest
import torch
from pydantic import ValidationError

from search.driver.config import SearchConfig, TuneSettings, load_config
from search.driver.trials_table import COLUMNS
from search.report.tune import recipe_text
from trainables.core import recipe
from trainables.core.config import TrialConfig
from trainables.core.errors import ConfigError
from trainables.training.setup import build_scheduler

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.mark.parametrize(
    ("schedule", "keys", "proposed"),
    [
        ("none", ("lr", "lr_schedule"), ("lr", "lr_schedule")),
        ("exponential", ("lr", "lr_schedule", "lr_gamma"), ("lr", "lr_schedule", "lr_gamma")),
        (
            "step",
            ("lr", "lr_schedule", "lr_gamma", "lr_step_size"),
            ("lr", "lr_schedule", "lr_gamma", "lr_step_size"),
        ),
        # The cosine floor is trained with but never proposed: the trial config's value is used.
        ("cosine", ("lr", "lr_schedule", "lr_min"), ("lr", "lr_schedule")),
    ],
)
def test_each_schedule_reads_its_keys_and_the_tune_stage_proposes_the_searched_ones(
    schedule, keys, proposed
):
    assert recipe.keys_of(schedule) == keys
    assert recipe.proposed_keys(schedule) == proposed


def test_the_vocabulary_names_every_schedule_and_key_the_trial_config_has():
    assert recipe.SCHEDULES == ("none", "exponential", "step", "cosine")
    assert recipe.RECIPE_KEYS == ("lr", "lr_schedule", "lr_gamma", "lr_step_size", "lr_min")
    assert set(recipe.RECIPE_KEYS) <= set(TrialConfig.model_fields)
    # trials.csv records every recipe key, lr_min included, in the vocabulary's order.
    start = COLUMNS.index("lr")
    assert tuple(COLUMNS[start : start + len(recipe.RECIPE_KEYS)]) == recipe.RECIPE_KEYS


def csv_rows() -> list[dict]:
    """Rows as trials.csv gives them back: every recipe column, NaN where not recorded,
    numpy scalars, a step size read as a float."""
    text = (
        "trial_name,lr,lr_schedule,lr_gamma,lr_step_size,lr_min\n"
        "a,0.0030000000000000001,step,0.5,2.0,0.0\n"
        "b,0.001,cosine,0.9,5,1e-06\n"
        "c,0.0001,none,,,\n"
        "d,0.0002,exponential,0.95,5,0.0\n"
    )
    return pd.read_csv(io.StringIO(text)).to_dict("records")


def test_recipe_params_of_a_trials_csv_row_keeps_only_the_proposed_keys_of_its_schedule():
    a, b, c, d = (recipe.recipe_params(row) for row in csv_rows())
    assert a == {"lr": 0.003, "lr_schedule": "step", "lr_gamma": 0.5, "lr_step_size": 2}
    assert type(a["lr_step_size"]) is int and type(a["lr_schedule"]) is str
    assert b == {"lr": 0.001, "lr_schedule": "cosine"}  # lr_gamma and lr_min dropped
    assert c == {"lr": 0.0001, "lr_schedule": "none"}
    assert d == {"lr": 0.0002, "lr_schedule": "exponential", "lr_gamma": 0.95}


def _legacy_space(trial, settings: dict) -> None:
    """The tune space as it was written before the vocabulary (tune.optuna_space): the new one
    must draw the same values in the same order for the same seed."""
    trial.suggest_float("lr", settings["lr_min"], settings["lr_max"], log=True)
    schedule = trial.suggest_categorical("lr_schedule", settings["schedules"])
    if schedule in ("exponential", "step"):
        trial.suggest_float("lr_gamma", settings["gamma_min"], settings["gamma_max"])
    if schedule == "step":
        trial.suggest_int("lr_step_size", 1, settings["step_size_max"])


def _proposals(space, ranges: dict, seed: int = 3, n: int = 16) -> list[dict]:
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    proposals = []
    for _ in range(n):
        trial = study.ask()
        space(trial, ranges)
        proposals.append(dict(trial.params))
        study.tell(trial, trial.params["lr"] * 100)  # a score, so TPE models after startup
    return proposals


def test_the_optuna_space_proposes_only_the_keys_of_the_schedule_it_draws():
    ranges = TuneSettings().model_dump()
    proposals = _proposals(recipe.suggest_recipe, ranges)
    assert {p["lr_schedule"] for p in proposals} == set(recipe.SCHEDULES)
    for params in proposals:
        assert tuple(params) == recipe.proposed_keys(params["lr_schedule"])
        assert "lr_min" not in params
        assert ranges["lr_min"] <= params["lr"] <= ranges["lr_max"]
        if "lr_gamma" in params:
            assert ranges["gamma_min"] <= params["lr_gamma"] <= ranges["gamma_max"]
        if "lr_step_size" in params:
            assert 1 <= params["lr_step_size"] <= ranges["step_size_max"]
    assert proposals == _proposals(_legacy_space, ranges)


def test_the_optuna_space_draws_only_the_configured_schedules():
    ranges = TuneSettings(schedules=["cosine", "none"]).model_dump()
    proposals = _proposals(recipe.suggest_recipe, ranges)
    assert {p["lr_schedule"] for p in proposals} == {"cosine", "none"}
    assert all(set(p) == {"lr", "lr_schedule"} for p in proposals)


def test_a_schedule_outside_the_vocabulary_is_refused_naming_the_key():
    with pytest.raises(ValidationError, match="lr_schedule"):
        TrialConfig(lr_schedule="linear")
    with pytest.raises(ConfigError, match=r"\[trial\]: invalid config\n  lr_schedule: Input"):
        load_config(None, ["trial.lr_schedule=linear"])
    with pytest.raises(ConfigError, match=r"tune\.schedules\.1: Input should be 'none'"):
        load_config(None, ["search.tune.schedules=[step,linear]"])
    found = {"strategy": "decoder", "lr": 1e-3, "lr_schedule": "warmup"}
    with pytest.raises(ValidationError, match=r"final_configs\.0\.lr_schedule"):
        SearchConfig(final_configs=[found])


def test_the_report_words_a_recipe_with_the_keys_its_schedule_reads():
    a, b, c, d = csv_rows()
    assert recipe_text(a) == "lr 0.003, step (gamma 0.5, every 2 epochs)"
    assert recipe_text(b) == "lr 0.001, cosine (to 1e-06)"
    assert recipe_text(c) == "lr 0.0001, constant"
    assert recipe_text(d) == "lr 0.0002, exponential (gamma 0.95)"
    # What is not recorded is not shown; a step size without its gamma neither.
    assert recipe_text({"lr": float("nan"), "lr_schedule": "step", "lr_step_size": 3}) == "step"
    assert recipe.recipe_text({"lr": 0.01, "lr_schedule": "cosine"}) == "lr 0.01, cosine"


@pytest.mark.parametrize("schedule", recipe.SCHEDULES)
def test_the_trainer_builds_each_schedule_from_the_keys_the_vocabulary_names(schedule):
    cfg = TrialConfig(
        lr_schedule=schedule, lr_gamma=0.7, lr_step_size=3, lr_min=1e-6, epochs=4, lr=0.1
    )
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    scheduler = build_scheduler(cfg, optimizer)
    torch_names = {"lr_gamma": "gamma", "lr_step_size": "step_size", "lr_min": "eta_min"}
    if schedule == "none":
        assert scheduler is None
        return
    read = {key: getattr(scheduler, torch_names[key]) for key in recipe.decay_keys(schedule)}
    assert read == {key: getattr(cfg, key) for key in recipe.decay_keys(schedule)}
