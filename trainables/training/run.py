"""`run_trial`: one trial end to end - train, validate every epoch, test the best epoch once.

Writes to its folder: `config.yaml` (resolved), `split.csv`, `last.pt` (every
`checkpoint_every` epochs, for resuming), `best.pt` (the epoch with the best validation Dice),
`test_per_image.csv` and `metrics.json`. A folder that holds a `last.pt` but no `metrics.json`
resumes after the last finished epoch (`epochs.EpochLoop`). The CLI is `python -m
trainables.train`.
"""

from __future__ import annotations

import json
import time
from functools import partial
from pathlib import Path

from trainables.core.config import TrialConfig, dump_config
from trainables.core.device import describe_device
from trainables.core.files import BEST, TEST_PER_IMAGE
from trainables.data.splits import write_split
from trainables.data.trial_data import TrialData, load_trial_data
from trainables.training.checkpoints import load_checkpoint
from trainables.training.epochs import EpochLoop
from trainables.training.loop import EpochCallback, evaluate, train_one_epoch
from trainables.training.setup import Training, build_training, fraction_of_training


def _schedule_state(trial: Training) -> dict:
    """What last.pt keeps besides the network and optimizer: the rate schedule, the fp16 scaler."""
    return {
        "scheduler": trial.scheduler.state_dict() if trial.scheduler else None,
        "scaler": trial.scaler.state_dict() if trial.scaler else None,
    }


def _restore_schedule(trial: Training, state: dict) -> None:
    if trial.scheduler and state["scheduler"]:
        trial.scheduler.load_state_dict(state["scheduler"])
    if trial.scaler and state.get("scaler"):
        trial.scaler.load_state_dict(state["scaler"])


def _step(trial: Training, epoch: int) -> tuple[dict, dict]:
    """One epoch: train, step the rate schedule, validate; -> (record, best-epoch summary)."""
    epoch_start = time.perf_counter()
    record = {"epoch": epoch, "epochs_total": trial.cfg.epochs}
    record["lr"] = trial.optimizer.param_groups[0]["lr"]
    record |= train_one_epoch(trial, epoch)
    if trial.scheduler:
        trial.scheduler.step()
    val = evaluate(trial, trial.data.val, shape_metrics=False)  # Dice picks the epoch
    record |= {f"val_{k}": v for k, v in val.items() if isinstance(v, (int, float))}
    record["epoch_s"] = time.perf_counter() - epoch_start
    record["images_per_s"] = record["images"] / record["train_s"]
    return record, {"val_dice": val["dice"], "epoch": epoch, "val": val}


def _describe(run_name: str, epochs: int, record: dict) -> str:
    return (
        f"[{run_name}] epoch {record['epoch']}/{epochs} loss {record['train_loss']:.4f} "
        f"val dice {record['val_dice']:.4f} iou {record['val_iou']:.4f} "
        f"({record['epoch_s']:.1f} s, {record['images_per_s']:.1f} img/s)"
    )


def run_trial(
    cfg: TrialConfig,
    out_dir: str | Path,
    *,
    data: TrialData | None = None,
    on_epoch: EpochCallback | None = None,
    evaluate_test: bool = True,
    verbose: bool = True,
) -> dict:
    """Train, validate every epoch, test the best epoch once; return (and write) metrics.json.

    Args:
        cfg: resolved trial config.
        out_dir: results folder; a `last.pt` there is resumed from.
        data: preloaded data (else loaded and validated from cfg, before anything is written).
        on_epoch: called after each epoch's checkpoint with (epoch record, out_dir, files
            written this epoch): the Ray trainable reports and uploads them there.
        evaluate_test: test the best epoch (the tune stage scores on validation only).
    """
    log = print if verbose else (lambda *a, **k: None)
    data = data or load_trial_data(cfg)
    cfg, data = fraction_of_training(cfg, data)  # all of the training side unless asked
    trial = build_training(cfg, data, verbose=verbose)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, out_dir / "config.yaml")
    write_split(data.split, out_dir / "split.csv")

    done = EpochLoop(
        cfg,
        out_dir,
        trial.model,
        trial.optimizer,
        trial.device,
        step=partial(_step, trial),
        describe=partial(_describe, cfg.run_name, cfg.epochs),
        name=cfg.run_name,
        more_state=partial(_schedule_state, trial),
        restore_more=partial(_restore_schedule, trial),
        better=lambda new, best: new["val_dice"] > best["val_dice"],
        best={"val_dice": -1.0, "epoch": None},
        checkpoint_every=cfg.checkpoint_every,
        on_epoch=on_epoch,
        log=log,
    ).run()

    best_state = load_checkpoint(out_dir / BEST, trial.device)
    trial.model.load_state_dict(best_state["model"])
    val = evaluate(trial, data.val)  # the chosen epoch, with Hausdorff distance and HC
    test = evaluate(trial, data.test) if evaluate_test and len(data.test) else {}
    metrics = {
        "strategy": cfg.strategy,
        "seed": cfg.seed,
        "run_name": cfg.run_name,
        "trainable_params": trial.applied.trainable_params,
        "total_params": trial.applied.total_params,
        "epochs": len(done.history),
        "best_epoch": done.best["epoch"],
        # 0 for an uninterrupted trial; k when it continued from the checkpoint of epoch k
        # (the history still lists every epoch, restored from last.pt).
        "resumed_after_epoch": done.resumed_after_epoch,
        "device": describe_device(trial.device),
        "precision": trial.precision,
        "split_sizes": {side: len(files) for side, files in data.split.items()},
        # What a learning curve needs: the share of the training side trained on, its images
        # and their names (the whole side when train_fraction is 1), and the budget rule.
        "train_fraction": cfg.train_fraction,
        "train_images": len(data.train),
        "fraction_budget": cfg.fraction_budget,
        "train_files": list(data.train.filenames),
        "wall_s": time.perf_counter() - done.started,
        "history": done.history,
        "val": _scalars(val),
        "test": _scalars(test),
        "config": cfg.model_dump(mode="json"),
    }
    if test:
        _write_rows(test.get("per_image", []), out_dir / TEST_PER_IMAGE)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    log(
        f"[{cfg.run_name}] test dice {test.get('dice', float('nan')):.4f} "
        f"hc_abs_diff {test.get('hc_abs_diff_mm', float('nan')):.2f} mm -> {out_dir}"
    )
    return metrics


def _scalars(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float))}


def _write_rows(rows: list[dict], path: Path) -> None:
    import pandas as pd

    if rows:
        pd.DataFrame(rows).to_csv(path, index=False)
