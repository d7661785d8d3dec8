"""The one typed model of a trial's settings, and how YAML files and `--set` overrides reach it.

Defaults live here; `configs/*.yaml` list only what differs. A config file has up to two
sections: `trial:` (validated here) and `search:` (validated by the search service, which
`trainables` never imports). Unknown keys and wrong types fail with the key's name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from trainables.core.errors import ConfigError
from trainables.core.recipe import DecayFactor, Floor, LearningRate, Schedule, StepSize


def shipped_config(name: str) -> Path:
    """A file of the project's `configs/` folder, in a checkout or an installed package.

    A checkout (or an editable install) reads `configs/` beside the packages; a built wheel
    ships the same files as the package `freezeframe_configs` (pyproject.toml maps it).
    """
    checkout = Path(__file__).resolve().parents[2] / "configs" / name
    if checkout.is_file():
        return checkout
    import importlib.util

    spec = importlib.util.find_spec("freezeframe_configs")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        if (Path(folder) / name).is_file():
            return Path(folder) / name
    raise ConfigError(f"configs/{name} is neither in this checkout nor in the installed package")


# Median radial gap, in original-image pixels, between the pixel-edge boundary of the HC18 filled
# masks and the ellipse their reference HC describes (799 training masks; std 0.035 px). A
# network trained on those masks learns the same outset; see trainables/hc.py.
HC18_MASK_OUTSET_PX = 1.58


class StrictModel(BaseModel):
    """The base of every settings model, here and in the search service: an unknown key, an
    infinite or NaN number and a change after validation are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class TrialConfig(StrictModel):
    """Everything one trial needs. Field docs are the reference for `--set key=value`."""

    # What trains. The strategy table (trainables/strategies.py) picks the network.
    strategy: str = Field("decoder", description="fine-tuning strategy (see strategies --json)")
    seed: int = Field(0, description="seeds torch/numpy once at trial start; also the run name")
    encoder_weights: str = Field(
        "imagenet",
        description="'imagenet' (smp download), 'none', or a checkpoint path (U-Net or encoder)",
    )
    train_head: bool = Field(False, description="also train the segmentation head")
    bn_update_frozen: bool | None = Field(
        None,
        description="frozen BatchNorm layers keep updating running stats; None = strategy's choice",
    )

    bn_momentum: float | None = Field(
        0.1,
        gt=0,
        le=1,
        description="BatchNorm running-stat momentum (0.1 = PyTorch's and the paper's); "
        "null = cumulative average, for short runs from random weights",
    )

    # Data.
    data_dir: str | None = Field(None, description="HC18-layout folder; None = shipped sample")
    image_size: int = Field(
        512, ge=32, le=2048, description="square side the images are resized to (HC18: 800x540)"
    )
    max_images: int | None = Field(None, ge=3, description="use only the first N images")
    split: Literal["file", "random", "grouped"] = Field(
        "grouped", description="grouped by exam prefix; 'file' reads split_file (paper's split)"
    )
    split_file: str | None = Field(None, description="CSV filename,split for split='file'")
    val_fraction: float = Field(0.1, gt=0, lt=1)
    test_fraction: float = Field(0.2, gt=0, lt=1)
    split_seed: int = 0
    train_fraction: float = Field(
        1.0,
        gt=0,
        le=1,
        description="train on this share of the training split's images: whole exams, seeded by "
        "the trial seed, nested (a smaller share lies inside a larger one for the same seed); "
        "validation and test untouched (trainables.splits.train_subset)",
    )
    fraction_budget: Literal["steps", "epochs"] = Field(
        "steps",
        description="with train_fraction < 1: 'steps' trains as many optimizer steps as the "
        "whole training split would (more epochs; a per-epoch learning-rate decay stretched to "
        "match), 'epochs' the same epochs (fewer steps)",
    )
    hc_mask_outset_px: float = Field(
        HC18_MASK_OUTSET_PX,
        ge=0,
        description="how far the data's masks reach beyond the head ellipse, in original pixels; "
        "subtracted when HC is measured (1.58 for HC18's filled masks, 0 for exact masks such "
        "as the synthetic generator's)",
    )
    cache_dir: str | None = Field(
        None, description="resized-array cache; None = $FREEZEFRAME_CACHE or ~/.cache/freezeframe"
    )

    # Evaluation and prediction: from the network's scores to the head mask
    # (trainables/postprocess.py). Metrics are computed before (raw_*) and after it.
    postprocess: Literal["none", "largest", "ellipse"] = Field(
        "ellipse",
        description="the thresholded mask as it is, its largest connected component (holes "
        "filled), or the filled ellipse fitted to that component. ellipse by default: on real "
        "HC18 (README, Metrics) it halved the Hausdorff distance and raised Dice mean and "
        "median of both models measured, and it barely moves the HC (<= 0.03 mm on average), "
        "which is measured as a fitted ellipse either way",
    )
    tta: bool = Field(
        False,
        description="test-time augmentation: also predict the horizontally flipped image and "
        "average the two probabilities (doubles evaluation and prediction time)",
    )

    # Augmentation (the paper's): rotation, flips. Applied to training batches only.
    rotate_deg: float = Field(25.0, ge=0, le=180)
    hflip_p: float = Field(0.5, ge=0, le=1)
    vflip_p: float = Field(0.1, ge=0, le=1)
    augment_backend: Literal["auto", "albumentations", "torch"] = Field(
        "auto", description="auto = torch on the GPU, albumentations on the CPU"
    )

    # Optimisation: Adam with a per-epoch decay schedule.
    epochs: int = Field(20, ge=1, le=10_000)
    batch_size: int = Field(10, ge=1, le=4096)
    # The recipe: which schedule reads which key is in trainables.core.recipe.
    lr: LearningRate = 1e-4
    lr_schedule: Schedule = "exponential"
    lr_gamma: DecayFactor = Field(0.9, description="exponential/step decay factor")
    lr_step_size: StepSize = Field(5, description="epochs per step for lr_schedule='step'")
    lr_min: Floor = Field(
        0.0, description="cosine floor (never proposed by the tune stage: this value is used)"
    )
    loss: Literal["bce", "dice_bce"] = "bce"
    weight_decay: float = Field(0.0, ge=0)

    # Execution.
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: Literal["auto", "bf16", "fp16", "off"] = Field(
        "auto",
        description="mixed precision: auto = bf16 where the GPU computes it natively (compute "
        "capability >= 8.0: A100, L4, H100), fp16 autocast with a GradScaler below it (T4, V100; "
        "what the paper trained with on its T4), off on the CPU; bf16/fp16 force one (fp16 on "
        "the CPU too, for tests); true/false read as auto/off",
    )
    channels_last: bool = True
    compile: Literal["off", "default", "reduce-overhead", "max-autotune"] = Field(
        "off",
        description="torch.compile the network for training and evaluation (reduce-overhead = "
        "CUDA graphs on a GPU). Off by default: on a 2-core CPU at 128 px it took 45 s to "
        "compile and trained 10% slower; not yet measured on a GPU (README, Performance)",
    )
    num_threads: int | None = Field(None, ge=1, description="torch CPU threads; None = all cores")
    eval_batch_size: int = Field(20, ge=1, le=4096)
    checkpoint_every: int = Field(1, ge=1, description="epochs between resumable checkpoints")

    @field_validator("amp", mode="before")
    @classmethod
    def _amp_from_bool(cls, value):
        """Configs written when `amp` was a bool (bf16 on CUDA or not)."""
        return {True: "auto", False: "off"}.get(value, value) if isinstance(value, bool) else value

    @model_validator(mode="after")
    def _check(self) -> TrialConfig:
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError("val_fraction + test_fraction must be < 1")
        return self

    @property
    def run_name(self) -> str:
        """`<strategy>__seed<k>` (`<strategy>__f<percent>__seed<k>` on part of the training
        split); a freeze-mask strategy in its file-safe spelling."""
        strategy = self.strategy.replace(":", "_").replace("+", ".")  # freeze.safe_name
        if self.train_fraction < 1:  # `decoder__f10__seed0`: 10% of the training images
            return f"{strategy}__f{self.train_fraction * 100:g}__seed{self.seed}"
        return f"{strategy}__seed{self.seed}"


