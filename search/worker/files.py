"""A trial's I/O on its worker node: inputs fetched and checked, checkpoints mirrored, results
stored.

The trial keeps its own checkpoints in the experiment folder and resumes from them after a
retry (lost node, error) or a resumed search. Tune's checkpoints are not used: Tune deletes the
previous one before it saves its experiment state, so a driver killed in between would leave a
state pointing at a deleted checkpoint.

Node-local files live in one private folder per user (`scratch_dir()`, mode 0700): each trial's
work folder (named with its process id, so a later trial removes the folders of killed ones)
and the pretrain checkpoint's local copy.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path

import pandas as pd
import ray

from search.experiment.folder import Experiment, drop_checkpoints
from search.experiment.storage import folder_digest
from search.shared.spec import PRETRAINED, TrialSpec
from search.shared.versions import check_versions
from trainables.core.atomic import pid_of
from trainables.core.config import TrialConfig
from trainables.core.errors import ConfigError, DataError, DeviceError
from trainables.core.files import BEST, CHECKPOINT_FILES, TEST_PER_IMAGE
from trainables.data.arrays import default_cache_dir, fingerprint_problems
from trainables.data.hc18_files import SUBSET_CSV
from trainables.data.synthetic import generate_dataset
from trainables.data.trial_data import TrialData, load_trial_data
from trainables.data.unlabelled import load_unlabelled
from trainables.nets.strategies import get_strategy


def scratch_dir() -> Path:
    """This user's private folder for FreezeFrame's node-local files."""
    folder = Path(tempfile.gettempdir()) / f"freezeframe-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    info = folder.lstat()  # not followed: a link planted by another user is refused too
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise PermissionError(f"{folder} is not a folder private to this user; remove it")
    return folder


def sweep_dead_work_folders(root: Path) -> None:
    """Remove what trials killed without clean-up left: their work folders and half-written
    downloads (both carry the writer's process id)."""
    leftovers = [(folder, int(folder.name.split("-")[1])) for folder in root.glob("work-*")]
    leftovers += [(part, pid_of(part)) for part in root.glob("weights/.*.tmp")]
    for path, pid in leftovers:
        if pid is not None and not _alive(pid):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        pass
    return True


class TrialFiles:
    """The files of one trial: its work folder here, its checkpoints and result there.

    Args:
        spec: the trial's spec.
    """

    def __init__(self, spec: TrialSpec):
        self.spec, self.name, self.stage = spec, spec.name, spec.stage
        self.experiment = Experiment(spec.experiment.storage, spec.experiment.name)
        self.store = self.experiment.store
        self.scratch = scratch_dir()
        sweep_dead_work_folders(self.scratch)
        work = tempfile.mkdtemp(prefix=f"work-{os.getpid()}-{spec.name}-", dir=self.scratch)
        self.workdir = Path(work) / "trial"

    def finished_result(self) -> dict | None:
        """The stored metrics when this very trial finished before, else None. A stored result
        of another config under this name (a changed study) is dropped, not reused."""
        return stored_result(self.experiment, self.spec)

    def prepare(self) -> tuple[TrialConfig, TrialData]:
        """The trial config with node-local inputs, its data (checked against the experiment's
        fingerprint), and the stored checkpoints in `workdir`. A node whose installed packages
        differ from the driver's fails first, naming them."""
        check_versions(self.spec.versions)
        updates = {}
        if self.spec.synthetic is not None:
            updates["data_dir"] = synthetic_source(self.spec, self.spec.trial.cache_dir)
        if self.spec.trial.encoder_weights == PRETRAINED:
            updates["encoder_weights"] = self._local_encoder()
        if granted_gpus() and self.spec.trial.device == "auto":
            updates["device"] = "cuda"  # never the CPU of a GPU that Ray reserved for us
        cfg = self.spec.trial.model_copy(update=updates)
        source = self.spec.unlabelled_dir or cfg.data_dir
        if self.spec.source_digest and folder_digest(source) != self.spec.source_digest:
            raise DataError(
                [
                    f"node {os.uname().nodename}: the pretraining folder differs from the "
                    "driver's copy (another file set or content); sync it to every node"
                ],
                source,
            )
        import torch  # in the trial's process only: the driver imports this module too

        from trainables.core.device import cuda_missing_reason

        if cfg.device == "cuda" and not torch.cuda.is_available():
            raise DeviceError(
                f"this trial was granted GPU(s) {granted_gpus()} by Ray, but "
                f"{cuda_missing_reason()}; refusing to train on the CPU instead (set "
                "trial.device=cpu to do that on purpose)"
            )
        data = load_trial_data(cfg)
        if self.spec.data_digest is not None and data.digest() != self.spec.data_digest:
            raise DataError(self._data_problems(data), cfg.data_dir)
        for file in CHECKPOINT_FILES:
            rel = self.experiment.checkpoint(self.stage, self.name, file)
            if self.store.exists(rel):
                self.store.download(rel, self.workdir / file)
        return cfg, data

    def pretext_images(self, cfg: TrialConfig, data: TrialData) -> tuple:
        """The images a self-supervised pretrain trial restores, and their names: a folder's,
        or the target data's training split only (validation and test images never)."""
        if self.spec.unlabelled_dir:
            return load_unlabelled(self.spec.unlabelled_dir, cfg.image_size)
        return data.train.images, list(data.train.filenames)

    def _data_problems(self, data: TrialData) -> list[str]:
        expected = self.experiment.read_data_fingerprint() or {"samples": {}, "split": {}}
        problems = fingerprint_problems(expected["samples"], data.fingerprint()["samples"])
        for side, files in expected["split"].items():
            if sorted(files) != sorted(data.split.get(side, [])):
                problems.append(f"the {side} split differs from the experiment's")
        node = os.uname().nodename
        return [f"node {node} does not hold the experiment's data:"] + problems

    def _local_encoder(self) -> str:
        """A node-local copy of the pretrain checkpoint of this trial's network, named after
        its version (the path is part of the trial's config, which a retry checks)."""
        rel = self.experiment.pretrain_encoder(get_strategy(self.spec.trial.strategy).network)
        if not self.store.exists(rel):
            raise FileNotFoundError(f"no pretrain checkpoint {rel} in {self.experiment.uri}")
        version = f"{self.experiment.name}|{rel}|{self.store.version(rel)}"
        digest = hashlib.sha1(version.encode()).hexdigest()[:16]
        target = self.scratch / "weights" / f"{digest}.pt"
        if not target.exists():
            self.store.download(rel, target)
        return str(target)

    def mirror(self, written: list[str]) -> None:
        """Upload what an epoch wrote (best.pt first: a stored last.pt has its best.pt)."""
        for file in written:
            rel = self.experiment.checkpoint(self.stage, self.name, file)
            self.store.upload(self.workdir / file, rel)

    def per_image_rows(self) -> pd.DataFrame | None:
        """A tested trial's per-image test results (its `test_per_image.csv`), else None."""
        per_image = self.workdir / TEST_PER_IMAGE
        return pd.read_csv(per_image) if per_image.is_file() else None

    def finish(self, metrics: dict) -> None:
        """Store the result (and the pretrain stage's model, a tested trial's per-image table);
        drop what only served resuming."""
        if self.stage == "pretrain":
            network = get_strategy(self.spec.trial.strategy).network
            self.store.upload(self.workdir / BEST, self.experiment.pretrain_encoder(network))
        rows = self.per_image_rows()
        if rows is not None:  # before the result: a stored result means a complete trial
            self.experiment.write_per_image(self.stage, self.name, rows)
        metrics["spec_trial"] = self.spec.trial.model_dump(mode="json")
        self.experiment.write_result(self.stage, self.name, metrics)
        # last.pt (optimizer state) only served resuming; best.pt is the trial's model.
        keep = (BEST,) if self.spec.keep_best_checkpoint else ()
        drop_checkpoints(self.experiment, self.stage, self.name, keep)

    def cleanup(self) -> None:
        shutil.rmtree(self.workdir.parent, ignore_errors=True)


def granted_gpus() -> list:
    """The GPUs Ray reserved for this trial ([] outside Ray or without GPUs)."""
    return list(ray.get_gpu_ids()) if ray.is_initialized() else []


def stored_result(experiment: Experiment, spec: TrialSpec, refuse: bool = False) -> dict | None:
    """The stored result of `spec`'s trial if it was trained with the same settings. One of
    other settings under the same name is refused (`refuse`, the driver: ConfigError naming
    the settings) or removed with its checkpoints (a trial, which then trains)."""
    if not experiment.has_result(spec.stage, spec.name):
        return None
    result = experiment.read_result(spec.stage, spec.name)
    stored, now = result.get("spec_trial") or {}, spec.trial.model_dump(mode="json")
    if stored == now:
        return result
    if refuse:
        changed = sorted(k for k in set(stored) | set(now) if stored.get(k) != now.get(k))
        raise ConfigError(
            f"{experiment.uri}: {spec.stage}/{spec.name} was trained with other settings "
            f"({', '.join(changed)}); use another --name for a study with these settings"
        )
    print(
        f"warning: {spec.stage}/{spec.name}: the stored result was trained with other settings; "
        "training it again",
        file=sys.stderr,
    )
    experiment.delete_result(spec.stage, spec.name)
    drop_checkpoints(experiment, spec.stage, spec.name)
    return None


def synthetic_source(spec: TrialSpec, cache_dir: str | None) -> str:
    """Generate (once per node) the synthetic source domain the pretrain stage trains on."""
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
