"""Self-supervised pretraining: the U-Net learns to restore corrupted images; labels are never read.

Where ImageNet weights cannot be downloaded, the encoder can still start from features of the
target domain: the whole U-Net (encoder, decoder, head) is trained to restore images from a
corrupted copy, then only its encoder is kept (`trainables.nets.models.load_encoder_checkpoint`
reads the `encoder.*` weights of the checkpoint this writes).

Two well-known objectives (`method`):
- `masked`: masked-image modelling as inpainting (Pathak et al. 2016, "Context Encoders"; He
  et al. 2022, MAE): square patches are replaced by grey and the loss is the squared error on
  them (plus a tenth of it on the visible pixels);
- `denoise`: a denoising autoencoder (Vincent et al. 2008): Gaussian noise is added and the
  loss is the squared error on every pixel.
Images get the paper's augmentation first (rotation, flips), so the encoder sees the poses it
will see in fine-tuning. The run writes `last.pt` (resumable) and `best.pt` (the latest model:
there is no validation label to choose an epoch by) every epoch, like `run.run_trial` (the loop is `epochs.EpochLoop`); its unlabelled images come
from `trainables.data.unlabelled`.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from trainables.core.config import TrialConfig, dump_config
from trainables.core.device import resolve_device
from trainables.data.augment import augment_torch, to_network_input
from trainables.nets.models import build_model
from trainables.nets.strategies import apply_strategy, get_strategy
from trainables.training.epochs import EpochLoop
from trainables.training.loop import EpochCallback
from trainables.training.setup import seed_everything

METHODS = ("masked", "denoise")


MASK_RATIO = 0.6  # share of patches hidden (MAE hides 75% of 16 px patches at 224 px)


PATCHES_PER_SIDE = 8  # 8 x 8 patches: 8 px at 64 px, 64 px at 512 px


NOISE_STD = 0.25  # of the [0, 1] intensity range


VISIBLE_WEIGHT = 0.1


def corrupt(
    images: torch.Tensor, method: str, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """The network's input and the per-pixel loss weight for a batch of [B,1,S,S] images."""
    if method == "denoise":
        noise = torch.randn(images.shape, device=images.device, generator=generator)
        return (images + NOISE_STD * noise).clamp_(0, 1), torch.ones_like(images)
    if method != "masked":
        raise ValueError(f"unknown pretext method {method!r}; valid: {list(METHODS)}")
    batch, side = images.shape[0], images.shape[-1]
    hidden = torch.rand(
        batch, 1, PATCHES_PER_SIDE, PATCHES_PER_SIDE, device=images.device, generator=generator
    )
    hidden = F.interpolate((hidden < MASK_RATIO).float(), size=(side, side), mode="nearest")
    inputs = images * (1 - hidden) + 0.5 * hidden
    return inputs, hidden + VISIBLE_WEIGHT * (1 - hidden)


def run_pretext(
    cfg: TrialConfig,
    out_dir: str | Path,
    images: np.ndarray,
    method: str,
    on_epoch: EpochCallback | None = None,
    verbose: bool = True,
) -> dict:
    """Train the strategy's whole network to restore `images`; return (and write) metrics.

    Args:
        cfg: the trial config (strategy, epochs, lr, batch size, augmentation, device, seed).
        out_dir: results folder; a `last.pt` there is resumed from.
        images: uint8 [N,S,S] unlabelled images (the target's training split, or a folder).
        method: 'masked' or 'denoise'.
        on_epoch: called after each epoch's checkpoint (as `trainables.train.run_trial`).
    """
    if method not in METHODS:
        raise ValueError(f"unknown pretext method {method!r}; valid: {list(METHODS)}")
    if len(images) < 2 or cfg.batch_size < 2:
        raise ValueError(
            "self-supervised pretraining needs 2+ images and batches of 2+ (BatchNorm), got "
            f"{len(images)} images, batch_size {cfg.batch_size}"
        )
    log = print if verbose else (lambda *a, **k: None)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, out_dir / "config.yaml")
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    device = resolve_device(cfg)
    seed_everything(cfg.seed)
    strategy = get_strategy(cfg.strategy)
    model = build_model(strategy.model, encoder_weights="none")
    applied = apply_strategy(model, strategy, train_head=True, verbose=False)
    model.to(device)
    optimizer = torch.optim.Adam(applied.param_groups, lr=cfg.lr)
    pool = torch.from_numpy(images).to(device)

    def step(epoch: int) -> tuple[dict, None]:
        model.train()
        rng = torch.Generator(device=device).manual_seed(cfg.seed * 100_003 + epoch)
        order = torch.randperm(len(pool), device=device, generator=rng)
        batches = [b for b in order.split(cfg.batch_size) if len(b) > 1]  # BatchNorm needs 2
        loss_sum, epoch_start = torch.zeros((), device=device), time.perf_counter()
        for index in batches:
            target = pool[index].unsqueeze(1).float().div_(255.0)
            target, _ = augment_torch(
                target, torch.zeros_like(target), cfg.rotate_deg, cfg.hflip_p, cfg.vflip_p, rng
            )
            inputs, weight = corrupt(target, method, rng)
            restored = torch.sigmoid(model(to_network_input(inputs)))
            loss = (weight * (restored - target) ** 2).sum() / weight.sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach() * len(index)
        seen = sum(len(b) for b in batches)
        record = {
            "epoch": epoch,
            "train_loss": (loss_sum / max(seen, 1)).item(),
            "images": seen,
            "epoch_s": time.perf_counter() - epoch_start,
        }
        if not np.isfinite(record["train_loss"]):
            raise FloatingPointError(f"pretext loss became {record['train_loss']} in epoch {epoch}")
        return record, None

    done = EpochLoop(
        cfg,
        out_dir,
        model,
        optimizer,
        device,
        step=step,
        describe=lambda r: (
            f"[pretext {method}] epoch {r['epoch']}/{cfg.epochs} loss {r['train_loss']:.5f}"
        ),
        name="pretext pretraining",
        more_state=lambda: {"strategy": cfg.strategy},  # as best.pt; no schedule to keep
        on_epoch=on_epoch,
        log=log,
    ).run()
    history = done.history

    return {
        "strategy": cfg.strategy,
        "seed": cfg.seed,
        "run_name": cfg.run_name,
        "trainable_params": applied.trainable_params,
        "total_params": applied.total_params,
        "epochs": len(history),
        "resumed_after_epoch": done.resumed_after_epoch,
        "pretext": method,
        "pretext_images": len(images),
        "wall_s": time.perf_counter() - done.started,
        "history": history,
        "val": {"reconstruction_loss": history[-1]["train_loss"]} if history else {},
        "test": {},
        "config": cfg.model_dump(mode="json"),
    }
