"""The live Optuna studies (search.driver.live_study): each trial the searcher tells its study is in
the live storage at once, once, after a pickle round trip and after a resume; a storage that
fails warns and the study goes on; the stage's copy in the experiment holds every trial once.

No Ray: the searcher is driven as Tune drives it (`suggest`, `on_trial_complete`)."""

from __future__ import annotations

import dataclasses
import pickle

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from ray.tune.search import ConcurrencyLimiter

from search.driver import live_study
from search.driver.config import load_config
from search.driver.live_study import EXPERIMENT_ID, TRIAL_NAME, LiveStudies, live_target
from search.driver.searcher import Past, StudySearcher
from search.driver.stages import explore, tune
from search.driver.stages.common import StageRunner
from search.experiment.folder import Experiment
from search.shared.spec import TrialSpec

SETS = {
    "tune": ["search.tune.trials_per_strategy=4", "search.strategies=[decoder,encoder]"],
    "explore": ["search.explore.trials=8", "search.explore.population=4"],
}
METRICS = {"tune": ["val_dice"], "explore": ["val_dice", "trainable_params"]}


def runner_of(stage: str, storage, setting: str | None = None) -> StageRunner:
    sets = SETS[stage] + ([f"search.optuna_storage={setting}"] if setting else [])
    return StageRunner(load_config(None, sets), Experiment(str(storage), "x"), "disabled")


def plans_of(runner: StageRunner, stage: str):
    if stage == "tune":
        return tune.build_plans(runner, "none")
    return [explore.build_plan(runner, "none")]


def start(runner: StageRunner, stage: str, plans) -> StudySearcher:
    """What a stage does: record the plans' history, hand the live studies to the searcher."""
    setting = runner.cfg.search.optuna_storage
    live = LiveStudies.start(setting, runner.experiment, stage, plans, METRICS[stage])
    return StudySearcher(plans, "val_dice", "max", live=live)


def name_of(suggestion: dict) -> str:
    return TrialSpec.from_tune_config(suggestion).name


def journal_studies(path) -> dict[str, list[optuna.trial.FrozenTrial]]:
    """What optuna-dashboard reads: every study of the journal file, opened afresh."""
    storage = JournalStorage(JournalFileBackend(str(path)))
    return {
        summary.study_name: optuna.load_study(
            study_name=summary.study_name, storage=storage
        ).get_trials()
        for summary in optuna.get_all_study_summaries(storage)
    }


def named(studies: dict) -> dict[str, tuple[str, optuna.trial.FrozenTrial]]:
    """{trial name: (study name, trial)} of every trial, failing on a name written twice."""
    out = {}
    for study, trials in studies.items():
        for trial in trials:
            assert trial.user_attrs[TRIAL_NAME] not in out, f"{trial.user_attrs} twice"
            out[trial.user_attrs[TRIAL_NAME]] = (study, trial)
    return out


@pytest.mark.parametrize("stage", ["tune", "explore"])
def test_each_told_trial_is_in_the_live_journal_at_once_named_as_trials_csv_names_it(
    stage, tmp_path
):
    runner = runner_of(stage, tmp_path)
    searcher = start(runner, stage, plans_of(runner, stage))
    journal = tmp_path / "x" / "studies" / "journal.log"  # a local experiment's default
    assert journal.exists()  # made at the stage's start: optuna-dashboard opens it at once
    keys = {"tune": ["x/tune_decoder", "x/tune_encoder"], "explore": ["x/explore"]}[stage]
    assert {k: len(v) for k, v in journal_studies(journal).items()} == dict.fromkeys(keys, 0)

    suggested = [searcher.suggest(f"t{i}") for i in range(3)]
    searcher.on_trial_complete("t0", {"val_dice": 0.7})
    searcher.on_trial_complete("t1", error=True)
    live = named(journal_studies(journal))
    assert sorted(live) == sorted(name_of(s) for s in suggested[:2])
    study, first = live[name_of(suggested[0])]
    assert first.state == TrialState.COMPLETE and first.values[0] == 0.7
    assert study == keys[0]  # the first proposal is the first study's (its paper recipe)
    assert live[name_of(suggested[1])][1].state == TrialState.FAIL
    if stage == "explore":  # the parameter count, the study's second objective
        assert first.values[1] > 1000


