"""The search config's checks of `search.train_fractions` and `search.final_configs`, and the run
names of shares."""

from __future__ import annotations

import pytest
from helpers import REPO

from search.driver.config import load_config
from trainables.core.config import TrialConfig
from trainables.core.errors import ConfigError


def test_run_name_and_config_checks():
    assert TrialConfig(strategy="decoder", seed=1).run_name == "decoder__seed1"
    assert (
        TrialConfig(strategy="decoder", seed=1, train_fraction=0.1).run_name
        == "decoder__f10__seed1"
    )
    half = TrialConfig(strategy="mobilenet_v2:dec3+head", train_fraction=0.125)
    assert half.run_name == "mobilenet_v2_dec3.head__f12.5__seed0"
    for bad, message in (
        ("[0.5, 0.5]", "listed more than once"),
        ("[0, 1.0]", r"not in \(0, 1\]"),
        ("[1.5]", r"not in \(0, 1\]"),
        ("[]", "at least 1"),
    ):
        with pytest.raises(ConfigError, match=message):
            load_config(None, [f"search.train_fractions={bad}"])
    with pytest.raises(ConfigError, match="unknown"):
        load_config(None, ["search.final_configs=[{strategy: nonsense, lr: 0.001}]"])
    cfg = load_config(REPO / "configs" / "hc18_fractions.yaml")
    assert cfg.search.train_fractions == [0.1, 0.3, 1.0]
    assert [c.strategy for c in cfg.search.final_configs] == [
        "resnet18:enc1-2+enc4+dec0-1+dec3+head",
        "resnet18:enc0-1+dec3+head",
    ]
