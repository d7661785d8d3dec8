"""`python search/run.py`: run a FreezeFrame study on the connected (or a local) Ray cluster.

Everything is validated - config keys, strategies, data path, the data set itself - before Ray
starts. With no arguments it runs the embedded default (configs/demo.yaml): the shipped HC18
sample, a synthetic pretraining domain, a small tune budget, 8 strategies x 4 seeds at 64 px,
W&B offline, then the ranked report.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from search.config import DEFAULT_CONFIG, PRETRAIN_DATA, STAGES, ResolvedConfig, load_config
from search.experiment import Experiment
from search.wandb_link import local_wandb_key
from trainables.config import ConfigError
from trainables.data import DataError
from trainables.models import WeightsError
from trainables.splits import SplitError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python search/run.py",
        description=__doc__.split("\n\n")[0]
        + " Stages: pretrain (optional source-domain pretraining), tune (Optuna proposes lr and "
        "decay per strategy), final (strategies x seeds with the best recipes), then the report.",
    )
    parser.add_argument(
        "--config",
        default=None,
        help="YAML with 'trial:' and 'search:' sections (default: the embedded configs/demo.yaml)",
    )
    parser.add_argument(
        "--data", default=None, help="HC18-layout folder (default: config's, else shipped sample)"
    )
    parser.add_argument(
        "--name",
        default=None,
        help="experiment name (default: config's search.name + a timestamp; required for --resume)",
    )
    parser.add_argument(
        "--storage",
        default="runs",
        help="where experiments live: a local path, or s3://... / gs://... (Ray's storage; "
        "default: runs)",
    )
    parser.add_argument(
        "--stages",
        default=None,
        help=f"comma-separated subset of {','.join(STAGES)} (default: the config's, all)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the experiment --name: finished trials are not run again",
    )
    parser.add_argument(
        "--wandb",
        choices=["online", "offline", "disabled"],
        default=None,
        help="W&B mode (default: the config's search.wandb; its 'auto' = online when logged "
        "in, else offline)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override: trial.KEY, search.KEY (nested: search.tune.trials_per_strategy) or KEY",
    )
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray cluster")
    return parser


def resolve(args: argparse.Namespace) -> tuple[ResolvedConfig, Experiment, str]:
    """Validate everything the study needs; raises ConfigError/DataError before Ray starts."""
    config_path = args.config or DEFAULT_CONFIG
    sets = list(args.set)
    if args.data:
        sets.append(f"trial.data_dir={args.data}")
    overrides = {}
    if args.stages:
        overrides["stages"] = [s.strip() for s in args.stages.split(",") if s.strip()]
    cfg = load_config(config_path, sets, **overrides)
    if args.resume and not args.name:
        raise ConfigError("--resume needs --name (the experiment to continue)")
    name = args.name or f"{cfg.search.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    experiment = Experiment(args.storage, name)
    if experiment.exists() and not args.resume:
        raise ConfigError(f"experiment {experiment.uri} exists; pass --resume or another --name")
    if args.resume and not experiment.exists():
        raise ConfigError(f"--resume: no experiment at {experiment.uri}")
    if args.resume:
        _check_same_config(cfg, experiment.read_config(), experiment.uri)
    _check_report_metric(cfg)
    _check_pretrain_source(cfg)
    mode = args.wandb or cfg.search.wandb
    if mode == "auto":
        mode = "online" if local_wandb_key() else "offline"
    return cfg, experiment, mode


def _check_same_config(cfg: ResolvedConfig, saved: dict, uri: str) -> None:
    """A resumed search must train what the checkpoints were written with; stages may differ."""
    current, saved = _flat(cfg.model_dump(mode="json")), _flat(saved)
    changed = [
        key
        for key in sorted(set(current) | set(saved))
        if key != "search.stages" and current.get(key) != saved.get(key)
    ]
    if changed:
        raise ConfigError(
            f"--resume: {', '.join(changed)} differ from the config stored in {uri}; repeat the "
            "first run's --config/--set/--data (only --stages may change)"
        )


def _flat(tree: dict, prefix: str = "") -> dict:
    """{'search': {'tune': {'seed': 0}}} -> {'search.tune.seed': 0}"""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out |= _flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def _check_report_metric(cfg: ResolvedConfig) -> None:
    """The report ranks by a trials.csv column; a typo would only surface after the study."""
    from search.report.stats import get_metric

    try:
        get_metric(cfg.search.report_metric)
    except KeyError as err:
        raise ConfigError(f"search.report_metric: {err.args[0]}") from None


def _check_pretrain_source(cfg: ResolvedConfig) -> None:
    """An HC18-layout pretraining source is read by a trial; check (and cache) it here first."""
    source = cfg.search.pretrain.source
    if "pretrain" not in cfg.search.stages or source == "synthetic":
        return
    if not Path(source).is_dir():
        raise ConfigError(f"search.pretrain.source: {source!r} is neither 'synthetic' nor a folder")
    from trainables.trial import load_trial_data

    spec = {"data_dir": source, **PRETRAIN_DATA}  # as the pretrain stage reads it
    try:
        load_trial_data(cfg.trial.model_copy(update=spec))
    except (DataError, SplitError) as err:
        raise ConfigError(f"search.pretrain.source: {err}") from None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg, experiment, wandb_mode = resolve(args)
        from trainables.trial import load_trial_data

        data = load_trial_data(cfg.trial)  # validates (and caches) the data on this node
        if cfg.trial.encoder_weights == "imagenet" and "pretrain" not in cfg.search.stages:
            # Fetch (or find in smp's cache) the ImageNet weights once, here, so an offline
            # machine fails now with advice instead of in every trial.
            from trainables.models import build_model

            build_model("unet_mobilenet_v2", "imagenet")
    except (ConfigError, DataError, SplitError, WeightsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    from search.study import connect_ray, run_study
    from search.wandb_link import share_key

    if not args.resume:
        experiment.write_config(cfg.model_dump(mode="json"))
        experiment.write_split(data.split)
    print(
        f"FreezeFrame: experiment {experiment.uri} | stages {','.join(cfg.search.stages)} | "
        f"{len(cfg.search.strategies)} strategies x {len(cfg.search.seeds)} seeds | "
        f"train/val/test {len(data.train)}/{len(data.val)}/{len(data.test)} images | W&B {wandb_mode}",
        flush=True,
    )
    started = time.monotonic()
    connect_ray(args.num_cpus)
    if wandb_mode == "online":
        share_key(local_wandb_key())
    report = run_study(cfg, experiment, wandb_mode, args.resume)
    if report is not None:
        print(report.text)
    print(
        f"FreezeFrame: done in {time.monotonic() - started:.0f} s -> {experiment.uri}", flush=True
    )
    return 0
