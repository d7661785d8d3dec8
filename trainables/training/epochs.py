"""The epoch loop that fine-tuning (`run.run_trial`) and pretext pretraining
(`pretext.run_pretext`) share.

The caller's step trains and evaluates one epoch; the loop resumes from `last.pt`, keeps the
history, writes `best.pt` and `last.pt` (atomically) and reports each epoch. A crash loses at
most the epoch in progress: a rerun continues after the last epoch `last.pt` holds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from trainables.core.config import TrialConfig
from trainables.core.files import BEST, LAST
from trainables.training.checkpoints import check_same_settings, load_checkpoint, save_atomic
from trainables.training.loop import EpochCallback

Step = Callable[[int], tuple[dict, dict | None]]
"""epoch -> (its history record, what `best` becomes if the epoch is the best so far)"""


@dataclass
class Finished:
    """What the loop leaves for the caller's results."""

    history: list[dict]  # every epoch's record, resumed ones included
    best: dict | None  # the best epoch's summary (the latest without a `better` rule)
    resumed_after_epoch: int  # 0, or the epoch of the last.pt this run continued from
    started: float  # time.perf_counter() when this run's first epoch began


@dataclass
class EpochLoop:
    """One training's epochs: the network and optimizer its checkpoints keep, and the hooks
    where the trainings differ.

    `last.pt` holds {epoch, model, optimizer, **more_state(), history, best, config} (`best` only
    with a `better` rule); `best.pt` holds {model, epoch, strategy, config}.
    """

    cfg: TrialConfig
    out_dir: Path
    model: nn.Module
    optimizer: torch.optim.Optimizer
    device: torch.device
    step: Step
    describe: Callable[[dict], str]  # an epoch's log line, from its record
    name: str  # the training, in the line that announces a resume
    more_state: Callable[[], dict] = dict  # what else last.pt keeps (scheduler, scaler, ...)
    restore_more: Callable[[dict], None] = lambda state: None  # puts that back on resume
    # Whether an epoch's summary beats the best so far (strictly: ties keep the earlier epoch).
    # None: nothing to choose by, every epoch is written as best.pt.
    better: Callable[[dict, dict], bool] | None = None
    best: dict | None = None  # the best before the first epoch
    checkpoint_every: int = 1  # last.pt after every this many epochs, and after the last
    on_epoch: EpochCallback | None = None
    log: Callable[..., None] = field(default=print, repr=False)

    def run(self) -> Finished:
        """Resume from `out_dir/last.pt` if there is one, then run the remaining epochs."""
        cfg, start, history, best = self.cfg, 0, [], self.best
        if (self.out_dir / LAST).exists():
            start, history, best = self._restore(self.out_dir / LAST)
            self.log(f"resuming {self.name} after epoch {start}/{cfg.epochs}")
        started = time.perf_counter()
        for epoch in range(start + 1, cfg.epochs + 1):
            record, summary = self.step(epoch)
            history.append(record)
            written = []
            if self.better is None or self.better(summary, best):
                best = summary
                weights = {"model": self.model.state_dict(), **self._meta(epoch)}
                save_atomic(weights, self.out_dir / BEST)
                written.append(BEST)
            if epoch % self.checkpoint_every == 0 or epoch == cfg.epochs:
                save_atomic(self._state(epoch, history, best), self.out_dir / LAST)
                written.append(LAST)
            self.log(self.describe(record))
            if self.on_epoch:
                self.on_epoch(record, self.out_dir, written)
        return Finished(history, best, start, started)

    def _meta(self, epoch: int) -> dict:
        config = self.cfg.model_dump(mode="json")
        return {"epoch": epoch, "strategy": self.cfg.strategy, "config": config}

    def _state(self, epoch: int, history: list, best: dict | None) -> dict:
        state = {
            "epoch": epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            **self.more_state(),
            "history": history,
        }
        if self.better is not None:
            state["best"] = best
        return state | {"config": self.cfg.model_dump(mode="json")}

    def _restore(self, path: Path) -> tuple[int, list, dict | None]:
        state = load_checkpoint(path, self.device)
        check_same_settings(state["config"], self.cfg, path)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.restore_more(state)
        best = state["best"] if self.better is not None else None
        return state["epoch"], state["history"], best