def parse_overrides(pairs: list[str] | None) -> dict[str, Any]:
    """Turn ['lr=3e-4', 'epochs=2'] into a dict, values parsed as YAML scalars."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise ConfigError(f"--set expects key=value, got {pair!r}")
        key, raw = pair.split("=", 1)
        # YAML scalars, plus Python's spelling of null that users type by habit.
        out[key.strip()] = None if raw in ("", "None") else yaml.safe_load(raw)
    return out


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.safe_load, but a key written twice in one mapping is an error (YAML says keys are
    unique; PyYAML would keep the last one silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def read_config_file(path: str | Path | None) -> dict[str, Any]:
    """Read a YAML config file into {'trial': {...}, 'search': {...}}; empty dict for None."""
    if path is None:
        return {}
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.load(path.read_text(), Loader=_UniqueKeyLoader) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with 'trial:' and/or 'search:' sections")
    unknown = set(data) - {"trial", "search"}
    if unknown:
        raise ConfigError(
            f"{path}: unknown top-level key(s) {sorted(unknown)}; valid: ['search', 'trial']"
        )
    for section in ("trial", "search"):
        if data.get(section) is None:
            data[section] = {}
        elif not isinstance(data[section], dict):
            raise ConfigError(f"{path}: '{section}' must be a mapping")
    return data


def format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid config"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(config)"
        msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
        lines.append(f"  {key}: {msg}")
    return "\n".join(lines)


def dump_config(cfg: BaseModel, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
