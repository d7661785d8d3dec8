"""What every stage needs from Ray Tune: the trainable with its resources, the trial specs, and
one Tune experiment run (or restored) with the trials table kept current."""

from __future__ import annotations

from ray import tune

from search.config import ResolvedConfig
from search.experiment import Experiment
from search.spec import ExperimentRef, Stage, SyntheticSource, TrialSpec, WandbSettings
from search.trainable import run_ray_trial
from search.trials_table import TrialsTable
from trainables.config import TrialConfig


def trial_dirname(trial) -> str:
    """Ray's folder of a trial, named like the trial itself (`decoder__seed0`)."""
    return TrialSpec.from_tune_config(trial.config).name(trial.trial_id)


class StageRunner:
    """Runs the Tune experiments of one study on the connected Ray cluster.

    Args:
        cfg: the resolved config.
        experiment: the experiment folder.
        wandb_mode: online, offline or disabled (resolved by the CLI).
    """

    def __init__(self, cfg: ResolvedConfig, experiment: Experiment, wandb_mode: str):
        self.cfg, self.experiment = cfg, experiment
        resources = cfg.search.resources
        self.trainable = tune.with_resources(
            run_ray_trial, {"cpu": resources.cpu, "gpu": resources.gpu}
        )
        # Torch threads = the CPUs Ray gives the trial: two trials never oversubscribe a node.
        threads = cfg.trial.num_threads or max(1, int(resources.cpu))
        self.base_trial = cfg.trial.model_copy(update={"num_threads": threads})
        self.wandb = WandbSettings(
            mode=wandb_mode,
            project=cfg.search.wandb_project,
            group=experiment.name,
            dir=experiment.wandb_dir(),
        )

    def spec(
        self,
        stage: Stage,
        *,
        recipe: str = "paper",
        synthetic: SyntheticSource | None = None,
        keep_best_checkpoint: bool = False,
        **trial_updates,
    ) -> TrialSpec:
        """A validated spec: the study's trial settings with `trial_updates` applied."""
        trial = TrialConfig.model_validate({**self.base_trial.model_dump(), **trial_updates})
        store = self.experiment.store
        return TrialSpec(
            stage=stage,
            experiment=ExperimentRef(storage=store.storage, name=store.name),
            trial=trial,
            recipe=recipe,
            wandb=self.wandb,
            synthetic=synthetic,
            keep_best_checkpoint=keep_best_checkpoint,
        )

    def fit(
        self, run: str, stage: Stage, param_space: dict, expected: int, **tune_config
    ) -> tune.ResultGrid:
        """Run the Tune experiment `run` of `stage`, or continue it where a killed driver left it.

        Args:
            run: the Tune experiment's folder name in the experiment (a stage may run several).
            param_space: `{"spec": ...}`: a `TrialSpec.to_param()`, or a grid of them.
            expected: how many trials the stage runs in all (for the progress count).
            tune_config: `tune.TuneConfig` arguments (search algorithm, scheduler, samples).
        """
        uri = self.experiment.tune_run_uri(run)
        if tune.Tuner.can_restore(uri):
            print(f"[{stage}] resuming the unfinished Tune experiment at {uri}", flush=True)
            tuner = tune.Tuner.restore(
                uri, self.trainable, resume_unfinished=True, resume_errored=True
            )
        else:
            run_config = tune.RunConfig(
                name=run,
                storage_path=self.experiment.uri,
                failure_config=tune.FailureConfig(max_failures=self.cfg.search.max_failures),
                callbacks=[TrialsTable(self.experiment, stage, expected)],
                verbose=0,
            )
            tuner = tune.Tuner(
                self.trainable,
                param_space=param_space,
                # Reused worker processes skip re-importing torch for every trial.
                tune_config=tune.TuneConfig(
                    reuse_actors=True, trial_dirname_creator=trial_dirname, **tune_config
                ),
                run_config=run_config,
            )
        return tuner.fit()
