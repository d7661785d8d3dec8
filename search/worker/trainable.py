"""The Ray Tune trainable: spec -> `trainables.training.run.run_trial` (or `pretext.run_pretext`)
-> `tune.report`.

It reports every epoch (the trial's checkpoint is in the experiment folder by then, so a lost
node or a killed driver costs at most the epoch in progress), stores the final metrics (so a
resumed search never trains a finished trial again), and logs to W&B from the trial's own
process. File handling is `worker.files`'s; W&B is `worker.wandb_link`'s (its artifacts:
`worker.wandb_artifacts`).
"""

from __future__ import annotations

import threading

from ray import tune
from ray.train._internal.session import get_session
from ray.tune.trainable.function_trainable import wrap_function

from search.shared.spec import FINISHED, TrialSpec, summary_metrics
from search.worker.files import TrialFiles, granted_gpus
from search.worker.wandb_artifacts import declare_dataset
from search.worker.wandb_link import (
    define_epoch_metrics,
    finish_run,
    log_epoch,
    log_per_image,
    log_summary,
    run_tags,
    start_run,
    system_metrics_on,
)

# How long a stopped trial's process waits for the trial's own clean-up (its W&B run finishing,
# its work folder removed) before Ray may end it: beyond W&B's own finish timeout (60 s).
CLEANUP_WAIT_S = 90.0


def train_ray_trial(config: dict) -> None:
    """Ray Tune function trainable for every stage (run by `RayTrial`)."""
    # Imported here, in the trial's process: the driver imports this module for the Tuner and
    # never trains, so it starts without torch (seconds per start on a small machine).
    from trainables.training.pretext import run_pretext
    from trainables.training.run import run_trial

    spec = TrialSpec.from_tune_config(config)
    files = TrialFiles(spec)
    run = None
    try:
        if (stored := files.finished_result()) is not None:  # finished before the driver died
            tune.report({**summary_metrics(stored), FINISHED: True})
            return
        cfg, data = files.prepare()
        labels = {"trial_name": spec.name, "stage": spec.stage, "recipe": spec.recipe}
        labels["encoder_source"] = spec.encoder_source
        config = {**cfg.model_dump(mode="json"), **labels}
        run = _start_run(spec, config, files)

        def on_epoch(record: dict, out_dir, written: list[str]) -> None:
            files.mirror(written)
            scalars = {k: v for k, v in record.items() if isinstance(v, (int, float))}
            tune.report(scalars)
            if run is not None:
                log_epoch(run, scalars)

        if spec.pretext:  # self-supervised pretraining: no labels read
            images, names = files.pretext_images(cfg, data)
            metrics = run_pretext(cfg, files.workdir, images, spec.pretext, on_epoch, False)
            metrics["pretrain_files"] = names
        else:
            test = spec.stage == "final"  # tune and pretrain trials are scored on validation
            metrics = run_trial(
                cfg, files.workdir, data=data, on_epoch=on_epoch, evaluate_test=test, verbose=False
            )
        metrics |= labels
        files.finish(metrics)
        summary = summary_metrics(metrics)
        if run is not None:
            params = {k: metrics[k] for k in ("trainable_params", "total_params")}
            log_summary(run, summary, params)
            if (rows := files.per_image_rows()) is not None:
                log_per_image(run, rows)
        tune.report({**summary, FINISHED: True})
    finally:  # also when ASHA stops the trial (SystemExit at its next report)
        finish_run(run, None if spec.wandb.dir else files.experiment)
        files.cleanup()


def _start_run(spec: TrialSpec, config: dict, files: TrialFiles):
    """The trial's W&B run (None when disabled): tagged, its epoch metrics defined, the
    experiment's dataset declared as its input (trials on the target data), and W&B's system
    metrics unless `search.wandb.system_metrics` is off (GPU charts: the trial's GPUs only)."""
    trial = spec.trial
    tags = run_tags(spec.stage, trial.strategy, trial.train_fraction, spec.recipe)
    gpus = [int(i) for i in granted_gpus() if str(i).isdigit()]
    stats = system_metrics_on(spec.wandb)
    run = start_run(spec.wandb, spec.stage, spec.name, config, files.scratch, tags, stats, gpus)
    if run is not None:
        define_epoch_metrics(run)
        if spec.data_digest is not None:
            declare_dataset(run, files.experiment, spec.data_digest, files.workdir.parent)
    return run


class RayTrial(wrap_function(train_ray_trial)):
    """The function trainable, waiting for its `finally` clean-up when Ray stops the trial.

    Ray's function trainable signals the training thread to stop (a SystemExit at its next
    `tune.report`) and returns at once; when the trial was the actor's last (ASHA stopping it),
    the process then ends while the thread is still finishing its W&B run, which is left
    unfinished. Here `cleanup` waits for that thread, bounded by CLEANUP_WAIT_S."""

    def cleanup(self):
        session = get_session()
        thread: threading.Thread | None = getattr(session, "training_thread", None)
        try:
            super().cleanup()
        finally:
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout=CLEANUP_WAIT_S)
