"""The Ray Tune trainable: spec -> `trainables.train.run_trial` -> `tune.report`.

It reports every epoch (the trial's checkpoint is in the experiment folder by then, so a lost
node or a killed driver costs at most the epoch in progress), stores the final metrics (so a
resumed search never trains a finished trial again), and logs to W&B from the trial's own
process. File handling is `search.worker`'s; W&B is `search.wandb_link`'s.
"""

from __future__ import annotations

from ray import tune

from search.spec import FINISHED, TrialSpec, summary_metrics
from search.wandb_link import start_run
from search.worker import TrialFiles
from trainables.train import run_trial


def run_ray_trial(config: dict) -> None:
    """Ray Tune function trainable for every stage."""
    spec = TrialSpec.from_tune_config(config)
    name = spec.name(tune.get_context().get_trial_id())
    files = TrialFiles(spec, name)
    if (stored := files.finished_result()) is not None:  # finished before the driver died
        tune.report({**summary_metrics(stored), FINISHED: True})
        return
    run = None
    try:
        cfg = files.prepare()
        labels = {"trial_name": name, "stage": spec.stage, "recipe": spec.recipe}
        run = start_run(spec.wandb, spec.stage, name, {**cfg.model_dump(mode="json"), **labels})

        def on_epoch(record: dict, out_dir, written: list[str]) -> None:
            files.mirror(written)
            scalars = {k: v for k, v in record.items() if isinstance(v, (int, float))}
            tune.report(scalars)
            if run is not None:
                run.log(scalars, step=record["epoch"])

        test = spec.stage == "final"  # tune and pretrain trials are scored on validation
        metrics = run_trial(
            cfg, files.workdir, on_epoch=on_epoch, evaluate_test=test, verbose=False
        )
        metrics |= labels
        files.finish(metrics)
        summary = summary_metrics(metrics)
        if run is not None:
            run.summary.update(summary)
            params = {k: metrics[k] for k in ("trainable_params", "total_params")}
            run.config.update(params, allow_val_change=True)
        tune.report({**summary, FINISHED: True})
    finally:
        if run is not None:
            run.finish()
        files.cleanup()
