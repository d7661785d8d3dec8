"""The search service's settings: one typed model, defaults here, YAML lists what differs.

A config file's `search:` section is validated here; its `trial:` section by
`trainables.core.config.TrialConfig`. Both are validated before Ray starts, naming the bad key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from search.driver.budget import BudgetSettings
from search.shared.spec import Stage
from search.shared.wandb_options import WandbOptions, merge_legacy_keys
from trainables.core.config import (
    StrictModel,
    TrialConfig,
    format_validation_error,
    parse_overrides,
    read_config_file,
    shipped_config,
)
from trainables.core.errors import ConfigError
from trainables.core.recipe import (
    RANGE_SETTINGS,
    SCHEDULES,
    DecayFactor,
    Floor,
    LearningRate,
    Schedule,
    StepSize,
)
from trainables.nets.resolve import resolve_trial_config
from trainables.nets.strategies import PAPER_STRATEGIES, STRATEGIES, get_strategy

# The embedded default study (`python search/run.py` with no --config): configs/demo.yaml.
DEFAULT_CONFIG = shipped_config("demo.yaml")


class Resources(StrictModel):
    cpu: float = Field(1, gt=0)
    gpu: float = Field(0, ge=0, description="fractional GPUs share a card between trials")


# How the pretrain stage reads its source folder: every image, split by exam. The start-up
# check (search.cli) and the stage itself (search.stages.pretrain) both use it.
PRETRAIN_DATA = {"split": "grouped", "max_images": None}


class PretrainSettings(StrictModel):
    """Where the later stages' encoder comes from (`search.encoders` explains the sources)."""

    source: str = Field(
        "synthetic",
        description="'synthetic' (generated, supervised), 'self_supervised' (the target's "
        "training images, no labels), 'imagenet', a folder (HC18 layout: supervised on its "
        "labels; other images: self-supervised) or a checkpoint file (.pt)",
    )
    # 400 images x 10 epochs: decoder-only fine-tuning on the real HC18 images (64 px, 6
    # epochs, 2 seeds) reached 88.8% test Dice from them, against 87.3% from the former 80 x 4
    # and 86.8% from random weights; 800 x 12 gave 88.8% too (README, "Pretraining without
    # ImageNet").
    synthetic_images: int = Field(400, ge=8, description="generated images ('synthetic')")
    strategy: str = Field("all", description="what trains while pretraining")
    epochs: int = Field(10, ge=1, description="epochs of supervised pretraining")
    lr: float = Field(1e-3, gt=0)
    # masked beat denoise in the same measurement: 88.3% vs 87.9% test Dice (decoder).
    pretext: Literal["masked", "denoise"] = Field(
        "masked", description="self-supervised objective (trainables.pretext)"
    )
    pretext_epochs: int = Field(20, ge=1, description="epochs of self-supervised pretraining")
    store: str | None = Field(
        None,
        description="where trained encoders are kept for reuse by later studies (a path or "
        "URI); None = 'pretrained' beside the experiments in --storage; 'none' = no reuse",
    )

    @field_validator("source")
    @classmethod
    def _absolute(cls, source: str) -> str:
        """A folder or checkpoint as an absolute path: trials run in other directories."""
        if source in ("synthetic", "self_supervised", "imagenet") or "://" in source:
            return source
        return str(Path(source).expanduser().resolve())


class TuneSettings(StrictModel):
    """Optuna (TPE, seeded) proposes the recipe; each proposal is one Ray Tune trial. The ranges
    bound the draws of `trainables.core.recipe.DRAWS` (which key each pair bounds)."""

    trials_per_strategy: int = Field(4, ge=1)
    seed: int = 0
    lr_min: LearningRate = 1e-5
    lr_max: LearningRate = 1e-2
    schedules: list[Schedule] = list(SCHEDULES)
    gamma_min: DecayFactor = 0.5
    gamma_max: DecayFactor = 0.99
    step_size_max: StepSize = 10
    asha: bool = True
    grace_period: int = Field(1, ge=1, description="epochs before ASHA may stop a trial")
    trial_seed: int = Field(0, description="the trial seed every tune proposal trains with")

    @model_validator(mode="after")
    def _ranges(self) -> TuneSettings:
        for low, high in RANGE_SETTINGS:
            if getattr(self, low) > getattr(self, high):
                raise ValueError(
                    f"{low} ({getattr(self, low)}) is above {high} ({getattr(self, high)})"
                )
        return self


