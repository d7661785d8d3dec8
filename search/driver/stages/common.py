"""What every stage needs from Ray Tune: the trainable with its resources, the trial specs, and
one Tune experiment run (rebuilt from stored results on resume) with the trials table kept
current.
"""

from __future__ import annotations

from ray import tune
from ray.tune.search import ConcurrencyLimiter

from search.driver.budget import Budget
from search.driver.capacity import cluster_capacity, trial_slots
from search.driver.config import ResolvedConfig
from search.driver.trials_table import TrialsTable, mark_interrupted
from search.experiment.folder import Experiment
from search.shared.spec import (
    PRETRAINED,
    ExperimentRef,
    Stage,
    SyntheticSource,
    TrialSpec,
    WandbSettings,
)
from search.shared.stop import STOP
from search.shared.versions import installed_versions
from search.worker.trainable import RayTrial
from trainables.core.config import TrialConfig
from trainables.nets.strategies import get_strategy


def trial_dirname(trial) -> str:
    """Ray's folder of a trial, named like the trial itself (`decoder__seed0`)."""
    return TrialSpec.from_tune_config(trial.config).name


class StageRunner:
    """Runs the Tune experiments of one study on the connected Ray cluster.

    Args:
        cfg: the resolved config.
        experiment: the experiment folder.
        wandb_mode: online, offline or disabled (resolved by the CLI).
        data_digest: the target data's fingerprint digest (`TrialData.digest()`).
    """

    def __init__(
        self,
        cfg: ResolvedConfig,
        experiment: Experiment,
        wandb_mode: str,
        data_digest: str | None = None,
        joined: bool = False,
    ):
        self.cfg, self.experiment, self.data_digest = cfg, experiment, data_digest
        self.joined = joined  # a cluster this driver joined, which may autoscale
        self.budget = Budget.start(cfg.search.budget, experiment, cfg.search.resources.model_dump())
        resources = cfg.search.resources
        # The trainable and what each trial asks for; `tune.with_resources` is applied when the
        # Tuner is made (its class wrapper is local, and a runner must pickle with the plans).
        self.trainable, self.resources = RayTrial, {"cpu": resources.cpu, "gpu": resources.gpu}
        # Torch threads = the CPUs Ray gives the trial: two trials never oversubscribe a node.
        threads = cfg.trial.num_threads or max(1, int(resources.cpu))
        self.base_trial = cfg.trial.model_copy(update={"num_threads": threads})
        options = cfg.search.wandb
        self.wandb = WandbSettings(
            mode=wandb_mode,
            project=options.project,
            entity=options.entity,
            group=experiment.name,
            experiment_id=experiment.identity(),
            dir=experiment.wandb_dir(),
            timeout_s=cfg.search.wandb_timeout_s,
            system_metrics=options.system_metrics,
        )

    def spec(
        self,
        stage: Stage,
        *,
        recipe: str = "paper",
        synthetic: SyntheticSource | None = None,
        keep_best_checkpoint: bool = False,
        data_digest: str | None | bool = True,
        pretext: str | None = None,
        unlabelled_dir: str | None = None,
        source_digest: str | None = None,
        encoder_source: str | None = None,
        **trial_updates,
    ) -> TrialSpec:
        """A validated spec: the study's trial settings with `trial_updates` applied, named
        `<strategy>__seed<k>`; its trial checks its data against `data_digest` (True: the
        study's target data; None: no check, e.g. another source domain)."""
        trial = TrialConfig.model_validate({**self.base_trial.model_dump(), **trial_updates})
        if not get_strategy(trial.strategy).pretrained:  # the baseline starts from scratch
            trial = trial.model_copy(update={"encoder_weights": "none"})
        store = self.experiment.store
        return TrialSpec(
            stage=stage,
            name=trial.run_name,
            experiment=ExperimentRef(storage=store.storage, name=store.name),
            trial=trial,
            recipe=recipe,
            wandb=self.wandb,
            synthetic=synthetic,
            keep_best_checkpoint=keep_best_checkpoint,
            data_digest=self.data_digest if data_digest is True else data_digest,
            pretext=pretext,
            unlabelled_dir=unlabelled_dir,
            source_digest=source_digest,
            encoder_source=encoder_source or self._encoder_source(trial.encoder_weights),
            versions=installed_versions(),
        )

    def _encoder_source(self, weights: str) -> str:
        """Where a trial's encoder weights come from, in words (W&B, the result)."""
        if weights == PRETRAINED:
            from search.driver.encoders import describe

            return f"pretrain stage: {describe(self.cfg)}"
        return {"imagenet": "ImageNet", "none": "random initialisation"}.get(weights, weights)

    def searcher(self, searcher) -> ConcurrencyLimiter:
        """A search algorithm that keeps every trial slot busy: Ray Tune asks a custom searcher
        for one pending trial at a time, so a trial whose worker is still starting (seconds)
        holds every other slot idle; the limiter lets it ask for one per slot."""
        return ConcurrencyLimiter(searcher, max_concurrent=self.slots())

    def slots(self) -> int:
        """Trials that can run at once (`search.capacity.trial_slots`), from the cluster's
        capacity when the stage starts: its nodes now, or, on an autoscaling cluster, its head
        plus every worker the autoscaler may add."""
        return trial_slots(self.cfg.search, cluster_capacity(self.joined))[0]

    def fit(
        self,
        stage: Stage,
        param_space: dict,
        expected: int,
        callbacks=(),
        epochs: int | None = None,
        **tune_config,
    ):
        """Run one Tune experiment for `stage`, in the experiment's `<stage>/` folder.

        A resumed study does not restore Tune's own state (`Tuner.restore` would reuse the first
        run's parameters, whatever the command line says now): each stage builds only the
        trials it still needs from what the experiment holds, with today's settings, and an
        interrupted trial continues from its checkpoint in the experiment (found by name).

        Args:
            param_space: `{"spec": ...}`: a `TrialSpec.to_param()`, or a grid of them ({} when
                a search algorithm makes the specs).
            expected: how many trials the stage has in all, earlier runs included (progress).
            callbacks: more Tune callbacks (measurements) beside the trials table.
            epochs: epochs per trial when the stage's differ from the study's (progress ETA).
            tune_config: `tune.TuneConfig` arguments (search algorithm, scheduler, samples).
        """
        run_config = tune.RunConfig(
            name=stage,
            storage_path=self.experiment.uri,
            failure_config=tune.FailureConfig(max_failures=self.cfg.search.max_failures),
            callbacks=[
                TrialsTable(
                    self.experiment,
                    stage,
                    expected,
                    epochs=epochs or self.base_trial.epochs,
                    progress_s=self.cfg.search.progress_s,
                ),
                *callbacks,
            ],
            verbose=0,
        )
        tuner = tune.Tuner(
            tune.with_resources(self.trainable, self.resources),
            param_space=param_space,
            # Reused worker processes skip re-importing torch for every trial (seconds on a
            # CPU). Not for GPU trials: Ray 2.60's Tune then reuses one cached actor and runs
            # the trials one at a time, whatever the GPUs free (measured: 2 logical GPUs, 6
            # trials of 3 s: 19 s in sequence with reuse, pairs without).
            tune_config=tune.TuneConfig(
                reuse_actors=self.cfg.search.resources.gpu == 0,
                trial_dirname_creator=trial_dirname,
                **tune_config,
            ),
            run_config=run_config,
        )
        results = tuner.fit()
        if STOP.requested:  # cut short: its trials stay open for --resume, nothing is built on it
            mark_interrupted(self.experiment, stage)
            STOP.check()
        return results
