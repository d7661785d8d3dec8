"""One study: the configured stages in order, each handing what it produced to the next, then
the report. Every stage is its own Tune experiment in the experiment folder, so each can run
alone, and a resumed study restores the unfinished one while finished ones are read back."""

from __future__ import annotations

import os

import ray

from search.config import ResolvedConfig
from search.experiment import Experiment
from search.stages import final as final_stage
from search.stages import pretrain as pretrain_stage
from search.stages import tune as tune_stage
from search.stages.common import StageRunner


def run_study(cfg: ResolvedConfig, experiment: Experiment, wandb_mode: str, resume: bool):
    """Run `cfg.search.stages`; returns the report (None without a final stage).

    The pretrain stage's checkpoint becomes the encoder weights of the later stages (on a
    resume without the pretrain stage, the one a first run left); the tune stage's best
    recipes (or those a first run stored) go to the final stage.
    """
    stages = cfg.search.stages
    runner = StageRunner(cfg, experiment, wandb_mode)
    weights = cfg.trial.encoder_weights
    if "pretrain" in stages:
        weights = pretrain_stage.run(runner)
        print(f"[pretrain] encoder weights: {weights}", flush=True)
    elif resume and experiment.pretrain_encoder_uri():
        weights = experiment.pretrain_encoder_uri()
    if "tune" in stages:
        recipes = tune_stage.run(runner, weights)
    else:
        recipes = experiment.read_best_recipes()
    if "final" not in stages:
        return None
    final_stage.run(runner, weights, recipes)
    from search.report import build_report

    return build_report(
        experiment.uri,
        metric=cfg.search.report_metric,
        wandb_mode=wandb_mode,
        wandb_project=cfg.search.wandb_project,
    )


def connect_ray(num_cpus: int | None = None) -> None:
    """Join the cluster named by RAY_ADDRESS (or `ray submit`'s), else start a local one."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # One checkpoint per epoch is the design (a crash loses at most that epoch); Tune's
    # warning about frequent experiment snapshots would drown the progress lines.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=False)
        return
    try:
        ray.init(address="auto", log_to_driver=False)  # a cluster already running here
    except (ConnectionError, RuntimeError, ValueError):
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, log_to_driver=False)