def test_a_searcher_pickles_with_its_live_studies_and_writes_on_without_duplicates(tmp_path):
    runner = runner_of("tune", tmp_path)
    searcher = start(runner, "tune", plans_of(runner, "tune"))
    limiter = ConcurrencyLimiter(searcher, max_concurrent=4)
    suggested = [searcher.suggest(f"t{i}") for i in range(3)]
    searcher.on_trial_complete("t0", {"val_dice": 0.7})

    copy = pickle.loads(pickle.dumps(limiter)).searcher  # what Tuner() does to it
    assert copy.live._storage is None and copy.live.target == searcher.live.target
    copy.on_trial_complete("t1", {"val_dice": 0.8})
    copy.on_trial_complete("t2", {"val_dice": 0.6})
    live = named(journal_studies(tmp_path / "x" / "studies" / "journal.log"))
    assert sorted(live) == sorted(name_of(s) for s in suggested)
    assert sorted(t.values[0] for _, t in live.values()) == [0.6, 0.7, 0.8]


def test_a_resumed_stage_writes_only_what_the_live_study_lacks(tmp_path):
    runner = runner_of("explore", tmp_path)
    searcher = start(runner, "explore", plans_of(runner, "explore"))
    suggested = [searcher.suggest(f"t{i}") for i in range(4)]
    plan = searcher.plans[0]
    params = [plan.canonical(searcher.running[f"t{i}"][2].params) for i in range(4)]
    searcher.on_trial_complete("t0", {"val_dice": 0.7})
    searcher.on_trial_complete("t1", {"val_dice": 0.5})
    # The driver dies: t2 has ended (its result is stored) but was never told; t3 was running.
    history = [Past(params[0], "complete", {"val_dice": 0.7})]
    history += [Past(params[1], "complete", {"val_dice": 0.5})]
    history += [Past(params[2], "complete", {"val_dice": 0.9}), Past(params[3], "unfinished")]

    resumed_plan = dataclasses.replace(plan, history=history)
    resumed = start(runner, "explore", [resumed_plan])
    journal = tmp_path / "x" / "studies" / "journal.log"
    live = named(journal_studies(journal))  # no name twice
    assert sorted(live) == sorted(name_of(s) for s in suggested[:3])
    assert live[name_of(suggested[2])][1].values[0] == 0.9
    again = resumed.suggest("r0")  # the unfinished trial, proposed again under its name
    assert name_of(again) == name_of(suggested[3])
    resumed.on_trial_complete("r0", {"val_dice": 0.4})
    assert sorted(named(journal_studies(journal))) == sorted(name_of(s) for s in suggested)

    # The stage's copy in the experiment: each trial once, the study named by its key.
    resumed.live.write_copy(runner.experiment, "explore")
    copy = optuna.load_study(
        study_name="explore", storage=f"sqlite:///{tmp_path / 'x' / 'studies' / 'explore.db'}"
    )
    assert sorted(t.user_attrs[TRIAL_NAME] for t in copy.trials) == sorted(
        name_of(s) for s in suggested
    )


@pytest.mark.parametrize("broken", ["sqlite_folder_missing", "corrupt_journal"])
def test_a_live_storage_that_fails_warns_and_the_study_goes_on(broken, tmp_path, capsys):
    if broken == "corrupt_journal":
        setting = tmp_path / "journal.log"
        setting.write_text('{"op_code": 0, "worker_id": "a"\nnot json\n{}\n')
    else:
        setting = f"sqlite:///{tmp_path}/no/such/folder/studies.db"
    runner = runner_of("tune", tmp_path, str(setting))
    searcher = start(runner, "tune", plans_of(runner, "tune"))
    suggested = [searcher.suggest(f"t{i}") for i in range(2)]
    searcher.on_trial_complete("t0", {"val_dice": 0.7})
    searcher.on_trial_complete("t1", {"val_dice": 0.8})
    assert searcher.suggest("t2") is not StudySearcher.FINISHED

    warnings = [line for line in capsys.readouterr().out.splitlines() if "warning" in line]
    assert len(warnings) == 1, warnings  # once, not once per trial
    assert "search.optuna_storage" in warnings[0] and "goes on" in warnings[0]
    # The experiment's copy does not depend on the live storage.
    searcher.live.write_copy(runner.experiment, "tune")
    storage = f"sqlite:///{tmp_path / 'x' / 'studies' / 'tune.db'}"
    copied = [t for k in ("tune_decoder", "tune_encoder") for t in _trials(k, storage)]
    assert sorted(t.user_attrs[TRIAL_NAME] for t in copied) == sorted(map(name_of, suggested))


