"""The study as three Ray Tune stages: pretrain -> tune (Optuna per strategy) -> final grid.

Every stage is its own Tune experiment under `<storage>/<name>/<stage>`, so each can run alone,
and a resumed search restores the unfinished one (`Tuner.restore`) while finished stages are
read back from their results. The search space is data (config ranges); the only computation
per trial happens in `search.trainable`.
"""

from __future__ import annotations

import collections
import functools
import json
import os
from pathlib import Path

import ray
import yaml
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from search.config import PRETRAIN_DATA, ResolvedConfig, TuneSettings
from search.storage import ExperimentStore, is_uri
from search.trainable import RECIPE_KEYS, run_ray_trial
from search.trials_table import TrialsTable
from trainables.config import TrialConfig


def paper_recipe(trial: TrialConfig) -> dict:
    recipe = {"lr": trial.lr, "lr_schedule": trial.lr_schedule}
    if trial.lr_schedule in ("exponential", "step"):
        recipe["lr_gamma"] = trial.lr_gamma
    if trial.lr_schedule == "step":
        recipe["lr_step_size"] = trial.lr_step_size
    return recipe


def optuna_space(trial, settings: dict) -> None:
    """Define-by-run space: the decay parameters exist only for the schedules that use them."""
    trial.suggest_float("lr", settings["lr_min"], settings["lr_max"], log=True)
    schedule = trial.suggest_categorical("lr_schedule", settings["schedules"])
    if schedule in ("exponential", "step"):
        trial.suggest_float("lr_gamma", settings["gamma_min"], settings["gamma_max"])
    if schedule == "step":
        trial.suggest_int("lr_step_size", 1, settings["step_size_max"])


