"""The Ray Tune trainable: a thin loop around `trainables.train.run_trial`.

It reports every epoch with a checkpoint (so a lost node or a killed driver costs at most the
epoch in progress), writes the trial's final metrics to `results/<stage>/<trial>.json` in the
experiment folder (so a resumed search never trains a finished trial again), and logs to W&B
from the trial's own process: nothing per trial runs on the head node for logging.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from ray import tune

from search.storage import ExperimentStore, is_uri
from search.wandb_link import start_run
from trainables.config import TrialConfig
from trainables.data import default_cache_dir
from trainables.train import run_trial
from trainables.trial import load_trial_data

RECIPE_KEYS = ("lr", "lr_schedule", "lr_gamma", "lr_step_size", "lr_min")
CHECKPOINT_FILES = ("last.pt", "best.pt")
# The key of the one report that follows the last epoch (Tune reserves "done" for itself).
FINISHED = "trial_finished"


def trial_name(stage: str, strategy: str, seed: int, trial_id: str | None = None) -> str:
    """`<strategy>__seed<k>`; tune proposals add their Ray trial id to stay unique."""
    base = f"{strategy}__seed{seed}"
    return f"{base}__{trial_id}" if stage == "tune" and trial_id else base


def resolve_trial_values(config: dict) -> dict:
    """Merge the stage's base trial settings, the grid cell (`spec`) and Optuna's proposal."""
    values = dict(config["trial"])
    values.update(config.get("spec", {}))
    values.update({k: config[k] for k in RECIPE_KEYS if k in config})
    return values


def summary_metrics(metrics: dict) -> dict:
    """Flat scalars for Tune, W&B's summary and trials.csv."""
    out = {k: metrics[k] for k in ("trainable_params", "total_params", "epochs", "wall_s")}
    out |= {f"val_{k}": v for k, v in metrics["val"].items()}
    out |= {f"test_{k}": v for k, v in metrics["test"].items()}
    return out


def _synthetic_source(spec: dict) -> str:
    """Generate (once per node) the synthetic source domain the pretrain stage trains on."""
    from trainables.synthetic import generate_dataset

    root = Path(spec.get("cache_dir") or default_cache_dir())
    target = root / f"synthetic_n{spec['n']}_seed{spec['seed']}"
    if not (target / "training_set_pixel_size_and_HC.csv").exists():
        tmp = Path(tempfile.mkdtemp(dir=root.mkdir(parents=True, exist_ok=True) or root))
        generate_dataset(tmp, spec["n"], seed=spec["seed"])
        try:
            os.replace(tmp, target)
        except OSError:  # another trial on this node won the race
            shutil.rmtree(tmp, ignore_errors=True)
    return str(target)


def _local_weights(store: ExperimentStore, uri: str) -> str:
    """Download the pretrain checkpoint to a path that is the same for every attempt: the path
    is part of the trial config, and a retry only resumes from a checkpoint of the same config.
    """
    rel = uri.removeprefix(store.uri + "/")
    info = store.fs.get_file_info(store.path(rel))  # a rewritten checkpoint gets a new name
    digest = hashlib.sha1(f"{uri}|{info.size}|{info.mtime_ns}".encode()).hexdigest()[:16]
    target = Path(tempfile.gettempdir()) / "freezeframe_weights" / f"{digest}.pt"
    if not target.exists():
        partial = target.with_suffix(f".{os.getpid()}.part")  # concurrent trials on one node
        store.download(rel, partial)
        os.replace(partial, target)
    return str(target)


def run_ray_trial(config: dict) -> None:
    """Ray Tune function trainable for every stage."""
    context = tune.get_context()
    values = resolve_trial_values(config)
    if config.get("synthetic"):
        values["data_dir"] = _synthetic_source(config["synthetic"])
    store = ExperimentStore(**config["experiment"])
    name = trial_name(config["stage"], values["strategy"], values["seed"], context.get_trial_id())
    result_rel = f"results/{config['stage']}/{name}.json"
    if store.exists(result_rel):  # finished before the driver died: report, don't retrain
        tune.report({**summary_metrics(json.loads(store.read_text(result_rel))), FINISHED: True})
        return

    workdir = Path(tempfile.mkdtemp(prefix=f"freezeframe_{name}_"))
    if is_uri(values.get("encoder_weights", "")):
        values["encoder_weights"] = _local_weights(store, values["encoder_weights"])
    cfg = TrialConfig(**values)
    # The trial keeps its own checkpoint in the experiment folder and resumes from it after a
    # retry (lost node, error) or a resumed search. Tune's checkpoints are not used: Tune
    # deletes the previous one before it saves its experiment state, so a driver killed in
    # between would leave a state pointing at a deleted checkpoint.
    checkpoint_rel = f"checkpoints/{config['stage']}/{name}"
    for file in CHECKPOINT_FILES:
        if store.exists(f"{checkpoint_rel}/{file}"):
            store.download(f"{checkpoint_rel}/{file}", workdir / "trial" / file)

    data = load_trial_data(cfg)
    run = None
    trained_epochs: list[int] = []

    def on_epoch(record: dict, out_dir: Path, written: list[str]) -> None:
        trained_epochs.append(record["epoch"])
        # Only what this epoch wrote (best.pt changes when validation improves), best.pt first:
        # a last.pt in the store always has its best.pt beside it.
        for file in written:
            store.upload(out_dir / file, f"{checkpoint_rel}/{file}")
        scalars = {k: v for k, v in record.items() if isinstance(v, (int, float))}
        tune.report(scalars)
        if run is not None:
            run.log(scalars, step=record["epoch"])

    try:
        run = start_run(
            config["wandb"],
            config["stage"],
            name,
            {**cfg.model_dump(mode="json"), "trial_name": name, "stage": config["stage"]},
        )
        metrics = run_trial(
            cfg,
            workdir / "trial",
            data=data,
            on_epoch=on_epoch,
            evaluate_test=config["stage"] == "final",
            verbose=False,
        )
        metrics["trial_name"] = name
        metrics["stage"] = config["stage"]
        # 0 for an uninterrupted trial; k when a retry or a resumed search continued from the
        # checkpoint of epoch k (the history still lists every epoch, restored from last.pt).
        metrics["resumed_after_epoch"] = metrics["epochs"] - len(trained_epochs)
        summary = summary_metrics(metrics)
        if run is not None:
            run.summary.update(summary)
            run.config.update(
                {k: metrics[k] for k in ("trainable_params", "total_params")},
                allow_val_change=True,
            )
        if config["stage"] == "pretrain":
            store.upload(workdir / "trial" / "best.pt", "pretrain/encoder.pt")
        store.write_text(result_rel, json.dumps(metrics, indent=2))
        # last.pt (optimizer state) only served resuming; best.pt stays as the trial's model
        # in the final stage when the config keeps it (tune proposals are not worth the disk).
        keep_best = config["stage"] == "final" and config.get("keep_best_checkpoints", True)
        for file in CHECKPOINT_FILES if not keep_best else ("last.pt",):
            store.delete(f"{checkpoint_rel}/{file}")
        tune.report({**summary, FINISHED: True})
    finally:
        if run is not None:
            run.finish()
        shutil.rmtree(workdir, ignore_errors=True)
