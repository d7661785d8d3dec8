"""The paper's training loop, re-implemented faithfully as the benchmark's reference.

FreezeFrame generalises the study of Wang, Silvestre & Curran (2023), which fine-tuned U-Nets on
HC18 with one hand-written loop; "the paper's loop" below is that loop. It follows the well-known
U-Net tutorial (aladdinpersson): a Dataset that reads the PNG image (as RGB) and mask from disk on
every `__getitem__`, an albumentations pipeline that resizes, rotates, flips, normalises and
converts to a tensor on CPU DataLoader workers, fp16 autocast with a GradScaler on CUDA, and a
`loss.item()` for the progress bar after every step. Same networks, strategies, initial weights
and loss as FreezeFrame's loop, so only the loop differs.

Not used for training results: `trainables.training.loop` is the loop of record; this one exists
so `python -m trainables.bench` can measure both side by side.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass

import albumentations as A
import cv2
import numpy as np
import torch
from albumentations.pytorch import ToTensorV2
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

from trainables.core.config import TrialConfig
from trainables.core.device import resolve_device
from trainables.data.arrays import default_data_dir
from trainables.data.hc18_files import Sample, scan_dataset
from trainables.data.trial_data import TrialData
from trainables.training.losses import LOSSES
from trainables.training.setup import build_network, seed_everything

# The tutorial's NUM_WORKERS, as the paper's loop used it; also what a 2-core laptop would use.
REFERENCE_NUM_WORKERS = 2


def reference_transform(cfg: TrialConfig) -> A.Compose:
    """The paper's train_transform: Resize, Rotate, flips, Normalize(0, 1), ToTensorV2."""
    return A.Compose(
        [
            A.Resize(height=cfg.image_size, width=cfg.image_size),
            A.Rotate(
                limit=cfg.rotate_deg,
                interpolation=cv2.INTER_LINEAR,
                mask_interpolation=cv2.INTER_NEAREST,
                border_mode=cv2.BORDER_CONSTANT,
                p=1.0,
            ),
            A.HorizontalFlip(p=cfg.hflip_p),
            A.VerticalFlip(p=cfg.vflip_p),
            A.Normalize(mean=[0.0, 0.0, 0.0], std=[1.0, 1.0, 1.0], max_pixel_value=255.0),
            ToTensorV2(),
        ]
    )


class ReferenceDataset(Dataset):
    """Decodes the PNGs on every access, as the paper's loop did (no cache)."""

    def __init__(self, samples: list[Sample], transform: A.Compose):
        self.samples, self.transform = samples, transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        sample = self.samples[index]
        image = np.array(Image.open(sample.image_path).convert("RGB"))
        mask = np.array(Image.open(sample.annotation_path).convert("L"), dtype=np.float32)
        mask[mask == 255.0] = 1.0  # the masks are filled, 0 or 255
        out = self.transform(image=image, mask=mask)
        return out["image"], out["mask"]


def _init_worker_rng(worker_id: int) -> None:
    # Not in the paper's loop: makes each worker's augmentation draws reproducible (same cost).
    info = torch.utils.data.get_worker_info()
    _set_transform_rng(info.dataset.transform, info.seed % 2**32)


def _set_transform_rng(transform: A.Compose, seed: int) -> None:
    # One stream shared by all transforms (Compose.set_random_seed would give each its own
    # identically seeded one: correlated draws; see trainables.data.augment).
    transform.set_random_state(np.random.default_rng(seed), random.Random(seed))


@dataclass
class ReferenceLoop:
    """The paper's model, optimizer, scaler, loss and DataLoader, and where its epoch is."""

    cfg: TrialConfig
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    loss_fn: nn.Module
    loader: DataLoader
    device: torch.device
    batches: Iterator | None = None  # the live DataLoader iterator (one epoch)
    last_loss: float = float("nan")


def build_reference_loop(
    cfg: TrialConfig,
    data: TrialData,
    num_workers: int = REFERENCE_NUM_WORKERS,
    verbose: bool = False,
) -> ReferenceLoop:
    """The paper's model, optimizer, scaler and DataLoader over `data.train`'s PNG files.

    The model is built after `seed_everything(cfg.seed)`, exactly as in `build_training`, so both
    loops start from the same weights.
    """
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    device = resolve_device(cfg)
    data_dir = cfg.data_dir or default_data_dir()
    samples = scan_dataset(data_dir, "training_set", data.train.filenames)
    seed_everything(cfg.seed)
    model, _ = build_network(cfg, verbose)
    model.to(device)
    loader = DataLoader(
        ReferenceDataset(samples, reference_transform(cfg)),
        batch_size=cfg.batch_size,
        shuffle=True,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        worker_init_fn=_init_worker_rng if num_workers else None,
        generator=torch.Generator().manual_seed(cfg.seed),
    )
    if num_workers == 0:
        _set_transform_rng(loader.dataset.transform, cfg.seed)
    return ReferenceLoop(
        cfg=cfg,
        model=model,
        optimizer=torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay),
        scaler=torch.amp.GradScaler(device.type, enabled=device.type == "cuda"),
        loss_fn=LOSSES[cfg.loss](),  # 'bce' (the default): the paper's BCEWithLogitsLoss
        loader=loader,
        device=device,
    )


def _next_batch(loop: ReferenceLoop):
    """The next batch; a new epoch (new iterator, workers restarted) when one runs out."""
    try:
        return next(loop.batches)
    except (StopIteration, TypeError):  # TypeError: no iterator yet
        loop.batches = iter(loop.loader)
        return next(loop.batches)


def reference_train_step(loop: ReferenceLoop) -> int:
    """One step of the paper's train_fn; returns the number of images."""
    data, targets = _next_batch(loop)
    data = data.to(device=loop.device)
    targets = targets.float().unsqueeze(1).to(device=loop.device)
    with torch.autocast(loop.device.type, dtype=torch.float16, enabled=loop.device.type == "cuda"):
        predictions = loop.model(data)
        loss = loop.loss_fn(predictions, targets)
    loop.optimizer.zero_grad()
    loop.scaler.scale(loss).backward()
    loop.scaler.step(loop.optimizer)
    loop.scaler.update()
    loop.last_loss = loss.item()  # the tutorial's `loop.set_postfix(loss=loss.item())`
    return len(data)


def train_reference_steps(loop: ReferenceLoop, steps: int, warmup: int = 0) -> dict:
    """`warmup` untimed steps, then `steps` timed ones, from a fresh epoch; img/s of the latter.

    The iterator is closed afterwards, so idle workers do not prefetch (and take CPU) while
    another loop is measured.
    """
    loop.model.train()
    loop.batches = None
    for _ in range(warmup):
        reference_train_step(loop)
    _synchronize(loop.device)
    start, images = time.perf_counter(), 0
    for _ in range(steps):
        images += reference_train_step(loop)
    _synchronize(loop.device)
    seconds = time.perf_counter() - start
    loop.batches = None  # shuts the workers down
    return {"images": images, "seconds": seconds, "images_per_s": images / seconds}


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
