"""`python search/run.py`: run a FreezeFrame study on the connected (or a local) Ray cluster.

Everything is validated - config keys, strategies, data path, the data set itself - before Ray
starts. With no arguments it runs the embedded default (configs/demo.yaml): the shipped HC18
sample, a synthetic pretraining domain, a small tune budget, a small explore stage, the 8 paper
strategies and the explore stage's top 2 x 4 seeds at 64 px, W&B offline, then the ranked report.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time

from search.driver import study
from search.driver.capacity import trial_slots
from search.driver.encoders import needs_imagenet, networks
from search.driver.preflight import check_cluster, check_same_data, resolve
from search.experiment.lease import Lease
from search.shared.spec import STAGES
from search.shared.stop import STOP, StudyStopped
from search.worker.wandb_link import local_wandb_key, share_key
from trainables.core.errors import UserError
from trainables.data.trial_data import load_trial_data


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python search/run.py",
        description=__doc__.split("\n\n")[0]
        + " Stages: pretrain (optional source-domain pretraining), tune (Optuna proposes lr and "
        "decay per strategy), explore (optional: a multi-objective search over encoder, freeze mask "
        "and recipe), final (strategies x seeds with the best recipes, plus explore's top-k), "
        "then the report.",
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
        help=f"comma-separated subset of {','.join(STAGES)}, run in that order (default: the "
        "config's search.stages)",
    )
    parser.add_argument(
        "--resume",
        nargs="?",
        const="yes",
        default=None,
        choices=["yes", "auto"],
        help="continue the experiment --name: finished trials are not run again. `--resume "
        "auto` starts the experiment when it does not exist yet and continues it otherwise "
        "(one command for a first start and every retry: a Ray job, a cron entry)",
    )
    parser.add_argument(
        "--wandb",
        choices=["online", "offline", "disabled"],
        default=None,
        help="W&B mode (default: the config's search.wandb, its mode when a mapping; 'auto' = "
        "online when logged in, else offline); entity, project, checkpoints and system metrics: "
        "search.wandb.* keys",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override: trial.KEY, search.KEY (nested: search.tune.trials_per_strategy) or KEY",
    )
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray cluster")
    parser.add_argument(
        "--address",
        default=None,
        help="join this running Ray cluster (host:port, or 'auto' for the one `ray start` "
        "started on this machine); default: RAY_ADDRESS if set (`ray submit` on "
        "cluster/cluster.yaml's head and Ray jobs set it), else a new private Ray for this "
        "study, so two studies on one machine never share one",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:  # a problem the user can fix, found before or during the study: exit 2
        return _main(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _main(args) -> int:
    cfg, experiment, wandb_mode = resolve(args)
    data = load_trial_data(cfg.trial)  # validates (and caches) the data on this node
    if args.resume:
        check_same_data(data.fingerprint(), experiment)
    if needs_imagenet(cfg, experiment, args.resume):
        # Fetch (or find in smp's cache) the ImageNet weights once, here, so an offline
        # machine fails now with advice instead of in every trial.
        from trainables.nets.models import build_model  # torch: only for this check

        for network in networks(cfg):
            build_model(f"unet_{network}", "imagenet")
    try:
        return _run(args, cfg, experiment, wandb_mode, data)
    except StudyStopped as stopped:
        print(
            f"error: study stopped: {stopped}; no later stage ran and no report was "
            f"written. Resume with: {resume_command(sys.argv, experiment.name)}",
            file=sys.stderr,
            flush=True,
        )
        return stopped.exit_code


def resume_command(argv: list[str], name: str) -> str:
    """The command line that continues this study: the same one, with --resume and --name."""
    words = list(argv)
    if "--name" not in words:
        words += ["--name", name]
    if "--resume" not in words:
        words.append("--resume")
    return shlex.join(["python", *words])


def _run(args, cfg, experiment, wandb_mode: str, data) -> int:
    """Connect to Ray, take the lease and run the study (stops raise `StudyStopped`)."""
    started_here = study.connect_ray(args.num_cpus, args.address)
    # After ray.init, whose core worker installs a SIGTERM handler of its own (it would end the
    # driver with exit 1 in the middle of a stage): from here a signal requests a stop.
    with STOP.installed():
        return _run_with_lease(args, cfg, experiment, wandb_mode, data, started_here)


def _run_with_lease(args, cfg, experiment, wandb_mode: str, data, started_here: bool) -> int:
    lease = Lease(experiment)
    capacity = check_cluster(cfg, experiment, started_here)
    lease.acquire()
    try:
        if not args.resume:
            experiment.create_identity()
            experiment.write_config(cfg.model_dump(mode="json"))
            experiment.write_split(data.split)
            experiment.write_data_fingerprint(data.fingerprint())
        print(
            f"FreezeFrame: experiment {experiment.uri} | stages {','.join(cfg.search.stages)} | "
            f"{len(cfg.search.strategies)} strategies x {len(cfg.search.seeds)} seeds | "
            f"train/val/test {len(data.train)}/{len(data.val)}/{len(data.test)} images | "
            f"W&B {wandb_mode}",
            flush=True,
        )
        slots, why = trial_slots(cfg.search, capacity)
        print(f"FreezeFrame: up to {slots} trials at once ({why})", flush=True)
        started = time.monotonic()
        if wandb_mode == "online":
            share_key(local_wandb_key())
        # A UserError found only with Ray up (stored results of other settings) exits 2 too.
        report = study.run_study(
            cfg, experiment, wandb_mode, args.resume, data.digest(), not started_here
        )
        if report is not None:
            print(report.text)
        elapsed = time.monotonic() - started
        print(f"FreezeFrame: done in {elapsed:.0f} s -> {experiment.uri}", flush=True)
        return 0
    except KeyboardInterrupt:
        if lease.lost:
            return 2
        raise
    finally:
        lease.release()
