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


def test_search_wandb_is_a_mode_or_a_mapping_and_wandb_project_still_names_the_project():
    """Every existing config (`wandb: offline`) keeps working; the mapping adds entity,
    project, checkpoints and system metrics; `wandb_project` is the project's deprecated
    name; a resolved config stores the mapping only."""
    demo = load_config(REPO / "configs" / "demo.yaml")  # `wandb: offline`
    assert (demo.search.wandb.mode, demo.search.wandb.project) == ("offline", "freezeframe")
    assert demo.search.wandb.entity is None and demo.search.wandb.system_metrics == "auto"
    team = load_config(REPO / "configs" / "demo.yaml", ["search.wandb.entity=my-team"])
    assert (team.search.wandb.mode, team.search.wandb.entity) == ("offline", "my-team")
    legacy = load_config(None, ["search.wandb=online", "search.wandb_project=hc18"])
    assert (legacy.search.wandb.mode, legacy.search.wandb.project) == ("online", "hc18")
    dumped = legacy.model_dump(mode="json")["search"]
    assert "wandb_project" not in dumped and dumped["wandb"]["project"] == "hc18"
    mapping = "search.wandb={mode: disabled, project: p, log_checkpoints: true, system_metrics: on}"
    options = load_config(None, [mapping]).search.wandb
    assert (options.mode, options.project, options.log_checkpoints) == ("disabled", "p", True)
    assert options.system_metrics == "on"  # a bare YAML `on` is read as true
    assert (
        load_config(None, ["search.wandb.system_metrics=off"]).search.wandb.system_metrics == "off"
    )


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["search.wandb_project=a", "search.wandb.project=b"], "wandb_project .* differ"),
        (["search.wandb.system_metrics=sometimes"], "wandb.system_metrics"),
        (["search.wandb.entity=team/x"], "wandb.entity"),
        (["search.wandb.mode=loud"], "wandb.mode"),
        (["search.wandb.colour=red"], "wandb.colour: unknown key"),
        (
            ["search.wandb.log_checkpoints=true", "search.keep_best_checkpoints=false"],
            "log_checkpoints .*keep_best_checkpoints",
        ),
    ],
)
def test_a_bad_wandb_setting_names_its_key(sets, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, sets)


def test_a_resume_reads_an_older_experiments_wandb_keys_as_the_mapping(tmp_path):
    """An experiment stored with `wandb: offline` and `wandb_project` resumes under today's
    mapping; changing the project on a resume is refused, turning system metrics on is not."""
    from search.driver.preflight import _check_same_config
    from search.shared.wandb_options import wandb_options

    cfg = load_config(None, ["search.wandb_project=hc18"])
    saved = cfg.model_dump(mode="json")
    saved["search"] = {**saved["search"], "wandb": "auto", "wandb_project": "hc18"}
    _check_same_config(cfg, saved, "old")
    assert wandb_options(saved["search"]).project == "hc18"  # as the report reads it
    on = load_config(None, ["search.wandb_project=hc18", "search.wandb.system_metrics=on"])
    _check_same_config(on, saved, "old")
    with pytest.raises(ConfigError, match="search.wandb.project"):
        _check_same_config(load_config(None, ["search.wandb.project=other"]), saved, "old")
