"""A trial's pieces from its config: network and strategy, optimizer and schedule, loss, device
data; the training share (`train_fraction`) and the seeding.

A pure function (`build_training`) turns a resolved config into model, optimizer and data; the
training set is uploaded once as uint8 and batches are indexed on the device (`loop`).
"""

from __future__ import annotations

import functools
import math
import random
from dataclasses import dataclass, field, replace

import cv2
import numpy as np
import torch
from torch import nn

from trainables.core.config import TrialConfig
from trainables.core.device import AUTOCAST_DTYPES, make_scaler, resolve_device, resolve_precision
from trainables.core.recipe import decay_keys
from trainables.data.splits import train_subset
from trainables.data.trial_data import TrialData, load_trial_data
from trainables.nets.models import build_model
from trainables.nets.strategies import AppliedStrategy, apply_strategy, get_strategy
from trainables.training.losses import LOSSES


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
    """Per-epoch learning-rate decay; None for a constant rate. The scheduler reads the keys
    that `trainables.core.recipe` lists for the schedule, each as its torch argument."""
    sched = torch.optim.lr_scheduler
    schedulers = {
        "exponential": sched.ExponentialLR,
        "step": sched.StepLR,
        "cosine": functools.partial(sched.CosineAnnealingLR, T_max=cfg.epochs),
    }
    if cfg.lr_schedule not in schedulers:  # "none"
        return None
    arguments = {"lr_gamma": "gamma", "lr_step_size": "step_size", "lr_min": "eta_min"}
    decay = {arguments[key]: getattr(cfg, key) for key in decay_keys(cfg.lr_schedule)}
    return schedulers[cfg.lr_schedule](optimizer, **decay)


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
