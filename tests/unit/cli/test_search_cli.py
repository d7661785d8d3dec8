"""`python search/run.py`: bad config fails before Ray starts, naming the key; the script also
works copied alone to another folder, which is what `ray submit` does with it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers import RUN_PY, TINY

import search.driver.study
from search import cli
from search.driver.config import DEFAULT_CONFIG, load_config


@pytest.fixture
def no_ray(monkeypatch):
    """Fail the test if the CLI gets as far as connecting to Ray."""

    def connect_ray(*args, **kwargs):
        raise AssertionError("Ray was started although the config is bad")

    monkeypatch.setattr(search.driver.study, "connect_ray", connect_ray)


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    code = cli.main(argv)
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "trial.epoch=2"], "epoch: unknown key"),
        (["--set", "trial.epochs=two"], "epochs: Input should be a valid integer"),
        (["--set", "search.strategies=[decoder,nope]"], "strategies: unknown ['nope']"),
        (["--set", "trial.strategy=nope"], "strategy: unknown strategy 'nope'"),
        (["--set", "search.tune.trial_per_strategy=2"], "tune.trial_per_strategy: unknown key"),
        (["--set", "search.resources.gpu=one"], "resources.gpu: Input should be a valid number"),
        (
            ["--stages", "final,report"],
            "stages.1: Input should be 'pretrain', 'tune', 'explore' or",
        ),
        (["--data", "{missing}"], "data_dir: '{missing}' is not a folder"),
        (["--data", "{tmp}"], "training_set_pixel_size_and_HC.csv: not found"),
        (["--set", "search.pretrain.source={missing}"], "search.pretrain.source: '{missing}'"),
        (["--set", "search.pretrain.source={tmp}"], "search.pretrain.source: {tmp}: 1 problem"),
        (["--set", "search.report_metric=test_dise"], "report_metric: unknown metric 'test_dise'"),
        (["--resume"], "--resume yes: needs --name"),
        (["--resume", "auto"], "--resume auto: needs --name"),
        (["--name", "../x"], "--name '../x': use 1 to 100 letters, digits"),
        # Issue 21, item 6: inputs that used to pass the checks.
        (["--name", "abc\n"], "--name 'abc\\n': use 1 to 100 letters, digits"),
        (["--name", "n" * 300], "use 1 to 100 letters, digits"),
        (["--name", "pretrained"], "--name 'pretrained' is reserved"),
        (["--stages", ","], "stages: List should have at least 1 item"),
        (["--set", "trial.lr=inf"], "lr: Input should be a finite number"),
        (["--set", "trial.weight_decay=.inf"], "weight_decay: Input should be a finite number"),
        (["--set", "trial.lr_min=inf"], "lr_min: Input should be a finite number"),
        (["--set", "trial.hc_mask_outset_px=inf"], "hc_mask_outset_px: Input should be a finite"),
        (["--set", "search.tune.lr_max=inf"], "lr_max: Input should be a finite number"),
        (["--set", "search.resources.cpu=inf"], "cpu: Input should be a finite number"),
        (["--set", "search.wandb_timeout_s=inf"], "wandb_timeout_s: Input should be a finite"),
        (["--set", "trial.lr=nan"], "lr: Input should be a finite number"),
        (["--set", "trial.image_size=100000"], "image_size: Input should be less than or equal"),
        (["--set", "trial.epochs=100000"], "epochs: Input should be less than or equal to 10000"),
        (["--set", "trial.batch_size=100000"], "batch_size: Input should be less than or equal"),
        (
            ["--set", "search.tune.lr_min=0.1", "--set", "search.tune.lr_max=0.01"],
            "lr_min (0.1) is above lr_max (0.01)",
        ),
        (
            ["--set", "search.tune.gamma_min=0.9", "--set", "search.tune.gamma_max=0.6"],
            "gamma_min (0.9) is above gamma_max (0.6)",
        ),
        (
            ["--set", "search.tune.schedules=[none,step]"],
            "search.tune.schedules ['none', 'step'] lacks trial.lr_schedule 'exponential'",
        ),
        (["--set", "search.seeds=[0,1,0]"], "seeds: [0] listed more than once"),
        (
            ["--set", "search.strategies=[decoder,encoder,decoder]"],
            "strategies: ['decoder'] listed more than once",
        ),
    ],
)
def test_bad_config_fails_before_ray_naming_the_key(args, message, tmp_path, capsys, no_ray):
    fill = {"missing": str(tmp_path / "no_such_folder"), "tmp": str(tmp_path)}
    args = [arg.format(**fill) for arg in args]
    storage = tmp_path / "runs"
    code, err = run_cli(["--storage", str(storage), *args], capsys)
    assert code == 2
    assert message.format(**fill) in err
    assert not storage.exists() and not (tmp_path / "x").exists()  # nothing was written either


def test_config_file_with_unknown_key_fails_naming_file_and_key(tmp_path, capsys, no_ray):
    config = tmp_path / "study.yaml"
    config.write_text("trial:\n  epochs: 2\nsearch:\n  seeds: [0]\n  max_failure: 3\n")
    code, err = run_cli(["--config", str(config), "--storage", str(tmp_path / "r")], capsys)
    assert code == 2
    assert f"{config} [search]" in err and "max_failure: unknown key" in err


def test_a_key_written_twice_in_a_config_file_is_refused(tmp_path, capsys, no_ray):
    config = tmp_path / "study.yaml"
    config.write_text("trial:\n  epochs: 2\n  lr: 1.0e-3\n  epochs: 5\n")
    code, err = run_cli(["--config", str(config), "--storage", str(tmp_path / "r")], capsys)
    assert code == 2
    assert (
        f"{config}: not valid YAML" in err and "duplicate key 'epochs'" in err and "line 4" in err
    )
    assert not (tmp_path / "r").exists()


def test_resume_takes_yes_or_auto_only(capsys):
    with pytest.raises(SystemExit) as stopped:
        cli.main(["--resume", "later"])
    assert stopped.value.code == 2 and "invalid choice: 'later'" in capsys.readouterr().err


def test_resume_checks_the_experiment_and_its_settings(tmp_path, capsys, no_ray):
    storage = str(tmp_path / "runs")
    code, err = run_cli(["--storage", storage, "--name", "gone", "--resume"], capsys)
    assert code == 2 and f"--resume: no experiment at {tmp_path / 'runs' / 'gone'}" in err

    # An experiment that exists: a new run may not reuse its name...
    overrides = ["trial.epochs=2", "search.seeds=[0,1]"]
    cfg = load_config(DEFAULT_CONFIG, overrides)
    exp = tmp_path / "runs" / "exp"
    exp.mkdir(parents=True)
    (exp / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    sets = [arg for pair in overrides for arg in ("--set", pair)]
    code, err = run_cli(["--storage", storage, "--name", "exp", *sets], capsys)
    assert code == 2 and "exists; pass --resume or another --name" in err

    # ...and a resume must train what its checkpoints were written with (stages may change).
    changed = ["--set", "trial.epochs=3", "--set", "search.seeds=[0,1]", "--set", "trial.lr=0.1"]
    code, err = run_cli(["--storage", storage, "--name", "exp", "--resume", *changed], capsys)
    assert code == 2
    assert "--resume: trial.epochs, trial.lr differ from" in err


def copy_alone(tmp_path: Path) -> Path:
    """search/run.py by itself in a folder that holds no FreezeFrame source."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    shutil.copy(RUN_PY, folder / "run.py")
    return folder


