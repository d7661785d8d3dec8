"""One trial: a pure function turns a resolved config into model, optimizer and data; a loop
trains it epoch by epoch, evaluates on validation, checkpoints, and tests the best epoch once.

The loop stays on the device: the training set is uploaded once as uint8, batches are indexed
there, the loss is accumulated as a tensor and read once per epoch (no host sync per step).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
import segmentation_models_pytorch as smp
import torch
from torch import nn

from trainables.atomic import atomic_output
from trainables.augment import (
    albumentations_transform,
    augment_albumentations,
    augment_torch,
    to_network_input,
)
from trainables.config import TrialConfig
from trainables.data import ArrayDataset, default_data_dir, digest_of, load_arrays
from trainables.device import AUTOCAST_DTYPES, make_scaler, resolve_device, resolve_precision
from trainables.evaluate import evaluate_dataset
from trainables.models import build_model
from trainables.splits import make_split, train_subset
from trainables.strategies import AppliedStrategy, apply_strategy, get_strategy


@dataclass
class TrialData:
    train: ArrayDataset
    val: ArrayDataset
    test: ArrayDataset
    split: dict[str, list[str]]
    # The whole training side's digests when `train` holds only part of it (a train_fraction
    # below 1): the fingerprint stays the experiment's, whatever share a trial trains on.
    train_pool: dict[str, str] | None = None

    def fingerprint(self) -> dict:
        """What the trial may train and tests on: every image's content digest and its side."""
        train = self.train.digests if self.train_pool is None else self.train_pool
        samples = {**train, **self.val.digests, **self.test.digests}
        return {"split": self.split, "samples": dict(sorted(samples.items()))}

    def digest(self) -> str:
        return digest_of(self.fingerprint())


def load_trial_data(cfg: TrialConfig) -> TrialData:
    """Read (and validate, and cache) the data set, then split it. Raises before any training."""
    data_dir = Path(cfg.data_dir) if cfg.data_dir else default_data_dir()
    full = load_arrays(data_dir, cfg.image_size, cache_dir=cfg.cache_dir)
    filenames = sorted(full.filenames)
    if cfg.max_images is not None:
        filenames = filenames[: cfg.max_images]
    split = make_split(
        filenames,
        cfg.split,
        split_file=cfg.split_file,
        val_fraction=cfg.val_fraction,
        test_fraction=cfg.test_fraction,
        seed=cfg.split_seed,
    )
    return TrialData(*(full.subset(split[side]) for side in ("train", "val", "test")), split)


def steps_per_epoch(images: int, batch_size: int) -> int:
    """Optimizer steps in one epoch of `train_one_epoch` (a lone last image is left out)."""
    steps = math.ceil(images / batch_size)
    return steps - 1 if steps > 1 and images % batch_size == 1 else steps


def fraction_of_training(cfg: TrialConfig, data: TrialData) -> tuple[TrialConfig, TrialData]:
    """The trial's share of the training images (`cfg.train_fraction`, `splits.train_subset`)
    and the settings that give it its budget (`cfg.fraction_budget`).

    'steps': as many optimizer steps as the whole training side would take: the epochs grow
    (rounded up) and a per-epoch learning-rate decay is stretched over them, so the rate falls
    as far over the same steps (exponential: gamma ** (1 / stretch); step: its step size times
    the stretch; cosine follows the epochs). 'epochs': the config's epochs, fewer steps.
    Returns (cfg, data) unchanged for a fraction of 1.
    """
    if cfg.train_fraction == 1 or data.train_pool is not None:
        return cfg, data
    names = train_subset(data.split["train"], cfg.train_fraction, cfg.seed)
    part = replace(data, train=data.train.subset(names), train_pool=data.train.digests)
    if cfg.fraction_budget == "epochs":
        return cfg, part
    full_steps = cfg.epochs * steps_per_epoch(len(data.train), cfg.batch_size)
    epochs = max(cfg.epochs, math.ceil(full_steps / steps_per_epoch(len(names), cfg.batch_size)))
    stretch = epochs / cfg.epochs
    updates: dict = {"epochs": epochs}
    if cfg.lr_schedule == "exponential":
        updates["lr_gamma"] = cfg.lr_gamma ** (1 / stretch)
    elif cfg.lr_schedule == "step":
        updates["lr_step_size"] = max(1, round(cfg.lr_step_size * stretch))
    return cfg.model_copy(update=updates), part


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - libraries that draw from the global RNG
    torch.manual_seed(seed)


