"""A trial's settings from YAML files, `--set` overrides and CLI flags, checked.

The typed model and its defaults are `trainables.core.config.TrialConfig`; here a config file's
`trial:` section, the overrides and the flags are merged and validated, and the checks that need
more than types follow: the strategy exists (its table lives with the networks, hence this
module's place), `encoder_weights` is 'imagenet', 'none' or a file, `data_dir` a folder. Errors
are `ConfigError`s naming the source and the key; paths come back absolute.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from trainables.core.config import (
    TrialConfig,
    format_validation_error,
    parse_overrides,
    read_config_file,
)
from trainables.core.errors import ConfigError
from trainables.nets.strategies import get_strategy


def resolve_trial_config(
    values: dict[str, Any], source: str = "config", **overrides: Any
) -> TrialConfig:
    """Validate trial settings; errors name the source and each bad key."""
    merged = {**values, **{k: v for k, v in overrides.items() if v is not None}}
    try:
        cfg = TrialConfig(**merged)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from None
    try:
        get_strategy(cfg.strategy)
    except KeyError as err:
        raise ConfigError(f"{source}: strategy: {err.args[0]}") from None
    if cfg.encoder_weights not in ("imagenet", "none") and not Path(cfg.encoder_weights).is_file():
        raise ConfigError(
            f"{source}: encoder_weights: {cfg.encoder_weights!r} is neither 'imagenet', 'none' "
            "nor an existing checkpoint file"
        )
    if cfg.data_dir is not None and not Path(cfg.data_dir).is_dir():
        raise ConfigError(f"{source}: data_dir: {cfg.data_dir!r} is not a folder")
    # Paths as absolute ones: a trial runs in another working directory (Ray's trial folder),
    # and a resumed study compares them with the first run's.
    paths = {
        key: str(Path(value).expanduser().resolve())
        for key in PATH_KEYS
        if (value := getattr(cfg, key)) is not None and value not in ("imagenet", "none")
    }
    return cfg.model_copy(update=paths)


PATH_KEYS = ("data_dir", "split_file", "cache_dir", "encoder_weights")


def load_trial_config(
    path: str | Path | None, sets: list[str] | None = None, **overrides: Any
) -> TrialConfig:
    """Config file's `trial:` section, then `--set` pairs, then explicit CLI overrides."""
    section = read_config_file(path).get("trial", {})
    source = str(path) if path else "defaults"
    return resolve_trial_config({**section, **parse_overrides(sets)}, source, **overrides)