def run_copy(folder: Path, args: list[str], python_flags=(), **env) -> subprocess.CompletedProcess:
    environ = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", **env}
    environ.pop("PYTHONPATH", None)  # the package must come from the installation
    return subprocess.run(
        [sys.executable, *python_flags, "run.py", *args],
        cwd=folder,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_run_py_copied_alone_shows_help_and_rejects_bad_config(tmp_path):
    folder = copy_alone(tmp_path)
    shown = run_copy(folder, ["--help"])
    assert shown.returncode == 0, shown.stderr
    assert "--resume" in shown.stdout and "--stages" in shown.stdout

    bad = run_copy(folder, ["--storage", "runs", "--name", "x", "--set", "trial.epoch=2"])
    assert bad.returncode == 2
    assert "epoch: unknown key" in bad.stderr and "Traceback" not in bad.stderr
    assert not (folder / "runs").exists()


def test_run_py_without_the_package_says_how_to_install_it(tmp_path):
    # -S -I: no site-packages and no environment, as on a node where nothing was installed
    bare = run_copy(copy_alone(tmp_path), ["--help"], python_flags=("-S", "-I"))
    assert bare.returncode == 1
    assert "freezeframe package is not installed here" in bare.stderr
    assert "pip install ." in bare.stderr


@pytest.mark.slow
def test_run_py_copied_alone_runs_a_tiny_study(tmp_path):
    folder = copy_alone(tmp_path)
    args = ["--storage", "runs", "--name", "solo", "--stages", "final"]
    args += ["--set", "search.strategies=[decoder]", "--set", "search.seeds=[0]"]
    args += ["--set", "trial.epochs=1", *TINY]
    # RAY_ADDRESS=local: a private Ray instance, never another one running on this machine.
    done = run_copy(folder, args, RAY_ADDRESS="local")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    experiment = folder / "runs" / "solo"  # relative paths are read from where it runs
    trials = pd.read_csv(experiment / "trials.csv")
    assert list(trials.trial_name) == ["decoder__seed0"] and list(trials.status) == ["ok"]
    assert 0 <= trials.test_dice.iloc[0] <= 1
    assert (experiment / "report" / "report.md").exists()
    assert "FreezeFrame report: solo" in done.stdout


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


@pytest.mark.parametrize(("key", "asked"), [("cpu", 3), ("gpu", 1)])
def test_a_trial_larger_than_the_local_ray_is_refused_before_any_trial(key, asked, tmp_path):
    # Issue 21, item 5: search.resources.cpu=3 on a 2-CPU local Ray waited forever, silently.
    env = {**os.environ, "RAY_ADDRESS": "local", "RAY_AUTH_MODE": "disabled"}
    storage = tmp_path / "runs"
    args = ["--storage", str(storage), "--name", "big", "--stages", "final", "--num-cpus", "2"]
    args += ["--set", f"search.resources.{key}={asked}", *TINY]
    done = subprocess.run(
        [sys.executable, str(RUN_PY), *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"{key}: {asked}" in done.stderr and "search.resources {" in done.stderr
    assert "no trial could ever start" in done.stderr or "never start" in done.stderr
    assert not (storage / "big" / "trials.csv").exists()