def build_scheduler(cfg: TrialConfig, optimizer: torch.optim.Optimizer):
    """Per-epoch learning-rate decay; None for a constant rate."""
    sched = torch.optim.lr_scheduler
    if cfg.lr_schedule == "exponential":
        return sched.ExponentialLR(optimizer, gamma=cfg.lr_gamma)
    if cfg.lr_schedule == "step":
        return sched.StepLR(optimizer, step_size=cfg.lr_step_size, gamma=cfg.lr_gamma)
    if cfg.lr_schedule == "cosine":
        return sched.CosineAnnealingLR(optimizer, T_max=cfg.epochs, eta_min=cfg.lr_min)
    return None


class DiceBCELoss(nn.Module):
    def __init__(self):
        super().__init__()
        self.bce = nn.BCEWithLogitsLoss()
        self.dice = smp.losses.DiceLoss(mode="binary", from_logits=True)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.bce(logits, target) + self.dice(logits, target)


LOSSES = {"bce": nn.BCEWithLogitsLoss, "dice_bce": DiceBCELoss}


@dataclass
class Training:
    """What the training loop works on: one trial's network, optimizer, data and device."""

    cfg: TrialConfig
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    loss_fn: nn.Module
    applied: AppliedStrategy
    device: torch.device
    data: TrialData
    train_images: torch.Tensor = field(repr=False)  # uint8 [N,H,W] on device
    train_masks: torch.Tensor = field(repr=False)
    # What runs the batches: `model` itself, or its torch.compile wrapper (cfg.compile). The
    # wrapper shares the parameters; state dicts are always read from and loaded into `model`.
    net: nn.Module = field(repr=False)
    precision: str = "fp32"  # bf16, fp16 (with `scaler`) or fp32: trainables.device
    scaler: torch.amp.GradScaler | None = field(default=None, repr=False)

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return AUTOCAST_DTYPES[self.precision]


def build_network(cfg: TrialConfig, verbose: bool = True) -> tuple[nn.Module, AppliedStrategy]:
    """The strategy's network with its parameters frozen or trainable and its BatchNorm momentum
    set, on the CPU. Both training loops call it right after `seed_everything(cfg.seed)`, so they
    start from the same weights."""
    strategy = get_strategy(cfg.strategy)
    weights = cfg.encoder_weights if strategy.pretrained else "none"
    model = build_model(strategy.model, encoder_weights=weights)
    applied = apply_strategy(
        model,
        strategy,
        train_head=cfg.train_head,
        bn_update_frozen=cfg.bn_update_frozen,
        verbose=verbose,
    )
    if cfg.bn_momentum != 0.1:
        # With momentum 0.1 a randomly initialised network's running variance (1.0) needs
        # ~60 steps to forget its start when the true variance is ~0.004 (0.9**60 < 0.004);
        # a smoke run has fewer, and evaluates garbage. None = cumulative average.
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.momentum = cfg.bn_momentum
    return model, applied


def build_training(
    cfg: TrialConfig, data: TrialData | None = None, verbose: bool = True
) -> Training:
    """Resolved config -> model, optimizer, scheduler, loss and device-resident training data.

    Args:
        cfg: the trial config; its seed is applied here, once.
        data: already loaded data (tests and benchmarks share one copy); loaded if None.
    """
    if cfg.num_threads:
        # The trial's share of the cores, for OpenCV (augmentation, metrics) as for torch: two
        # trials on one node must not each start a thread per core.
        torch.set_num_threads(cfg.num_threads)
        cv2.setNumThreads(cfg.num_threads)
    data = data or load_trial_data(cfg)
    device = resolve_device(cfg)
    if device.type == "cuda":
        # Input shapes are fixed: cuDNN times its algorithms once per shape, keeps the fastest.
        torch.backends.cudnn.benchmark = True
    seed_everything(cfg.seed)
    model, applied = build_network(cfg, verbose)
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    net = model
    if cfg.compile != "off":
        net = torch.compile(model, mode=None if cfg.compile == "default" else cfg.compile)
    fused = device.type == "cuda"
    optimizer = torch.optim.Adam(
        applied.param_groups, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused
    )
    precision = resolve_precision(cfg.amp, device)
    return Training(
        cfg=cfg,
        model=model,
        optimizer=optimizer,
        scheduler=build_scheduler(cfg, optimizer),
        loss_fn=LOSSES[cfg.loss](),
        applied=applied,
        device=device,
        data=data,
        train_images=torch.from_numpy(data.train.images).to(device),
        train_masks=torch.from_numpy(data.train.masks).to(device),
        net=net,
        precision=precision,
        scaler=make_scaler(precision, device),
    )