class ReportSettings(StrictModel):
    """What the report judges by (`python -m search.report` options override them)."""

    hc_fail_mm: float = Field(
        10.0,
        gt=0,
        description="an HC error above this many mm is a failed measurement (empty predictions "
        "always fail); the report's failure rate",
    )


class ExploreSettings(StrictModel):
    """A multi-objective search over freeze masks, encoders and recipes (`search.stages.explore`):
    one Optuna study, one Tune experiment; its best configurations join the final stage."""

    trials: int = Field(24, ge=1, description="proposals to train (the budget)")
    encoders: list[str] = Field(
        ["mobilenet_v2"], description="segmentation-models-pytorch encoders to choose from"
    )
    objectives: list[Literal["val_dice", "trainable_params", "total_params"]] = Field(
        ["val_dice", "trainable_params"],
        description="val_dice is maximised, parameter counts minimised",
    )
    # tpe: multi-objective TPE, the default since it gave the best fronts at equal epochs (README
    # "Search efficiency"); nsga2: NSGA-II; random: random search.
    sampler: Literal["nsga2", "tpe", "random"] = "tpe"
    population: int = Field(8, ge=2, description="NSGA-II's population per generation")
    seed: int = 0
    bn_modes: list[Literal["update", "pinned"]] = Field(
        ["update", "pinned"], description="frozen BatchNorm: keep updating statistics, or pin"
    )
    top_k: int = Field(3, ge=0, description="non-dominated configurations the final stage tests")
    epochs: int | None = Field(
        None, ge=1, description="epochs of an explore trial; None = trial.epochs"
    )
    asha: bool = Field(False, description="ASHA stops proposals early (it cost fronts at 4 epochs)")
    grace_period: int = Field(1, ge=1)
    trial_seed: int = Field(0, description="the trial seed every explore proposal trains with")

    @model_validator(mode="after")
    def _valid(self) -> ExploreSettings:
        from trainables.nets.encoders import ENCODERS

        unknown = [e for e in self.encoders if e not in ENCODERS]
        if unknown or not self.encoders:
            raise ValueError(f"encoders: unknown {unknown or '(none)'}; valid: {list(ENCODERS)}")
        if "val_dice" not in self.objectives or len(set(self.objectives)) < 2:
            raise ValueError("objectives: val_dice and at least one parameter count, once each")
        return self


class FoundConfiguration(StrictModel):
    """A configuration an explore stage found (an entry of its `explore_top.yaml`), tested in
    this study's final stage with its own recipe and BatchNorm mode, like the study's own."""

    strategy: str = Field(description="a freeze mask such as 'resnet18:enc0-1+dec3+head'")
    bn_update_frozen: bool | None = None
    lr: LearningRate
    lr_schedule: Schedule = "exponential"
    lr_gamma: DecayFactor = 0.9
    lr_step_size: StepSize = 5
    lr_min: Floor = 0.0
    # As explore_top.yaml lists them; not used for training.
    val_dice: float | None = None
    trainable_params: int | None = None


