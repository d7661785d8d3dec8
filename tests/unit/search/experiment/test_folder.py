"""The driver-trial contract and the experiment folder's layout: one typed spec, validated on
both sides; every path of the experiment folder spelled in one module."""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

import pytest
from pydantic import ValidationError

from search.driver.config import load_config
from search.driver.stages.common import StageRunner
from search.experiment.folder import Experiment
from search.shared.spec import TrialSpec

REPO = Path(__file__).resolve().parents[1]
# Fragments of the experiment folder's paths (search/experiment/folder.py names them all).
LAYOUT_FRAGMENTS = (
    "config.yaml",
    "split.csv",
    "trials.csv",
    "best_recipes",
    "results/",
    "checkpoints/",
    "pretrain/encoder",
    "studies/",
    "explore_top",
    "encoder.json",
)


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


def _string_literals(path: Path) -> list[tuple[int, str]]:
    """String constants of a module that are not docstrings (f-string parts included)."""
    tree = ast.parse(path.read_text())
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    ]


def test_no_module_but_the_layout_spells_a_path_of_the_experiment_folder():
    offenders = []
    for path in sorted((REPO / "search").rglob("*.py")):
        if path == REPO / "search" / "experiment" / "folder.py":
            continue
        for line, text in _string_literals(path):
            offenders += [
                f"{path.relative_to(REPO)}:{line}: {text!r}"
                for fragment in LAYOUT_FRAGMENTS
                # Not inside another name (Ray's `ray_bootstrap_config.yaml` is not ours).
                if re.search(rf"(?<![\w]){re.escape(fragment)}", text)
            ]
    assert not offenders, "\n".join(offenders)


def test_no_module_of_the_product_is_over_350_lines():
    sizes = {
        str(path.relative_to(REPO)): len(path.read_text().splitlines())
        for package in ("search", "trainables")
        for path in (REPO / package).rglob("*.py")
    }
    assert len(sizes) > 40, sizes  # the packages were found
    assert {name: n for name, n in sizes.items() if n > 350} == {}


def test_the_layout_check_would_catch_a_literal(tmp_path):
    sample = tmp_path / "m.py"
    sample.write_text('"""Docs may say trials.csv."""\nX = f"results/{1}/x.json"\n')
    assert [text for _, text in _string_literals(sample)] == ["results/", "/x.json"]


def test_experiment_paths_are_named_once(tmp_path):
    experiment = Experiment(str(tmp_path), "exp")
    assert experiment.result("final", "decoder__seed0") == "results/final/decoder__seed0.json"
    assert experiment.checkpoint("tune", "t", "best.pt") == "checkpoints/tune/t/best.pt"
    with pytest.raises(ValueError, match="unknown checkpoint file 'model.pt'"):
        experiment.checkpoint("tune", "t", "model.pt")
    experiment.write_result("final", "a", {"x": 1})
    assert experiment.results("final") == [{"x": 1}]
    assert Experiment.at(tmp_path / "exp").uri == experiment.uri
    assert Experiment.at(f"file://{tmp_path}/exp/").uri == f"file://{tmp_path}/exp"


def test_wandb_run_ids_survive_a_resume_but_not_a_new_experiment_of_the_same_name(tmp_path):
    from search.shared.spec import WandbSettings
    from search.worker.wandb_link import wandb_run_id

    def run_id(experiment):
        settings = WandbSettings(
            mode="offline", project="p", group="demo", experiment_id=experiment.identity()
        )
        return wandb_run_id(settings, "final", "decoder__seed0")

    experiment = Experiment(str(tmp_path), "demo")
    experiment.create_identity()
    first = run_id(experiment)
    assert run_id(Experiment(str(tmp_path), "demo")) == first  # a resume reads the same id
    shutil.rmtree(tmp_path / "demo")
    again = Experiment(str(tmp_path), "demo")
    again.create_identity()
    assert run_id(again) != first


def test_a_final_trial_and_the_pretrain_trial_of_one_name_get_two_wandb_runs(tmp_path):
    """`all__seed0` is the pretrain stage's trial and, with strategy `all` in the final grid,
    a final trial: two runs, not one resumed by the other."""
    from search.shared.spec import WandbSettings
    from search.worker.wandb_link import wandb_run_id

    settings = WandbSettings(mode="offline", project="p", group="demo", experiment_id="x1")
    ids = {stage: wandb_run_id(settings, stage, "all__seed0") for stage in ("pretrain", "final")}
    assert ids["pretrain"] != ids["final"]
    assert wandb_run_id(settings, "final", "all__seed0") == ids["final"]  # stable on resume
