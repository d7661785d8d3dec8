"""Checkpoint I/O: write one atomically, read one refusing anything but tensors and plain data,
check that a checkpoint was written by the same settings before a trial resumes from it, and
rebuild a trained network (and its trial config) from one."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from trainables.core.atomic import atomic_output
from trainables.core.config import TrialConfig
from trainables.core.errors import CheckpointError, ConfigError
from trainables.nets.models import build_model
from trainables.nets.strategies import get_strategy


def save_atomic(obj, path: Path) -> None:
    with atomic_output(path) as f:
        torch.save(obj, f)


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> dict:
    """A checkpoint's tensors and plain data (dicts, lists, numbers, strings). Anything else - a
    pickled object, which could run code when loaded - is refused: checkpoints are read from
    shared storage that others may write."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as err:
        lines = str(err).splitlines()
        reason = next((line.strip() for line in lines if "GLOBAL" in line), lines[0])
        raise CheckpointError(
            f"{path}: refused to load - it holds more than tensors and plain data, and "
            f"unpickling it could run code ({reason})"
        ) from None


# Where a trial finds its inputs on the node it runs on: a retry on another node (another
# TMPDIR, HOME or cache) continues from the same checkpoint.
NODE_LOCAL_KEYS = ("data_dir", "cache_dir", "encoder_weights", "device", "num_threads")


def check_same_settings(saved: dict, cfg: TrialConfig, path: Path) -> None:
    """A checkpoint resumes only the training it was written by (node-local paths aside)."""
    now = cfg.model_dump(mode="json")
    changed = [k for k in now if k not in NODE_LOCAL_KEYS and saved.get(k) != now[k]]
    if changed:
        raise ConfigError(
            f"{path} was written with other settings ({', '.join(changed)}); use a new --out"
        )


def load_checkpoint_model(
    path: str | Path, device: torch.device
) -> tuple[torch.nn.Module, TrialConfig]:
    """A trial's best.pt/last.pt -> (network in eval mode, the trial's config)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--checkpoint: {path} is not a file")
    try:
        state = load_checkpoint(path)
    except CheckpointError as err:
        raise ConfigError(f"--checkpoint: {err}") from None
    if not isinstance(state, dict) or "config" not in state or "model" not in state:
        raise ConfigError(f"--checkpoint: {path} is not a FreezeFrame trial checkpoint")
    cfg = TrialConfig(**state["config"])
    model = build_model(get_strategy(cfg.strategy).model, encoder_weights="none")
    model.load_state_dict(state["model"])
    return model.to(device).eval(), cfg
