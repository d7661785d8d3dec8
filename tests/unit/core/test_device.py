"""Precision per device: `amp: auto` picks what the GPU computes natively."""

from __future__ import annotations

import pytest
import torch

from trainables.core.device import resolve_precision

CUDA = torch.device("cuda")


@pytest.mark.parametrize(
    ("amp", "device", "capability", "precision"),
    [
        ("auto", CUDA, (7, 5), "fp16"),  # T4: no native bf16 -> fp16 + GradScaler
        ("auto", CUDA, (7, 0), "fp16"),  # V100
        ("auto", CUDA, (8, 0), "bf16"),  # A100
        ("auto", CUDA, (9, 0), "bf16"),  # H100
        ("auto", torch.device("cpu"), None, "fp32"),
        ("off", CUDA, (9, 0), "fp32"),
        ("fp16", CUDA, (9, 0), "fp16"),  # forced, as the T4 path on any GPU
        ("bf16", CUDA, (7, 5), "bf16"),
    ],
)
def test_amp_auto_picks_the_precision_the_gpu_computes_natively(amp, device, capability, precision):
    assert resolve_precision(amp, device, capability) == precision
