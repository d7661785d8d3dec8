"""Where a trial computes and in which precision: the device, autocast dtype and GradScaler.

Precision per device (`amp` in the trial config): bf16 autocast where the GPU has native bf16
(compute capability >= 8.0: A100, L4, H100), fp16 autocast with a GradScaler below it (T4 7.5,
V100 7.0: bf16 there is emulated or missing, and the paper trained its T4 runs in fp16), plain
fp32 on the CPU. A trial records both (`describe_device`, the precision name).
"""

from __future__ import annotations

import torch

from trainables.core.config import TrialConfig
from trainables.core.errors import DeviceError

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}


def cuda_missing_reason() -> str:
    built = torch.version.cuda or "no CUDA (a CPU build)"
    return (
        f"torch {torch.__version__} (built for CUDA {built}) sees no CUDA device: no GPU, no "
        "NVIDIA driver, or a driver too old for this build (check `nvidia-smi`)"
    )


def resolve_device(cfg: TrialConfig) -> torch.device:
    """`device: auto` is CUDA when torch sees a GPU, else the CPU; `cuda` never falls back."""
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device='cuda', but {cuda_missing_reason()}")
    if cfg.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(cfg.device)


def resolve_precision(
    amp: str, device: torch.device, capability: tuple[int, int] | None = None
) -> str:
    """'bf16', 'fp16' or 'fp32' for `amp` on `device`.

    Args:
        amp: the trial config's `amp` (auto, bf16, fp16, off).
        capability: the GPU's compute capability; read from the device when None (tests pass
            one in).
    """
    if amp == "off":
        return "fp32"
    if amp in ("bf16", "fp16"):
        return amp
    if device.type != "cuda":
        return "fp32"
    major, _minor = capability or torch.cuda.get_device_capability(device)
    return "bf16" if major >= 8 else "fp16"


def make_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    """fp16 gradients underflow without loss scaling; bf16 and fp32 need none."""
    return torch.amp.GradScaler(device.type) if precision == "fp16" else None


def describe_device(device: torch.device) -> str:
    """'cuda:Tesla T4', 'cpu': what trials.csv and W&B show."""
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return device.type
