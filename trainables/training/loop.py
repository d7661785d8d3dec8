"""One epoch of a trial's training, and the evaluation of its network.

The loop stays on the device: the training set is uploaded once as uint8, batches are indexed
there, the loss is accumulated as a tensor and read once per epoch (no host sync per step).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from trainables.core.config import TrialConfig
from trainables.data.arrays import ArrayDataset
from trainables.data.augment import (
    albumentations_transform,
    augment_albumentations,
    augment_torch,
    to_network_input,
)
from trainables.evaluation.evaluate import evaluate_dataset
from trainables.training.setup import Training


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
    post-processing: `trainables.evaluation.evaluate.evaluate_dataset` (per-image metrics
    averaged over images, raw and post-processed, plus the paper's variants).

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


EpochCallback = Callable[[dict, Path, list[str]], None]
"""(epoch record, out_dir, the checkpoint files written this epoch: best.pt before last.pt)"""
