"""`python search/run.py`: bad config and input fail before Ray starts, naming the key; the script
also works copied alone to another folder, which is what `ray submit` does with it."""

from __future__ import annotations

import pytest
import yaml
from helpers import TINY, copy_alone, run_copy

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
        (
            ["--set", "search.optuna_storage=postgresql://me:s3cret@db/optuna"],
            "search.optuna_storage: the URL holds a password",
        ),
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


def test_wandb_online_without_a_login_fails_before_ray(tmp_path, monkeypatch, capsys):
    import search.driver.study

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.setattr(search.driver.study, "connect_ray", lambda *a: pytest.fail("Ray started"))
    code = cli.main(["--storage", str(tmp_path / "runs"), "--wandb", "online"])
    assert code == 2 and "not logged in to W&B" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_an_unreadable_source_fails_before_ray_naming_the_files(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(search.driver.study, "connect_ray", lambda *a: pytest.fail("Ray started"))
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "scan1.png").write_bytes(b"\x89PNG broken")
    storage = tmp_path / "runs"
    code = cli.main(["--storage", str(storage), "--set", f"search.pretrain.source={folder}", *TINY])
    err = capsys.readouterr().err
    assert code == 2 and "search.pretrain.source" in err and "scan1.png: unreadable" in err
    assert not storage.exists()
