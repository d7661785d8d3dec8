"""The driver-trial contract: one typed spec, validated on both sides; a tune proposal is named
after its recipe and labelled `paper` only when it is the paper's recipe."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from search.driver.config import load_config
from search.driver.stages.common import StageRunner
from search.experiment.folder import Experiment
from search.shared.spec import TrialSpec


@pytest.fixture
def runner(tmp_path) -> StageRunner:
    cfg = load_config(None, ["search.strategies=[decoder]", "search.seeds=[0]"])
    return StageRunner(cfg, Experiment(str(tmp_path), "x"), "disabled")


def test_a_spec_survives_the_trip_to_the_trial(runner):
    spec = runner.spec("final", strategy="decoder_4", seed=3, recipe="best", lr=0.003)
    received = TrialSpec.from_tune_config({"spec": spec.to_param()})
    assert received == spec
    assert received.name == "decoder_4__seed3"
    assert received.trial.lr == 0.003 and received.recipe == "best"


def test_a_tune_proposal_is_named_after_its_recipe(runner):
    spec = runner.spec("tune", strategy="decoder")
    proposed = spec.with_proposal({"lr": 0.01, "lr_schedule": "cosine"})
    assert (proposed.trial.lr, proposed.trial.lr_schedule) == (0.01, "cosine")
    assert proposed.recipe == "optuna" and proposed.name.startswith("decoder__seed0__")
    # The same recipe read back from trials.csv (floats, a stray gamma) names the same trial.
    again = spec.with_proposal({"lr": 0.0100000000000001, "lr_schedule": "cosine", "lr_gamma": 0.9})
    assert again.name == proposed.name
    assert spec.with_proposal({"lr": 0.02, "lr_schedule": "cosine"}).name != proposed.name


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda p: p.update(stagee="tune"), "stagee"),
        (lambda p: p["trial"].update(epochs="two"), "trial.epochs"),
        (lambda p: p["wandb"].pop("mode"), "wandb.mode"),
        (lambda p: p.update(recipe="guess"), "recipe"),
    ],
)
def test_a_wrong_field_fails_on_the_trial_side_with_its_name(runner, change, field):
    param = runner.spec("final").to_param()
    change(param)
    with pytest.raises(ValidationError) as caught:
        TrialSpec.from_tune_config({"spec": param})
    assert field in str(caught.value)


def test_a_wrong_field_fails_on_the_driver_side_with_its_name(runner):
    with pytest.raises(ValidationError, match="lr_schedule"):
        runner.spec("final", lr_schedule="linear")
    with pytest.raises(ValidationError, match="learning_rate"):
        runner.spec("final", learning_rate=0.1)


@pytest.mark.parametrize(
    ("values", "label"),
    [
        ({"lr": 1e-4, "lr_schedule": "step", "lr_gamma": 0.9, "lr_step_size": 5}, "paper"),
        ({"lr": 1e-4, "lr_schedule": "step", "lr_gamma": 0.9, "lr_step_size": 3}, "optuna"),
        ({"lr": 1e-4, "lr_schedule": "step", "lr_gamma": 0.8, "lr_step_size": 5}, "optuna"),
        ({"lr": 2e-4, "lr_schedule": "step", "lr_gamma": 0.9, "lr_step_size": 5}, "optuna"),
        ({"lr": 1e-4, "lr_schedule": "exponential", "lr_gamma": 0.9}, "optuna"),
    ],
)
def test_a_tune_proposal_is_labelled_paper_only_when_it_is_the_papers_recipe(
    values, label, tmp_path
):
    from search.driver.stages.common import StageRunner
    from search.experiment.folder import Experiment
    from search.shared.spec import TrialSpec

    cfg = load_config(None, ["lr_schedule=step", "lr_gamma=0.9", "lr_step_size=5"])
    spec = StageRunner(cfg, Experiment(str(tmp_path), "x"), "disabled").spec("tune")
    proposed = spec.with_proposal(values)
    assert TrialSpec.from_tune_config({"spec": proposed.to_param()}).recipe == label
    assert proposed.trial.lr == values["lr"]
