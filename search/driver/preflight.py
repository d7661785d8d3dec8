"""Everything checked before a study starts: config, experiment, data, inputs of a resume.

Each check raises `ConfigError` (or the data's own error) naming the key, file or option at
fault; `search.cli` turns that into exit status 2 before Ray starts and before anything is
written.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from urllib.parse import urlsplit

from search.driver.capacity import Capacity, cluster_capacity, shape
from search.driver.config import DEFAULT_CONFIG, PRETRAIN_DATA, ResolvedConfig, load_config
from search.driver.encoders import DEFAULT_STORE, networks, source_kind
from search.experiment.folder import CONFIG, Experiment
from search.experiment.lease import read_lease
from search.shared.metrics import get_metric
from search.shared.wandb_options import WandbOptions, merge_legacy_keys
from search.worker.wandb_link import local_wandb_key
from trainables.core.errors import ConfigError, DataError, SplitError, WeightsError
from trainables.data.arrays import fingerprint_problems
from trainables.data.trial_data import load_trial_data
from trainables.data.unlabelled import load_unlabelled

NAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,100}")  # whole name (fullmatch): one plain folder
# Settings a resume may change: what runs (not how trials train), where W&B's key lives, and
# what W&B records besides the runs (a resumed study logs to the same entity and project).
MAY_CHANGE_ON_RESUME = (
    "search.stages",
    "search.wandb_key_on_workers",
    "search.wandb.mode",
    "search.wandb.log_checkpoints",
    "search.wandb.system_metrics",
)


def resolve(args: argparse.Namespace) -> tuple[ResolvedConfig, Experiment, str]:
    """Validate everything the study needs; raises ConfigError/DataError before Ray starts.
    `args.resume` becomes a bool (`--resume auto`: whether the experiment exists)."""
    config_path = args.config or DEFAULT_CONFIG
    sets = list(args.set)
    if args.data:
        sets.append(f"trial.data_dir={args.data}")
    overrides = {}
    if args.stages:
        overrides["stages"] = [s.strip() for s in args.stages.split(",") if s.strip()]
    cfg = load_config(config_path, sets, **overrides)
    if args.resume and not args.name:
        raise ConfigError(f"--resume {args.resume}: needs --name (the experiment to continue)")
    if args.name is not None and (not NAME_PATTERN.fullmatch(args.name) or set(args.name) == {"."}):
        raise ConfigError(
            f"--name {args.name!r}: use 1 to 100 letters, digits, '_', '.' and '-' only (an "
            "experiment is one folder inside --storage)"
        )
    if args.name == DEFAULT_STORE:
        raise ConfigError(
            f"--name {DEFAULT_STORE!r} is reserved: it is the folder of the pretrained-encoder "
            "store beside the experiments; pick another name"
        )
    name = args.name or f"{cfg.search.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    experiment = Experiment(args.storage, name)
    if args.resume == "auto":  # start-or-resume: from here on a plain start or a plain resume
        args.resume = experiment.exists()
        print(
            f"--resume auto: {'continuing' if args.resume else 'starting'} {experiment.uri}",
            flush=True,
        )
    else:
        args.resume = bool(args.resume)
    if experiment.exists() and not args.resume:
        raise ConfigError(f"experiment {experiment.uri} exists; pass --resume or another --name")
    if args.resume and not experiment.exists():
        raise ConfigError(f"--resume: no experiment at {experiment.uri}")
    read_lease(experiment)  # a malformed lease.json: refused before Ray starts
    if args.resume:
        saved = experiment.read_config()
        _check_same_config(cfg, saved, experiment.uri)
        _check_stages_on_resume(cfg, saved, experiment)
    _check_report_metric(cfg)
    _check_optuna_storage(cfg.search.optuna_storage)
    _check_pretrain_source(cfg)
    check_device(cfg)
    mode = args.wandb or cfg.search.wandb.mode
    keyed = local_wandb_key() is not None or cfg.search.wandb_key_on_workers
    if mode == "auto":
        mode = "online" if keyed else "offline"
    elif mode == "online" and not keyed:
        raise ConfigError(
            "--wandb online: this machine is not logged in to W&B (no WANDB_API_KEY, no "
            "`wandb login` entry in ~/.netrc); run `wandb login`, use --wandb offline, or, when "
            "the trial workers hold the key, --set search.wandb_key_on_workers=true"
        )
    return cfg, experiment, mode


def _check_same_config(cfg: ResolvedConfig, saved: dict, uri: str) -> None:
    """A resumed search must train what the checkpoints were written with; stages may differ."""
    # An experiment stored before `search.wandb` became a mapping: its mode string and
    # wandb_project compared as the mapping they stand for.
    saved = {**saved, "search": merge_legacy_keys(saved.get("search", {}))}
    if isinstance(saved["search"].get("wandb"), dict):
        defaults = WandbOptions().model_dump(mode="json")
        saved["search"]["wandb"] = {**defaults, **saved["search"]["wandb"]}
    current, saved = _flat(cfg.model_dump(mode="json")), _flat(saved)
    changed = [
        key
        for key in sorted(set(current) | set(saved))
        if key not in MAY_CHANGE_ON_RESUME and current.get(key) != saved.get(key)
    ]
    if changed:
        raise ConfigError(
            f"--resume: {', '.join(changed)} differ from the config stored in {uri}; repeat the "
            "first run's --config/--set/--data (only --stages, --wandb, "
            "search.wandb_key_on_workers, search.wandb.mode, search.wandb.log_checkpoints and "
            "search.wandb.system_metrics may change)"
        )


def _check_stages_on_resume(cfg: ResolvedConfig, saved: dict, experiment: Experiment) -> None:
    """--stages may change on a resume, but not so that one study mixes encoders: adding the
    pretrain stage after tune or final trials trained without its encoder is refused."""
    before = saved.get("search", {}).get("stages", [])
    if "pretrain" in cfg.search.stages and "pretrain" not in before:
        trained = [s for s in ("tune", "explore", "final") if experiment.results(s)]
        if trained:
            raise ConfigError(
                f"--resume --stages: adds pretrain, but {' and '.join(trained)} trials of "
                f"{experiment.uri} already trained without its encoder; start a new experiment "
                "(another --name) to compare with a pretrained encoder"
            )


def check_same_data(fingerprint: dict, experiment: Experiment) -> None:
    """A resume trains and tests on the data (and split) the first run used."""
    saved = experiment.read_data_fingerprint()
    if saved is None:
        return
    problems = fingerprint_problems(saved["samples"], fingerprint["samples"])
    if saved["split"] != fingerprint["split"]:
        problems.append("the train/val/test split differs from the stored one")
    if problems:
        listed = "\n  ".join(problems[:20]) + (
            f"\n  ... {len(problems) - 20} more" if len(problems) > 20 else ""
        )
        raise ConfigError(
            f"--resume: the data differ from what {experiment.uri} was trained on "
            f"({len(problems)} problem(s)):\n  {listed}\nrestore the original files, or "
            "start a new experiment"
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
    try:
        get_metric(cfg.search.report_metric)
    except ConfigError as err:
        raise ConfigError(f"search.report_metric: {err}") from None


def _check_optuna_storage(storage: str | None) -> None:
    """No secret on disk: the config is saved (config.yaml) and sent to W&B, so a database
    password in `search.optuna_storage` is refused; the database client reads it itself."""
    if storage and "://" in storage and urlsplit(storage).password:
        raise ConfigError(
            "search.optuna_storage: the URL holds a password, which would be saved in the "
            f"experiment's {CONFIG} and sent to W&B; leave it out of the URL and give it to "
            "the database client on the driver (PostgreSQL: ~/.pgpass or PGPASSWORD)"
        )


def _check_pretrain_source(cfg: ResolvedConfig) -> None:
    """A pretraining source is read by a trial on some node: check (and cache) it here first,
    naming every unreadable file."""
    if "pretrain" not in cfg.search.stages:
        return
    source = cfg.search.pretrain.source
    kind = source_kind(source)  # ConfigError for an unknown source
    try:
        if kind == "hc18_folder":
            spec = {"data_dir": source, **PRETRAIN_DATA}  # as the pretrain stage reads it
            load_trial_data(cfg.trial.model_copy(update=spec))
        elif kind == "image_folder":
            load_unlabelled(source, cfg.trial.image_size)
        elif kind == "checkpoint":  # it must fit every network the study pretrains
            from trainables.nets.models import build_model  # torch: only for this check

            for network in networks(cfg):
                build_model(f"unet_{network}", source)
    except (DataError, SplitError, WeightsError) as err:
        raise ConfigError(f"search.pretrain.source: {err}") from None


def check_cluster(cfg: ResolvedConfig, experiment: Experiment, started_here: bool) -> Capacity:
    """What the connected Ray cluster can do for this study (Ray is connected, nothing written);
    returns its capacity (`capacity.Capacity`) for the start-up line.

    - A local --storage path on a cluster that has or may add another node exists on each
      node's own disk: results land on workers (whose disks the autoscaler deletes) and the
      driver never sees them. Refused unless the config says the path is shared
      (`search.shared_storage`).
    - A trial that fits on no node the cluster has or its autoscaler may add would wait
      forever: refused. A joined cluster whose autoscaling config is not readable here (a
      KubeRay head) is checked against its nodes now only, with a warning.
    """
    capacity = cluster_capacity(joined=not started_here)
    if capacity.multi_node and not experiment.store.is_remote and not cfg.search.shared_storage:
        how = (
            f"this Ray cluster's autoscaler may add nodes ({capacity.source})"
            if capacity.autoscaling
            else f"this Ray cluster has {len(capacity.nodes)} nodes"
        )
        raise ConfigError(
            f"--storage {experiment.store.storage} is a local path, and {how}: each node "
            "would write its trials to its own disk (a worker's disk goes when the autoscaler "
            "removes it). Use a bucket (--storage s3://... or gs://...), or a path every node "
            "mounts with --set search.shared_storage=true"
        )
    resources = cfg.search.resources
    if capacity.fits(resources.cpu, resources.gpu):
        return capacity
    ask = f"search.resources {{cpu: {resources.cpu:g}, gpu: {resources.gpu:g}}}"
    if started_here:
        have = shape(capacity.head)
        hint = (
            "Use --set search.resources.gpu=0 on this machine, or run on a GPU cluster"
            if resources.gpu and not capacity.head.get("GPU")
            else "Ask for less (or start more CPUs with --num-cpus)"
        )
        raise ConfigError(
            f"{ask}, but the local Ray started here has {have}: no trial could ever start. {hint}"
        )
    if capacity.autoscaling:
        raise ConfigError(
            f"{ask} fits on no node of this cluster, nor on any node type its autoscaler may "
            f"add ({capacity.describe(resources.cpu, resources.gpu)}): no trial could ever "
            "start. Ask for less, or add a node type that large to the cluster config"
        )
    print(
        f"warning: {ask} fits on no node of this cluster now, and no autoscaling config is "
        "readable here: the trials wait until the cluster adds such a node",
        file=sys.stderr,
        flush=True,
    )
    return capacity


def check_device(cfg: ResolvedConfig) -> None:
    """trial.device=cuda needs a GPU per trial from Ray."""
    if cfg.trial.device == "cuda" and cfg.search.resources.gpu == 0:
        raise ConfigError(
            "trial.device=cuda, but search.resources.gpu is 0: Ray would give the trials no "
            "CUDA device; set search.resources.gpu (1 = one GPU per trial)"
        )