def _augmented_batch(trial: Training, index: torch.Tensor, rng: torch.Generator, albu):
    cfg = trial.cfg
    if albu is not None:  # the CPU reference path: albumentations image by image
        idx = index.cpu().numpy()
        images, masks = augment_albumentations(
            albu, trial.data.train.images[idx], trial.data.train.masks[idx]
        )
        images = to_network_input(torch.from_numpy(images).to(trial.device))
        masks = torch.from_numpy(masks).to(trial.device).unsqueeze(1).float()
        return images, masks
    images = trial.train_images[index].unsqueeze(1).float().div_(255.0)
    masks = trial.train_masks[index].unsqueeze(1).float()
    images, masks = augment_torch(
        images, masks, cfg.rotate_deg, cfg.hflip_p, cfg.vflip_p, generator=rng
    )
    return to_network_input(images), masks


def forward(trial: Training, model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The network on a batch, in the trial's memory format and autocast precision."""
    if trial.cfg.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    dtype = trial.autocast_dtype
    with torch.autocast(trial.device.type, dtype=dtype or torch.float32, enabled=bool(dtype)):
        return model(images)


def _net_for(trial: Training, batch: int, full_batch: int) -> nn.Module:
    """The compiled network serves full batches; a short last batch runs eagerly on the same
    weights rather than compiling (and, with CUDA graphs, capturing) a second graph."""
    return trial.net if batch == full_batch else trial.model


def use_albumentations(cfg: TrialConfig, device: torch.device) -> bool:
    if cfg.augment_backend == "auto":
        return device.type == "cpu"
    return cfg.augment_backend == "albumentations"


def train_one_epoch(trial: Training, epoch: int, max_steps: int | None = None) -> dict:
    """One pass over the training set in a seeded order; returns loss, images and seconds."""
    cfg, device = trial.cfg, trial.device
    trial.model.train()
    # Each epoch draws from its own seed, so a resumed trial repeats the same batches.
    epoch_seed = cfg.seed * 100_003 + epoch
    rng = torch.Generator(device=device).manual_seed(epoch_seed)
    order = torch.randperm(len(trial.train_images), device=device, generator=rng)
    albu = None
    if use_albumentations(cfg, device):
        albu = albumentations_transform(cfg.rotate_deg, cfg.hflip_p, cfg.vflip_p, seed=epoch_seed)
    loss_sum = torch.zeros((), device=device)
    steps, images_seen, start = 0, 0, time.perf_counter()
    batches = order.split(cfg.batch_size)
    if len(batches) > 1 and len(batches[-1]) == 1:
        # BatchNorm cannot train on one image (MobileNetV2's last stage is 1x1 at small sizes);
        # the left-over image is drawn into a full batch in other epochs.
        batches = batches[:-1]
    for index in batches:
        if max_steps is not None and steps >= max_steps:
            break
        images, masks = _augmented_batch(trial, index, rng, albu)
        logits = forward(trial, _net_for(trial, len(index), cfg.batch_size), images)
        loss = trial.loss_fn(logits.float(), masks)
        trial.optimizer.zero_grad(set_to_none=True)
        if trial.scaler is None:
            loss.backward()
            trial.optimizer.step()
        else:  # fp16: scale the loss so small gradients do not underflow, unscale to step
            trial.scaler.scale(loss).backward()
            trial.scaler.step(trial.optimizer)
            trial.scaler.update()
        loss_sum += loss.detach() * len(index)
        steps, images_seen = steps + 1, images_seen + len(index)
    train_loss = (loss_sum / max(images_seen, 1)).item()  # the one host sync of the epoch
    if not np.isfinite(train_loss):
        raise FloatingPointError(f"training loss became {train_loss} in epoch {epoch}")
    return {
        "train_loss": train_loss,
        "images": images_seen,
        "train_s": time.perf_counter() - start,
    }


def evaluate(
    trial: Training, data: ArrayDataset, model: nn.Module | None = None, shape_metrics: bool = True
) -> dict:
    """Batched evaluation of the trial's network (or `model`) with the trial's TTA and
    post-processing: `trainables.evaluate.evaluate_dataset` (per-image metrics averaged over
    images, raw and post-processed, plus the paper's variants).

    Args:
        shape_metrics: also distances and HC (CPU work per image); the per-epoch
            validation that only chooses the epoch skips them.
    """
    own = model is None
    network = trial.model if own else model
    network.eval()

    def run(images: torch.Tensor) -> torch.Tensor:
        net = _net_for(trial, len(images), trial.cfg.eval_batch_size) if own else network
        return forward(trial, net, images)

    return evaluate_dataset(run, data, trial.cfg, trial.device, shape_metrics)


def save_atomic(obj, path: Path) -> None:
    with atomic_output(path) as f:
        torch.save(obj, f)


EpochCallback = Callable[[dict, Path, list[str]], None]
"""(epoch record, out_dir, the checkpoint files written this epoch: best.pt before last.pt)"""
