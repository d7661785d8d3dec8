"""A trial's I/O on its worker node: inputs fetched, checkpoints mirrored, results stored.

The trial keeps its own checkpoints in the experiment folder and resumes from them after a
retry (lost node, error) or a resumed search. Tune's checkpoints are not used: Tune deletes the
previous one before it saves its experiment state, so a driver killed in between would leave a
state pointing at a deleted checkpoint.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from search.experiment import PRETRAIN_ENCODER, Experiment
from search.spec import TrialSpec
from trainables.config import TrialConfig
from trainables.data import default_cache_dir
from trainables.hc18_files import SUBSET_CSV
from trainables.train import BEST, CHECKPOINT_FILES


class TrialFiles:
    """The files of one trial: its working folder here, its checkpoints and result there.

    Args:
        spec: the trial's spec.
        name: the trial's name (`spec.name(trial_id)`).
    """

    def __init__(self, spec: TrialSpec, name: str):
        self.spec, self.name, self.stage = spec, name, spec.stage
        self.experiment = Experiment(spec.experiment.storage, spec.experiment.name)
        self.store = self.experiment.store
        self.workdir = Path(tempfile.mkdtemp(prefix=f"freezeframe_{name}_")) / "trial"

    def finished_result(self) -> dict | None:
        """The stored metrics when this trial finished before (a resumed search), else None."""
        if self.experiment.has_result(self.stage, self.name):
            return self.experiment.read_result(self.stage, self.name)
        return None

    def prepare(self) -> TrialConfig:
        """The trial config with node-local inputs, and the stored checkpoints in `workdir`."""
        updates = {}
        if self.spec.synthetic is not None:
            updates["data_dir"] = synthetic_source(self.spec, self.spec.trial.cache_dir)
        weights = self.spec.trial.encoder_weights
        if "://" in weights:
            updates["encoder_weights"] = self._local_weights(weights)
        for file in CHECKPOINT_FILES:
            rel = self.experiment.checkpoint(self.stage, self.name, file)
            if self.store.exists(rel):
                self.store.download(rel, self.workdir / file)
        return self.spec.trial.model_copy(update=updates)

    def _local_weights(self, uri: str) -> str:
        """Download the pretrain checkpoint to a path that is the same for every attempt: the
        path is part of the trial config, and a retry only resumes from a checkpoint of the
        same config."""
        if uri != self.store.uri_of(PRETRAIN_ENCODER):
            raise ValueError(f"encoder_weights {uri} is not this experiment's pretrain checkpoint")
        version = self.store.version(PRETRAIN_ENCODER)  # a rewritten checkpoint: a new name
        digest = hashlib.sha1(f"{uri}|{version}".encode()).hexdigest()[:16]
        target = Path(tempfile.gettempdir()) / "freezeframe_weights" / f"{digest}.pt"
        if not target.exists():
            self.store.download(PRETRAIN_ENCODER, target)
        return str(target)

    def mirror(self, written: list[str]) -> None:
        """Upload what an epoch wrote (best.pt first: a stored last.pt has its best.pt)."""
        for file in written:
            rel = self.experiment.checkpoint(self.stage, self.name, file)
            self.store.upload(self.workdir / file, rel)

    def finish(self, metrics: dict) -> None:
        """Store the result (and the pretrain stage's model); drop what only served resuming."""
        if self.stage == "pretrain":
            self.store.upload(self.workdir / BEST, PRETRAIN_ENCODER)
        self.experiment.write_result(self.stage, self.name, metrics)
        # last.pt (optimizer state) only served resuming; best.pt is the trial's model.
        keep = (BEST,) if self.spec.keep_best_checkpoint else ()
        drop_checkpoints(self.experiment, self.stage, self.name, keep)

    def cleanup(self) -> None:
        shutil.rmtree(self.workdir.parent, ignore_errors=True)


def drop_checkpoints(experiment: Experiment, stage: str, name: str, keep=()) -> None:
    for file in CHECKPOINT_FILES:
        if file not in keep:
            experiment.store.delete(experiment.checkpoint(stage, name, file))


def synthetic_source(spec: TrialSpec, cache_dir: str | None) -> str:
    """Generate (once per node) the synthetic source domain the pretrain stage trains on."""
    from trainables.synthetic import generate_dataset

    source = spec.synthetic
    root = Path(cache_dir or default_cache_dir())
    target = root / f"synthetic_n{source.images}_seed{source.seed}"
    if not (target / SUBSET_CSV["training_set"]).exists():
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=root))
        generate_dataset(tmp, source.images, seed=source.seed)
        try:
            os.replace(tmp, target)
        except OSError:  # another trial on this node won the race
            shutil.rmtree(tmp, ignore_errors=True)
    return str(target)