def _trials(key: str, storage: str) -> list:
    return optuna.load_study(study_name=key, storage=storage).trials


def test_a_storage_back_after_a_failure_gets_every_trial_it_missed(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "db"
    runner = runner_of("tune", tmp_path, f"sqlite:///{folder}/studies.db")
    searcher = start(runner, "tune", plans_of(runner, "tune"))  # the folder is missing: fails
    suggested = [searcher.suggest(f"t{i}") for i in range(3)]
    searcher.on_trial_complete("t0", {"val_dice": 0.7})
    folder.mkdir()
    searcher.on_trial_complete("t1", {"val_dice": 0.8})  # not tried yet: RETRY_S not over
    assert not (folder / "studies.db").exists()
    monkeypatch.setattr(live_study.time, "monotonic", lambda: 1e12)  # RETRY_S later
    searcher.on_trial_complete("t2", {"val_dice": 0.6})
    storage = f"sqlite:///{folder}/studies.db"
    live = [t for k in ("x/tune_decoder", "x/tune_encoder") for t in _trials(k, storage)]
    assert sorted(t.user_attrs[TRIAL_NAME] for t in live) == sorted(map(name_of, suggested))
    assert capsys.readouterr().out.count("warning") == 1


def test_a_study_of_that_name_from_another_experiment_is_left_alone(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/team.db"
    other = optuna.create_study(storage=url, study_name="x/explore", directions=["maximize"] * 2)
    other.set_user_attr(EXPERIMENT_ID, "someone-else")
    runner = runner_of("explore", tmp_path, url)
    searcher = start(runner, "explore", plans_of(runner, "explore"))
    searcher.suggest("t0")
    searcher.on_trial_complete("t0", {"val_dice": 0.7})
    assert _trials("x/explore", url) == []
    out = capsys.readouterr().out
    assert "already holds a study 'x/explore' of another experiment" in out


def test_where_the_live_storage_is(tmp_path, monkeypatch):
    monkeypatch.setenv("FREEZEFRAME_CACHE", str(tmp_path / "cache"))
    local = Experiment(str(tmp_path / "runs"), "demo")
    assert live_target(None, local) == str(tmp_path / "runs" / "demo" / "studies" / "journal.log")
    assert live_target("none", local) is None
    assert live_target("postgresql://u@db/optuna", local) == "postgresql://u@db/optuna"
    monkeypatch.chdir(tmp_path)
    assert live_target("j.log", local) == str(tmp_path / "j.log")
    bucket = Experiment((tmp_path / "bucket").as_uri(), "demo")  # as s3:// is handled
    identity = bucket.create_identity()
    expected = tmp_path / "cache" / "optuna" / f"demo-{identity}.log"
    assert live_target(None, bucket) == str(expected)


def test_the_start_line_names_the_storage_without_its_password(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/s.db"
    assert live_study.shown("postgresql://ann:secret@db/optuna") == "postgresql://ann:***@db/optuna"
    runner = runner_of("tune", tmp_path, url)
    start(runner, "tune", plans_of(runner, "tune"))
    assert f"optuna-dashboard {url}" in capsys.readouterr().out


def test_no_live_storage_writes_nothing_but_the_copy(tmp_path, capsys):
    runner = runner_of("tune", tmp_path, "none")
    searcher = start(runner, "tune", plans_of(runner, "tune"))
    searcher.suggest("t0")
    searcher.on_trial_complete("t0", {"val_dice": 0.7})
    assert "optuna-dashboard" not in capsys.readouterr().out
    assert not (tmp_path / "x" / "studies" / "journal.log").exists()
    searcher.live.write_copy(runner.experiment, "tune")
    assert (tmp_path / "x" / "studies" / "tune.db").exists()
