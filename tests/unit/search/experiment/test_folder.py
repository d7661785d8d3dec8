"""The experiment folder's layout: every path of the experiment folder spelled in one module, and
W&B run ids tied to the experiment's identity."""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

import pytest
from helpers import REPO

from search.experiment.folder import Experiment

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
