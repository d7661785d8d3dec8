"""Fail a cluster node's setup when torch cannot train on its GPU.

cluster.yaml runs this as a worker setup command, after the project is installed. Ray's
autoscaler terminates a worker whose setup fails (`ray status` lists it as a failed launch), so a
node without a working driver, with a driver too old for the torch build, or with another torch
than the pinned one costs one setup instead of sending every trial to a CPU that cannot run it.

    python ~/freezeframe/cluster/check_gpu.py     # one line and exit 0, or the problems and 1

Checks, in order: the installed torch and torchvision are the versions cluster/constraints.txt
pins; torch sees a CUDA device; a convolution and a matrix product run on it, under the autocast
precision the trials will use (`amp: auto`: fp16 on a T4, bf16 from compute capability 8.0).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import torch
import torchvision

from trainables.core.device import (
    AUTOCAST_DTYPES,
    cuda_missing_reason,
    describe_device,
    resolve_precision,
)

CONSTRAINTS = Path(__file__).with_name("constraints.txt")


def pinned_versions(constraints: Path) -> dict[str, str]:
    """{'torch': '2.14.1', ...} from a pip constraints file of `name==version` lines."""
    pins = {}
    for line in constraints.read_text().splitlines():
        requirement = line.split("#", 1)[0].strip()
        if requirement:
            name, _, version = requirement.partition("==")
            pins[name.strip().lower()] = version.strip()
    return pins


def installed_versions() -> dict[str, str]:
    """Versions without the local build label: torch '2.14.1+cu130' -> '2.14.1'."""
    return {
        "torch": torch.__version__.split("+")[0],
        "torchvision": torchvision.__version__.split("+")[0],
    }


def driver_version() -> str:
    try:
        result = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"unknown (nvidia-smi: {type(err).__name__})"
    if result.returncode != 0 or not result.stdout.strip():
        return f"unknown (nvidia-smi: {(result.stderr or result.stdout).strip()[:200]})"
    return result.stdout.strip().splitlines()[0]


def version_problems(pins: dict[str, str], installed: dict[str, str], source: str) -> list[str]:
    return [
        f"{name} {installed[name]} is installed, but {source} pins {name}=={pins[name]}: the node "
        "did not install with `pip install -c` that file, or its image was built from another one"
        for name in ("torch", "torchvision")
        if name in pins and installed.get(name) != pins[name]
    ]


def compute_on_gpu(device: torch.device, precision: str) -> None:
    """One small convolution and matrix product, as a trial's forward pass computes them."""
    images = torch.randn(2, 3, 64, 64, device=device)
    weight = torch.randn(8, 3, 3, 3, device=device)
    dtype = AUTOCAST_DTYPES[precision]
    with torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
        features = torch.nn.functional.conv2d(images, weight, padding=1)
        product = features.flatten(1) @ features.flatten(1).T
    torch.cuda.synchronize(device)
    if not torch.isfinite(product).all():
        raise RuntimeError(f"a {precision} matrix product on {device} gave non-finite values")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--constraints",
        type=Path,
        default=CONSTRAINTS,
        help="the pip constraints file with the pinned torch (default: %(default)s)",
    )
    args = parser.parse_args(argv)

    source = "cluster/constraints.txt" if args.constraints == CONSTRAINTS else str(args.constraints)
    problems = version_problems(pinned_versions(args.constraints), installed_versions(), source)
    summary = None
    if not torch.cuda.is_available():
        problems.append(f"{cuda_missing_reason()}; NVIDIA driver {driver_version()}")
    else:
        device = torch.device("cuda", 0)
        precision = resolve_precision("auto", device)
        try:
            compute_on_gpu(device, precision)
        except RuntimeError as err:  # e.g. "no kernel image is available": a build without sm_XY
            problems.append(f"torch cannot compute on {describe_device(device)}: {err}")
        major, minor = torch.cuda.get_device_capability(device)
        summary = (
            f"GPU check passed: {describe_device(device)} (compute capability {major}.{minor}), "
            f"NVIDIA driver {driver_version()}, torch {torch.__version__} (CUDA "
            f"{torch.version.cuda}); trials train in {precision}"
        )
    if problems:
        print("GPU check failed on this node:", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        print(
            "The node's setup fails here, so the autoscaler terminates it instead of running "
            "trials on its CPU (cluster/README.md, 'When a worker fails its GPU check').",
            file=sys.stderr,
        )
        return 1
    print(summary, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
