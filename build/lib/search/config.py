"""The search service's settings: one typed model, defaults here, YAML lists what differs.

A config file's `search:` section is validated here; its `trial:` section by
`trainables.config.TrialConfig`. Both are validated before Ray starts, naming the bad key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from trainables.config import (
    ConfigError,
    TrialConfig,
    format_validation_error,
    parse_overrides,
    read_config_file,
    resolve_trial_config,
    shipped_config,
)
from trainables.strategies import PAPER_STRATEGIES, STRATEGIES

STAGES = ("pretrain", "tune", "final")
# The embedded default study (`python search/run.py` with no --config): configs/demo.yaml.
DEFAULT_CONFIG = shipped_config("demo.yaml")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Resources(_Strict):
    cpu: float = Field(1, gt=0)
    gpu: float = Field(0, ge=0, description="fractional GPUs share a card between trials")


# How the pretrain stage reads its source folder: every image, split by exam. The start-up
# check (search.cli) and the stage itself (search.stages.pretrain) both use it.
PRETRAIN_DATA = {"split": "grouped", "max_images": None}


class PretrainSettings(_Strict):
    """Train the full MobileNetV2 U-Net on a source domain; its encoder seeds later stages."""

    source: Literal["synthetic"] | str = Field(
        "synthetic", description="'synthetic' (generated) or an HC18-layout folder"
    )
    synthetic_images: int = Field(80, ge=8)
    strategy: str = "all"
    epochs: int = Field(4, ge=1)
    lr: float = Field(1e-3, gt=0)


class TuneSettings(_Strict):
    """Optuna (TPE, seeded) proposes the recipe; each proposal is one Ray Tune trial."""

    trials_per_strategy: int = Field(4, ge=1)
    seed: int = 0
    lr_min: float = Field(1e-5, gt=0)
    lr_max: float = Field(1e-2, gt=0)
    schedules: list[Literal["none", "exponential", "step", "cosine"]] = [
        "none",
        "exponential",
        "step",
        "cosine",
    ]
    gamma_min: float = Field(0.5, gt=0, le=1)
    gamma_max: float = Field(0.99, gt=0, le=1)
    step_size_max: int = Field(10, ge=1)
    asha: bool = True
    grace_period: int = Field(1, ge=1, description="epochs before ASHA may stop a trial")
    trial_seed: int = Field(0, description="the trial seed every tune proposal trains with")


class SearchConfig(_Strict):
    name: str = Field("freezeframe", pattern=r"^[A-Za-z0-9_.-]+$")
    stages: list[Literal["pretrain", "tune", "final"]] = list(STAGES)
    strategies: list[str] = list(PAPER_STRATEGIES)
    seeds: list[int] = [0, 1, 2, 3]
    resources: Resources = Resources()
    max_concurrent_trials: int | None = Field(None, ge=1, description="None = what fits")
    max_failures: int = Field(1, ge=0, description="retries of a failed trial")
    keep_best_checkpoints: bool = Field(
        True, description="keep each final trial's best.pt (its model) in the experiment folder"
    )
    pretrain: PretrainSettings = PretrainSettings()
    tune: TuneSettings = TuneSettings()
    wandb_project: str = "freezeframe"
    wandb: Literal["online", "offline", "disabled", "auto"] = Field(
        "auto", description="auto = online when logged in, else offline"
    )
    report_metric: str = "test_dice"


class ResolvedConfig(_Strict):
    trial: TrialConfig
    search: SearchConfig


def load_config(
    path: str | Path | None, sets: list[str] | None = None, **search_overrides: Any
) -> ResolvedConfig:
    """Read a config file, apply `--set` pairs, validate both sections.

    `--set` keys: `trial.KEY`, `search.KEY` (dots for nested search keys such as
    `search.tune.trials_per_strategy`), or a bare trial key.
    """
    data = read_config_file(path)
    source = str(path) if path else "defaults"
    trial_values, search_values = dict(data.get("trial", {})), dict(data.get("search", {}))
    for key, value in parse_overrides(sets).items():
        section, _, rest = key.partition(".")
        if section == "search" and rest:
            _set_nested(search_values, rest.split("."), value)
        elif section == "trial" and rest:
            trial_values[rest] = value
        else:
            trial_values[key] = value
    search_values.update({k: v for k, v in search_overrides.items() if v is not None})
    try:
        search = SearchConfig(**search_values)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, f"{source} [search]")) from None
    unknown = [s for s in search.strategies + [search.pretrain.strategy] if s not in STRATEGIES]
    if unknown:
        raise ConfigError(
            f"{source} [search]: strategies: unknown {unknown}; valid: {sorted(STRATEGIES)}"
        )
    trial = resolve_trial_config(trial_values, f"{source} [trial]")
    return ResolvedConfig(trial=trial, search=search)


def _set_nested(target: dict, keys: list[str], value: Any) -> None:
    for key in keys[:-1]:
        target = target.setdefault(key, {})
        if not isinstance(target, dict):
            raise ConfigError(f"--set search.{'.'.join(keys)}: '{key}' is not a section")
    target[keys[-1]] = value
