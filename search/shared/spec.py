"""The contract between the driver and a trial: what goes in (`TrialSpec`), what comes back.

The driver builds one `TrialSpec` per trial (or one per stage, which Optuna's proposal then
completes), validated there; Ray Tune carries it as plain JSON (`to_param()`), and the trial
validates it again (`TrialSpec.from_tune_config`). A wrong or missing field fails on either side
with its name. Everything a row of trials.csv says about a trial's settings comes from here.
"""

from __future__ import annotations

import hashlib
import json
from typing import Literal, get_args

from pydantic import Field

from search.shared.wandb_options import SystemMetrics
from trainables.core.config import StrictModel, TrialConfig

# The recipe's vocabulary (trainables.core.recipe): every recipe key, trials.csv's recipe
# columns (re-exported for search.driver.trials_table), and the part a tune proposal names.
from trainables.core.recipe import RECIPE_KEYS as RECIPE_KEYS
from trainables.core.recipe import recipe_params

# A study's stages, in the order they run.
Stage = Literal["pretrain", "tune", "explore", "final"]
STAGES: tuple[str, ...] = get_args(Stage)


# The key of the one report that follows a trial's last epoch (Tune reserves "done").
FINISHED = "trial_finished"


# `trial.encoder_weights` of a spec whose encoder is this experiment's pretrain-stage model:
# the trial fetches it from the experiment (wherever the experiment is now, on whatever node).
PRETRAINED = "pretrain-stage"


class WandbSettings(StrictModel):
    """What a trial's W&B run needs (`search.wandb`, resolved by the driver)."""

    mode: Literal["online", "offline", "disabled"]
    project: str
    entity: str | None = Field(None, description="the W&B team; None = the login's default")
    group: str = Field(description="the experiment name: one W&B group per experiment")
    experiment_id: str = Field(
        "",
        description="the experiment's random id: part of every run id, so a new experiment "
        "reusing an old name never resumes the old one's runs",
    )
    dir: str | None = Field(
        None,
        description="offline run files: the experiment folder when local; None = the node's "
        "scratch folder, copied into the experiment when the run ends",
    )
    timeout_s: float = Field(60, gt=0, description="bound on W&B's start and final upload")
    system_metrics: SystemMetrics = Field(
        "auto", description="W&B's system metrics: on unless off (`wandb_link.system_metrics_on`)"
    )


class ExperimentRef(StrictModel):
    """Where the trial's experiment folder is (`search.experiment.Experiment(storage, name)`)."""

    storage: str
    name: str


class SyntheticSource(StrictModel):
    """Pretrain on generated HC18-like images, made once per node (`trainables.synthetic`)."""

    images: int = Field(ge=8)
    seed: int = 0


class TrialSpec(StrictModel):
    """Everything one trial needs from the driver.

    `recipe` says where the trial's learning-rate recipe came from, the `recipe` column of
    trials.csv: 'paper' (the config's own lr and schedule: the paper's in configs/paper.yaml),
    'optuna' (a tune-stage proposal that differs from it), 'best' (the final stage using the
    tune stage's best proposal for the strategy), 'explore' (an explore-stage proposal, or the
    final stage testing a configuration the explore stage found, with its recipe).
    """

    stage: Stage
    name: str = Field(
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="the trial's name: its result, checkpoints and W&B run are found by it",
    )
    experiment: ExperimentRef
    trial: TrialConfig
    recipe: Literal["paper", "optuna", "best", "explore"] = "paper"
    data_digest: str | None = Field(
        None,
        description="the experiment's data fingerprint; the trial checks its node's copy "
        "against it before training (None: not checked, e.g. a generated source)",
    )
    wandb: WandbSettings
    synthetic: SyntheticSource | None = Field(
        None, description="train on generated images instead of trial.data_dir"
    )
    keep_best_checkpoint: bool = Field(
        False, description="leave best.pt (the trial's model) in the experiment when done"
    )
    pretext: Literal["masked", "denoise"] | None = Field(
        None, description="self-supervised pretraining (trainables.pretext) instead of training"
    )
    unlabelled_dir: str | None = Field(
        None, description="pretext images from this folder, not the target's training split"
    )
    source_digest: str | None = Field(
        None,
        description="the pretraining folder's content digest on the driver "
        "(`search.encoders.folder_digest`): a node whose copy differs fails the trial",
    )
    versions: dict[str, str] | None = Field(
        None,
        description="the driver's installed dependency versions (`search.versions`): a "
        "worker whose versions differ fails the trial naming the packages",
    )
    encoder_source: str | None = Field(
        None, description="where the encoder weights came from, for W&B and the result"
    )

    def to_param(self) -> dict:
        """The JSON form Ray Tune carries to the trial (`{"spec": spec.to_param()}`)."""
        return self.model_dump(mode="json")

    @classmethod
    def from_tune_config(cls, config: dict) -> TrialSpec:
        """The trial side: validate what the driver sent."""
        return cls.model_validate(config["spec"])

    def with_proposal(self, proposal: dict) -> TrialSpec:
        """This spec trained with a proposed recipe, named after it (the same recipe always
        gets the same name, so a resumed study finds its checkpoints); labelled 'paper' when
        it is the config's own recipe, else 'optuna'."""
        proposal = recipe_params(proposal)
        same = recipe_params(paper_recipe(self.trial)) == proposal
        trial = TrialConfig.model_validate({**self.trial.model_dump(), **proposal})
        name = f"{self.trial.run_name}__{recipe_digest(proposal)}"
        return self.model_copy(
            update={"trial": trial, "name": name, "recipe": "paper" if same else "optuna"}
        )


def paper_recipe(trial: TrialConfig) -> dict:
    """The trial's own recipe in the tune stage's search space (the paper's in paper.yaml)."""
    return recipe_params(trial.model_dump())


def recipe_digest(params: dict) -> str:
    """8 hex digits naming a recipe."""
    return hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:8]


def summary_metrics(metrics: dict) -> dict:
    """A finished trial's flat scalars, for Tune, W&B's summary and trials.csv."""
    out = {k: metrics[k] for k in ("trainable_params", "total_params", "epochs", "wall_s")}
    # Where the numbers came from, e.g. cuda:Tesla T4 and fp16 (results of older versions: '').
    out |= {k: metrics.get(k, "") for k in ("device", "precision")}
    # The training images a learning curve plots against (pretext trials and older results: -).
    out |= {k: metrics[k] for k in ("train_fraction", "train_images") if k in metrics}
    out |= {f"val_{k}": v for k, v in metrics["val"].items()}
    out |= {f"test_{k}": v for k, v in metrics["test"].items()}
    return out
