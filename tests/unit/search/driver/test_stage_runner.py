"""The stage runner's trial specs: each trial gets the threads of the CPUs it asks Ray for."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    ("sets", "threads"),
    [
        (["search.resources.cpu=1"], 1),
        (["search.resources.cpu=4"], 4),
        (["search.resources.cpu=0.5"], 1),
        (["search.resources.cpu=4", "num_threads=2"], 2),
    ],
)
def test_search_gives_each_trial_the_threads_of_its_cpus(sets, threads, tmp_path):
    from search.driver.config import load_config
    from search.driver.stages.common import StageRunner
    from search.experiment.folder import Experiment

    cfg = load_config(None, sets)
    runner = StageRunner(cfg, Experiment(str(tmp_path), "x"), "disabled")
    assert runner.spec("final").trial.num_threads == threads
