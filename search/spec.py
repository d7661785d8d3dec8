"""The contract between the driver and a trial: what goes in (`TrialSpec`), what comes back.

The driver builds one `TrialSpec` per trial (or one per stage, which Optuna's proposal then
completes), validated there; Ray Tune carries it as plain JSON (`to_param()`), and the trial
validates it again (`TrialSpec.from_tune_config`). A wrong or missing field fails on either side
with its name. Everything a row of trials.csv says about a trial's settings comes from here.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from trainables.config import TrialConfig

Stage = Literal["pretrain", "tune", "final"]
# The learning-rate recipe: what the tune stage proposes and the final stage takes per strategy.
RECIPE_KEYS = ("lr", "lr_schedule", "lr_gamma", "lr_step_size", "lr_min")
# The key of the one report that follows a trial's last epoch (Tune reserves "done").
FINISHED = "trial_finished"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WandbSettings(_Strict):
    mode: Literal["online", "offline", "disabled"]
    project: str
    group: str = Field(description="the experiment name: one W&B group per experiment")
    dir: str | None = Field(None, description="offline run files; None = W&B's default")


class ExperimentRef(_Strict):
    """Where the trial's experiment folder is (`search.experiment.Experiment(storage, name)`)."""

    storage: str
    name: str


class SyntheticSource(_Strict):
    """Pretrain on generated HC18-like images, made once per node (`trainables.synthetic`)."""

    images: int = Field(ge=8)
    seed: int = 0


class TrialSpec(_Strict):
    """Everything one trial needs from the driver.

    `recipe` says where the trial's learning-rate recipe came from, the `recipe` column of
    trials.csv: 'paper' (the config's own lr and schedule: the paper's in configs/paper.yaml),
    'optuna' (a tune-stage proposal that differs from it), 'best' (the final stage using the
    tune stage's best proposal for the strategy).
    """

    stage: Stage
    experiment: ExperimentRef
    trial: TrialConfig
    recipe: Literal["paper", "optuna", "best"] = "paper"
    wandb: WandbSettings
    synthetic: SyntheticSource | None = Field(
        None, description="train on generated images instead of trial.data_dir"
    )
    keep_best_checkpoint: bool = Field(
        False, description="leave best.pt (the trial's model) in the experiment when done"
    )

    def name(self, trial_id: str | None = None) -> str:
        """`<strategy>__seed<k>`; tune proposals add their Ray trial id to stay unique."""
        base = self.trial.run_name
        return f"{base}__{trial_id}" if self.stage == "tune" and trial_id else base

    def to_param(self) -> dict:
        """The JSON form Ray Tune carries to the trial."""
        return self.model_dump(mode="json")

    @classmethod
    def from_tune_config(cls, config: dict) -> TrialSpec:
        """The trial side: the stage's spec (`config['spec']`) with Optuna's proposal, if any,
        applied (`config[<recipe key>]`, where OptunaSearch puts it)."""
        spec = cls.model_validate(config["spec"])
        proposal = {key: config[key] for key in RECIPE_KEYS if key in config}
        return spec.with_proposal(proposal) if proposal else spec

    def with_proposal(self, proposal: dict) -> TrialSpec:
        """This spec trained with `proposal`'s recipe; labelled 'paper' when it is the config's
        own recipe (every key equal), else 'optuna'."""
        base = paper_recipe(self.trial)
        same = all(_same(proposal.get(key), value) for key, value in base.items())
        trial = TrialConfig.model_validate({**self.trial.model_dump(), **proposal})
        return self.model_copy(update={"trial": trial, "recipe": "paper" if same else "optuna"})


def paper_recipe(trial: TrialConfig) -> dict:
    """The trial's own recipe in the tune stage's search space (the paper's in paper.yaml): the
    decay keys only where its schedule uses them; Optuna replays it as its first proposal."""
    recipe = {"lr": trial.lr, "lr_schedule": trial.lr_schedule}
    if trial.lr_schedule in ("exponential", "step"):
        recipe["lr_gamma"] = trial.lr_gamma
    if trial.lr_schedule == "step":
        recipe["lr_step_size"] = trial.lr_step_size
    return recipe


def _same(value, expected) -> bool:
    if isinstance(expected, float):
        return value is not None and math.isclose(value, expected, rel_tol=1e-9)
    return value == expected


def summary_metrics(metrics: dict) -> dict:
    """A finished trial's flat scalars, for Tune, W&B's summary and trials.csv."""
    out = {k: metrics[k] for k in ("trainable_params", "total_params", "epochs", "wall_s")}
    out |= {f"val_{k}": v for k, v in metrics["val"].items()}
    out |= {f"test_{k}": v for k, v in metrics["test"].items()}
    return out
