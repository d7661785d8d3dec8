"""Config validation: unknown keys, wrong types and bad values fail naming the key."""

from __future__ import annotations

import pytest
from helpers import REPO

from trainables.core.config import TrialConfig, parse_overrides
from trainables.core.errors import ConfigError
from trainables.nets.resolve import load_trial_config

CONFIGS = REPO / "configs"


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_yaml_then_set_then_cli_overrides(tmp_path):
    path = write(tmp_path, "trial:\n  lr: 0.01\n  epochs: 3\n")
    cfg = load_trial_config(path, ["epochs=5", "lr_schedule=cosine"], seed=7)
    assert (cfg.lr, cfg.epochs, cfg.lr_schedule, cfg.seed) == (0.01, 5, "cosine", 7)
    assert cfg.run_name == "decoder__seed7"


@pytest.mark.parametrize(
    ("text", "sets", "expected"),
    [
        ("trial:\n  learning_rate: 0.1\n", [], "learning_rate: unknown key"),
        ("trial:\n  epochs: many\n", [], "epochs:"),
        ("", ["batch_size=0"], "batch_size:"),
        ("", ["strategy=decodr"], "unknown strategy 'decodr'"),
        ("", ["lr_schedule=linear"], "lr_schedule:"),
        ("", ["encoder_weights=/nowhere/x.pt"], "encoder_weights:"),
        ("", ["data_dir=/nowhere"], "data_dir:"),
        ("trail:\n  lr: 1\n", [], "unknown top-level key"),
    ],
)
def test_bad_config_names_the_key(tmp_path, text, sets, expected):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=expected) as err:
        load_trial_config(path, sets)
    assert str(path) in str(err.value)


def test_missing_file_and_bad_set():
    with pytest.raises(ConfigError, match="not found"):
        load_trial_config("/nowhere/c.yaml")
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["lr"])


def test_shipped_configs_validate():
    for name in ("paper", "smoke"):
        cfg = load_trial_config(CONFIGS / f"{name}.yaml")
        assert cfg.batch_size == {"paper": 10, "smoke": 4}[name]
    assert load_trial_config(CONFIGS / "paper.yaml").image_size == 512


def test_old_boolean_amp_configs_still_load():
    assert TrialConfig(amp=True).amp == "auto" and TrialConfig(amp=False).amp == "off"