class SearchService:
    """Runs the configured stages of one experiment on the connected Ray cluster."""

    def __init__(self, cfg: ResolvedConfig, store: ExperimentStore, wandb_mode: str):
        self.cfg, self.store, self.wandb_mode = cfg, store, wandb_mode
        search = cfg.search
        self.trainable = tune.with_resources(
            run_ray_trial, {"cpu": search.resources.cpu, "gpu": search.resources.gpu}
        )
        # Torch threads = the CPUs Ray gives the trial: two trials never oversubscribe a node.
        threads = cfg.trial.num_threads or max(1, int(search.resources.cpu))
        self.base_trial = {**cfg.trial.model_dump(mode="json"), "num_threads": threads}

    # -- plumbing ------------------------------------------------------------------------
    def _param_space(self, stage: str, **extra) -> dict:
        wandb_dir = None if is_uri(self.store.uri) else self.store.path("")
        return {
            "stage": stage,
            "trial": self.base_trial,
            "experiment": {"storage": self.store.storage, "name": self.store.name},
            "wandb": {
                "mode": self.wandb_mode,
                "project": self.cfg.search.wandb_project,
                "group": self.store.name,
                "dir": wandb_dir,
            },
            **extra,
        }

    def _run_config(self, stage: str, expected: int) -> tune.RunConfig:
        return tune.RunConfig(
            name=stage,
            storage_path=self.store.uri,
            failure_config=tune.FailureConfig(max_failures=self.cfg.search.max_failures),
            callbacks=[
                TrialsTable(self.store, stage.split("_")[0], paper_recipe(self.cfg.trial), expected)
            ],
            verbose=0,
        )

    def _fit(self, stage: str, tune_config: tune.TuneConfig, param_space: dict, expected: int):
        path = f"{self.store.uri}/{stage}"
        if tune.Tuner.can_restore(path):
            print(f"[{stage}] resuming the unfinished Tune experiment at {path}", flush=True)
            tuner = tune.Tuner.restore(
                path, self.trainable, resume_unfinished=True, resume_errored=True
            )
        else:
            tuner = tune.Tuner(
                self.trainable,
                param_space=param_space,
                tune_config=tune_config,
                run_config=self._run_config(stage, expected),
            )
        return tuner.fit()

    def _results(self, stage: str) -> list[dict]:
        return [
            json.loads(self.store.read_text(f"results/{stage}/{name}"))
            for name in self.store.list(f"results/{stage}")
            if name.endswith(".json")
        ]

    # -- stages ----------------------------------------------------------------------------
    def pretrain(self) -> str:
        """Train the full U-Net on the source domain; return its checkpoint as encoder weights."""
        settings = self.cfg.search.pretrain
        target = "pretrain/encoder.pt"
        if not self.store.exists(target):
            spec = {
                "strategy": settings.strategy,
                "seed": 0,
                "epochs": settings.epochs,
                "lr": settings.lr,
                "encoder_weights": "none",
                **PRETRAIN_DATA,
            }
            extra = {"spec": spec}
            if settings.source == "synthetic":
                cache = self.cfg.trial.cache_dir
                extra["synthetic"] = {"n": settings.synthetic_images, "seed": 0, "cache_dir": cache}
            else:
                spec["data_dir"] = settings.source
            self._fit(
                "pretrain",
                tune.TuneConfig(num_samples=1, reuse_actors=True),
                self._param_space("pretrain", **extra),
                1,
            )
        if not self.store.exists(target):
            raise RuntimeError("the pretrain stage finished without a checkpoint; see trials.csv")
        return self.store.location(target)

    def tune_recipes(self) -> dict[str, dict]:
        """Optuna per strategy; returns and writes the best recipe per strategy."""
        settings: TuneSettings = self.cfg.search.tune
        study_dir = (
            Path(self.store.path(""))
            if not is_uri(self.store.uri)
            else _local_state_dir(self.store)
        )
        study_dir.mkdir(parents=True, exist_ok=True)
        space = functools.partial(optuna_space, settings=settings.model_dump())
        strategies = self.cfg.search.strategies
        done = collections.Counter(r["strategy"] for r in self._results("tune"))
        for strategy in strategies:
            if done[strategy] >= settings.trials_per_strategy:
                continue
            import optuna

            searcher = OptunaSearch(
                space=space,
                metric="val_dice",
                mode="max",
                points_to_evaluate=[paper_recipe(self.cfg.trial)],
                sampler=optuna.samplers.TPESampler(seed=settings.seed),
                storage=optuna.storages.RDBStorage(f"sqlite:///{study_dir / 'optuna.db'}"),
                study_name=f"tune_{strategy}",
            )
            limit = self.cfg.search.max_concurrent_trials
            scheduler = None
            if settings.asha:
                scheduler = ASHAScheduler(
                    time_attr="training_iteration",
                    # One report per epoch, then one with the final metrics: a trial that
                    # survives every rung must reach that last report.
                    max_t=self.cfg.trial.epochs + 1,
                    grace_period=settings.grace_period,
                )
            tune_config = tune.TuneConfig(
                search_alg=ConcurrencyLimiter(searcher, limit) if limit else searcher,
                scheduler=scheduler,
                reuse_actors=True,
                metric="val_dice",
                mode="max",
                num_samples=settings.trials_per_strategy,
            )
            spec = {"strategy": strategy, "seed": settings.trial_seed}
            self._fit(
                f"tune_{strategy}",
                tune_config,
                self._param_space("tune", spec=spec),
                # The stage's progress counts the tune trials of every strategy.
                settings.trials_per_strategy * len(strategies),
            )
        return self.write_best_recipes()

    def write_best_recipes(self) -> dict[str, dict]:
        best: dict[str, dict] = {}
        for result in self._results("tune"):
            strategy, config = result["strategy"], result["config"]
            score = result["val"].get("dice", float("-inf"))
            if strategy not in best or score > best[strategy]["val_dice"]:
                best[strategy] = {k: config[k] for k in RECIPE_KEYS} | {"val_dice": score}
        self.store.write_text("best_recipes.yaml", yaml.safe_dump(best, sort_keys=True))
        return best

    def final(self, recipes: dict[str, dict]) -> None:
        """The grid strategies x seeds, each with its strategy's best (or the paper's) recipe."""
        specs, sources = [], {}
        for strategy in self.cfg.search.strategies:
            recipe = recipes.get(strategy)
            sources[strategy] = "best" if recipe else "paper"
            recipe = {k: recipe[k] for k in RECIPE_KEYS} if recipe else paper_recipe(self.cfg.trial)
            specs += [
                {"strategy": strategy, "seed": seed, **recipe} for seed in self.cfg.search.seeds
            ]
        # Reused worker processes skip re-importing torch for every trial (seconds on a CPU).
        tune_config = tune.TuneConfig(
            max_concurrent_trials=self.cfg.search.max_concurrent_trials, reuse_actors=True
        )
        space = self._param_space(
            "final",
            spec=tune.grid_search(specs),
            recipe_source=sources,
            keep_best_checkpoints=self.cfg.search.keep_best_checkpoints,
        )
        self._fit("final", tune_config, space, len(specs))


def _local_state_dir(store: ExperimentStore) -> Path:
    """Head-node folder for state that needs a local file (the Optuna SQLite study)."""
    return Path.home() / ".freezeframe" / store.name


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
