"""A worker whose installed packages differ from the driver's fails its trial naming them;
the lock is what every node installs, and its torch is the one cluster/constraints.txt pins."""

from __future__ import annotations

import importlib.metadata as metadata

import pytest

from search.driver.config import load_config
from search.driver.stages.common import StageRunner
from search.experiment.folder import Experiment
from search.shared.versions import VersionMismatch, installed_versions, version_problems
from search.worker.files import TrialFiles


def test_the_driver_sends_its_dependency_closure_with_every_spec(tmp_path):
    versions = installed_versions()
    # Direct dependencies, a dependency of an extra (ray[tune] -> pyarrow) and a transitive one.
    for name in ("torch", "optuna", "ray", "wandb", "pyarrow", "pydantic-core", "tensorboardx"):
        assert versions[name] == metadata.version(name), name
    assert "freezeframe" not in versions and "pytest" not in versions  # runtime only
    cfg = load_config(None, ["search.strategies=[decoder]", "search.seeds=[0]"])
    spec = StageRunner(cfg, Experiment(str(tmp_path), "x"), "disabled").spec(
        "final", strategy="decoder", seed=0
    )
    assert spec.versions == versions


def test_a_worker_with_other_versions_fails_before_training_naming_the_packages(tmp_path):
    cfg = load_config(None, ["search.strategies=[decoder]", "search.seeds=[0]"])
    spec = StageRunner(cfg, Experiment(str(tmp_path), "x"), "disabled").spec(
        "final", strategy="decoder", seed=0
    )
    driver = {**spec.versions, "optuna": "0.0.1", "not-a-package-here": "1.0"}
    files = TrialFiles(spec.model_copy(update={"versions": driver}))
    with pytest.raises(VersionMismatch) as error:
        files.prepare()
    message = str(error.value)
    assert f"optuna {metadata.version('optuna')} (driver: 0.0.1)" in message
    assert "not-a-package-here not installed (driver: 1.0)" in message
    assert "requirements.txt" in message and "torch" not in message  # only what differs
    TrialFiles(spec).prepare()  # the driver's own versions: no complaint


def test_version_problems_lists_only_differences():
    assert version_problems({"a": "1", "b": "2"}, {"a": "1", "b": "2", "c": "3"}) == []
    assert version_problems({"a": "1"}, {"a": "1.1"}) == ["a 1.1 (driver: 1)"]
