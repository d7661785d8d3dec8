"""One study: the configured stages in order, each handing what it produced to the next, then
the report. Every stage is its own Tune experiment in the experiment folder, so each can run
alone, and a resumed study reruns the unfinished one from the experiment's results and
checkpoints while finished ones are read back.
"""

from __future__ import annotations

import os

import ray

from search.driver.config import ResolvedConfig
from search.driver.encoders import later_encoder_weights
from search.driver.stages import explore as explore_stage
from search.driver.stages import final as final_stage
from search.driver.stages import pretrain as pretrain_stage
from search.driver.stages import tune as tune_stage
from search.driver.stages.common import StageRunner
from search.driver.trials_table import settle_finished
from search.experiment.folder import Experiment
from search.shared.stop import STOP
from search.worker.wandb_artifacts import log_dataset, log_models
from search.worker.wandb_link import local_wandb_key, sync_hint


def run_study(
    cfg: ResolvedConfig,
    experiment: Experiment,
    wandb_mode: str,
    resume: bool,
    data_digest: str,
    joined: bool = False,
):
    """Run `cfg.search.stages`; returns the report (None without a final stage).

    The pretrain stage's checkpoint becomes the encoder weights of the later stages (on a
    resume without the pretrain stage, the one a first run left); the tune stage's best
    recipes (or those a first run stored) go to the final stage. Trials on the target data
    check their node's copy against `data_digest` (the driver's, stored in the experiment).
    """
    stages = cfg.search.stages
    runner = StageRunner(cfg, experiment, wandb_mode, data_digest, joined)
    logs_here = _wandb_here(wandb_mode)  # False: online with the key on the workers only
    if logs_here and data_digest:
        log_dataset(runner.wandb, experiment, data_digest)
    if resume:
        for stage in stages:
            settle_finished(experiment, stage)
    if "pretrain" in stages:
        STOP.check()
        weights = pretrain_stage.run(runner)
        for network, info in experiment.read_encoder_info().items():
            print(f"[pretrain] {network} encoder: {info['description']}", flush=True)
    else:
        weights = later_encoder_weights(cfg, experiment, resume)
    if "tune" in stages:
        STOP.check()
        recipes = tune_stage.run(runner, weights)
    else:
        recipes = experiment.read_best_recipes()
    if "explore" in stages:
        STOP.check()
        discovered = explore_stage.run(runner, weights)
    else:
        discovered = experiment.read_explore_top()
    discovered = discovered + [c.model_dump() for c in cfg.search.final_configs]
    if "final" in stages:
        STOP.check()
        final_stage.run(runner, weights, recipes, discovered)
        if logs_here and cfg.search.wandb.log_checkpoints:
            best = final_stage.best_per_strategy(runner)
            log_models(runner.wandb, experiment, best, data_digest)
    STOP.check()  # a stop between the last stage and the report: no report claims completeness
    hint = sync_hint(experiment) if wandb_mode != "disabled" else None
    if hint:
        print(hint, flush=True)
    if "final" not in stages:
        return None
    from search.report import build_report

    if wandb_mode != "disabled" and not logs_here:
        print(
            "W&B: the report (and the models of search.wandb.log_checkpoints) are not logged "
            f"from this driver (no key here); run `python -m search.report {experiment.uri} "
            "--wandb online` where you are logged in",
            flush=True,
        )
        wandb_mode = "disabled"
    return build_report(
        experiment.uri,
        metric=cfg.search.report_metric,
        wandb_mode=wandb_mode,
        wandb_project=cfg.search.wandb.project,
        wandb_timeout_s=cfg.search.wandb_timeout_s,
    )


def _wandb_here(wandb_mode: str) -> bool:
    """Whether this driver logs to W&B itself (the report, the artifacts): not when disabled,
    nor online with the key held by the trial workers only (`search.wandb_key_on_workers`)."""
    return wandb_mode != "disabled" and not (wandb_mode == "online" and local_wandb_key() is None)


# Worker-side settings for every trial process of the study. A trial stopped early (ASHA)
# finishes its W&B run and removes its work folder before its thread ends; Ray reuses the
# process for the next trial only after that thread ended, and waits 2 s by default.
WORKER_ENV = {"TUNE_FUNCTION_THREAD_TIMEOUT_S": "60"}


def connect_ray(num_cpus: int | None = None, address: str | None = None) -> bool:
    """Join the cluster named by `address` or RAY_ADDRESS (`ray submit` on the launcher's head
    and Ray jobs set it), else start a private local one; True when this call started it.

    Joining is explicit: a study never joins a Ray it happens to find on this machine (another
    study's private one would end under it)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # One checkpoint per epoch is the design (a crash loses at most that epoch); Tune's
    # warning about frequent experiment snapshots would drown the progress lines.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    runtime_env = {"env_vars": WORKER_ENV}
    address = address or os.environ.get("RAY_ADDRESS")
    if address and address != "local":
        ray.init(address=address, log_to_driver=False, runtime_env=runtime_env)
        return False
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(
        address="local",  # a new instance, whatever a stale address file says
        num_cpus=num_cpus or os.cpu_count(),
        include_dashboard=False,
        log_to_driver=False,
        runtime_env=runtime_env,
    )
    return True