class SearchConfig(StrictModel):
    name: str = Field("freezeframe", pattern=r"^[A-Za-z0-9_.-]+$", max_length=80)
    stages: list[Stage] = Field(["pretrain", "tune", "final"], min_length=1)
    strategies: list[str] = list(PAPER_STRATEGIES)
    seeds: list[int] = [0, 1, 2, 3]
    resources: Resources = Resources()
    max_concurrent_trials: int | None = Field(
        None,
        ge=1,
        description="trials at once; None = what the cluster holds when a stage starts (on an "
        "autoscaling cluster that starts empty, set its size: the tune and explore stages ask "
        "for this many proposals at a time)",
    )
    max_failures: int = Field(1, ge=0, description="retries of a failed trial")
    keep_best_checkpoints: bool = Field(
        True, description="keep each final trial's best.pt (its model) in the experiment folder"
    )
    pretrain: PretrainSettings = PretrainSettings()
    tune: TuneSettings = TuneSettings()
    explore: ExploreSettings = ExploreSettings()
    wandb: WandbOptions = Field(
        WandbOptions(), description="W&B: a mode (online/offline/disabled/auto) or a mapping"
    )
    wandb_project: str | None = Field(None, exclude=True, description="deprecated: wandb.project")
    wandb_key_on_workers: bool = Field(
        False,
        description="the trial workers hold WANDB_API_KEY (a Kubernetes Secret on worker pods) "
        "and this driver does not: --wandb online is allowed without a login here",
    )
    wandb_timeout_s: float = Field(
        60,
        gt=0,
        description="how long a trial waits for W&B to start a run, and to upload at the end; "
        "past it the trial logs offline (start) or stops waiting (end), and goes on",
    )
    report_metric: str = "test_dice"
    progress_s: float = Field(
        10,
        gt=0,
        description="at most one progress line per this many seconds when the output is not a "
        "terminal (a terminal gets a live table)",
    )
    report: ReportSettings = ReportSettings()
    budget: BudgetSettings = BudgetSettings()
    train_fractions: list[float] = Field(
        [1.0],
        min_length=1,
        description="the final stage trains every strategy x seed on each of these shares of "
        "the training split (whole exams, nested, seeded by the trial seed; validation and test "
        "untouched): learning curves in the report",
    )
    fraction_budget: Literal["steps", "epochs"] = Field(
        "steps",
        description="a share below 1 trains as many optimizer steps as the whole split would "
        "(steps: more epochs, the decay stretched to match) or the same epochs (epochs)",
    )
    final_configs: list[FoundConfiguration] = Field(
        [],
        description="configurations an earlier explore stage found (the entries of its top "
        "configurations file), tested in the final stage beside `strategies` with their own "
        "recipe",
    )
    optuna_storage: str | None = Field(
        None,
        description="where the tune and explore stages' Optuna studies are written as trials "
        "finish, for `optuna-dashboard <storage>` during the run: an RDB URL (e.g. "
        "postgresql://user@host/db; a password belongs in ~/.pgpass, not here: the config is "
        "saved) or a journal file path; None = the journal file journal.log in a local "
        "experiment's studies folder, or for a bucket experiment a journal on the driver's disk "
        "($FREEZEFRAME_CACHE or ~/.cache/freezeframe, optuna/NAME-ID.log); 'none' = no live "
        "storage. A view: the experiment's results stay the source of truth for resume, and a "
        "storage that fails gives a warning, never stops the study",
    )
    shared_storage: bool = Field(
        False,
        description="a local --storage path that every node of a multi-node cluster sees (an NFS "
        "mount); without it a local path on a multi-node cluster is refused",
    )

    @model_validator(mode="before")
    @classmethod
    def _wandb_forms(cls, data: Any) -> Any:
        return merge_legacy_keys(data)

    @model_validator(mode="after")
    def _no_duplicates(self) -> SearchConfig:
        for key in ("strategies", "seeds", "stages", "train_fractions"):
            values = getattr(self, key)
            repeated = sorted({v for v in values if values.count(v) > 1}, key=str)
            if repeated:
                raise ValueError(f"{key}: {repeated} listed more than once")
        wrong = [f for f in self.train_fractions if not 0 < f <= 1]
        if wrong:
            raise ValueError(f"train_fractions: {wrong} not in (0, 1]")
        return self


class ResolvedConfig(StrictModel):
    trial: TrialConfig
    search: SearchConfig

    @model_validator(mode="after")
    def _paper_recipe_in_the_tune_space(self) -> ResolvedConfig:
        """The tune stage proposes the trial's own recipe first; its schedule must be one the
        space has (out-of-range numbers are allowed: Optuna records them as given)."""
        schedules = self.search.tune.schedules
        if "tune" in self.search.stages and self.trial.lr_schedule not in schedules:
            raise ValueError(
                f"search.tune.schedules {schedules} lacks trial.lr_schedule "
                f"'{self.trial.lr_schedule}', the tune stage's first proposal (the trial's own "
                "recipe)"
            )
        return self


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
    if isinstance(search_values.get("wandb"), str):  # `--set search.wandb.entity=...` below
        search_values["wandb"] = {"mode": search_values["wandb"]}
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
    named = search.strategies + [search.pretrain.strategy]
    unknown = [s for s in named + [c.strategy for c in search.final_configs] if not _known(s)]
    if unknown:
        raise ConfigError(
            f"{source} [search]: strategies: unknown {unknown}; valid: {sorted(STRATEGIES)} or "
            "freeze masks such as 'mobilenet_v2:enc4+dec0-4'"
        )
    trial = resolve_trial_config(trial_values, f"{source} [trial]")
    try:
        return ResolvedConfig(trial=trial, search=search)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from None


def _known(strategy: str) -> bool:
    try:
        get_strategy(strategy)
    except KeyError:
        return False
    return True


def _set_nested(target: dict, keys: list[str], value: Any) -> None:
    for key in keys[:-1]:
        target = target.setdefault(key, {})
        if not isinstance(target, dict):
            raise ConfigError(f"--set search.{'.'.join(keys)}: '{key}' is not a section")
    target[keys[-1]] = value
