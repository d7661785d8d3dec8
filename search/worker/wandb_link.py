"""W&B without leaking the API key: one run per trial, started inside the trial's own process.

Why not Ray's `WandbLoggerCallback`: it pickles `api_key` into the experiment state
(`tuner.pkl`), and starts logging actors on the head node for every running trial. Why not a
`runtime_env` env var: Ray's runtime-env agent writes it into its log. Here the driver keeps the
key in the memory of one named actor; a trial asks that actor for it, sets it in its own
process environment only, and W&B runs in that process (on the trial's node).
"""

from __future__ import annotations

import hashlib
import netrc
import os
import sys
from pathlib import Path

import ray

from search.experiment.folder import Experiment
from search.shared.spec import WandbSettings
from search.shared.wandb_options import EPOCH_SUMMARIES
from trainables.nets.strategies import get_strategy

SECRET_ACTOR = "freezeframe_wandb_key"


def local_wandb_key() -> str | None:
    """The key this machine is logged in with: WANDB_API_KEY, else `wandb login`'s netrc."""
    if os.environ.get("WANDB_API_KEY"):
        return os.environ["WANDB_API_KEY"]
    try:
        auth = netrc.netrc().authenticators("api.wandb.ai")
    except (OSError, netrc.NetrcParseError):  # none, unreadable or malformed: no login
        return None
    return auth[2] if auth else None


def wandb_run_id(settings: WandbSettings, stage: str, name: str) -> str:
    """A retried or resumed trial continues its own run instead of starting a second one; a
    new experiment under an old name (the old folder deleted) starts runs of its own; two
    stages' trials of one name (the pretrain trial `all__seed0` and the final trial of
    strategy `all`) are two runs."""
    key = f"{settings.experiment_id}/{settings.group}/{stage}/{name}"
    return hashlib.sha1(key.encode()).hexdigest()[:16]


@ray.remote(num_cpus=0)
class _KeyHolder:
    def __init__(self):
        self._key = None

    def set(self, value: str) -> None:
        self._key = value

    def get(self) -> str | None:
        return self._key


_holder = None  # the driver keeps a handle so the actor lives as long as the driver


def share_key(key: str | None) -> None:
    """Driver side: hold the key in a named actor's memory for the trials to fetch."""
    global _holder
    if key:
        _holder = _KeyHolder.options(name=SECRET_ACTOR, get_if_exists=True).remote()
        ray.get(_holder.set.remote(key))


def fetch_key() -> str | None:
    """Trial side: the key the driver shared, or None."""
    try:
        return ray.get(ray.get_actor(SECRET_ACTOR).get.remote())
    except ValueError:  # no such actor: nothing was shared
        return None


# W&B's limit on one tag's length.
TAG_CHARS = 64


def short_tag(tag: str) -> str:
    """`tag` within W&B's 64 characters; a longer one (a long freeze mask) keeps its start and
    ends with 8 hex digits of its digest, so two long masks never share a tag."""
    if len(tag) <= TAG_CHARS:
        return tag
    digest = hashlib.sha1(tag.encode()).hexdigest()[:8]
    return f"{tag[: TAG_CHARS - 9]}~{digest}"


def run_tags(
    stage: str, strategy: str, train_fraction: float, recipe: str | None = None
) -> tuple[str, ...]:
    """A trial run's W&B tags: its stage, strategy, share of the training split, encoder
    (`encoder:mobilenet_v2`), freeze mask (`mask:mobilenet_v2:dec0-4`) and recipe label
    (`recipe:best`)."""
    found = get_strategy(strategy)
    tags = [stage, strategy, f"train_fraction:{train_fraction:g}"]
    tags += [f"encoder:{found.network}", f"mask:{found.mask}"]
    tags += [f"recipe:{recipe}"] if recipe else []
    return tuple(short_tag(tag) for tag in tags)


def system_metrics_on(settings: WandbSettings) -> bool:
    """Whether a trial's run records W&B's system metrics (GPU, CPU, memory; a sample per 15
    s): `auto` and `on` = yes. `auto` was meant to spare CPU-only trials; measured on a CPU,
    they cost no wall time within the noise (README, "Weights & Biases"), so every trial has
    them; `off` keeps them out."""
    return settings.system_metrics != "off"


def start_run(
    settings: WandbSettings,
    stage: str,
    name: str,
    config: dict | None,
    scratch: Path,
    tags: tuple[str, ...] | None = (),
    system_metrics: bool = False,
    gpu_ids: list[int] | None = None,
):
    """One W&B run for one trial (None when disabled). W&B degrades, never fails the trial: a
    server that does not answer within `settings.timeout_s` turns this run offline, with one
    warning.

    Args:
        settings: mode, entity, project, group, dir, timeout (from the trial's spec).
        stage: the W&B job type.
        name: the trial name.
        config: the resolved trial config plus trainable parameters (None: as the run has it).
        scratch: a node-local folder for the run files when the experiment is not local.
        tags: filters for W&B's run table (`run_tags`; None: as the run has them).
        system_metrics: record W&B's system metrics (`system_metrics_on`).
        gpu_ids: the GPUs Ray granted the trial: the only ones its system metrics show.
    """
    if settings.mode == "disabled":
        return None
    import wandb  # here: it takes about a second, and only a trial that logs to W&B needs it

    if settings.mode == "online" and "WANDB_API_KEY" not in os.environ:
        key = fetch_key()
        if key:
            os.environ["WANDB_API_KEY"] = key  # this process only; never written to disk
    run_id = wandb_run_id(settings, stage, name)

    def init(mode: str):
        return wandb.init(
            id=run_id,
            resume="allow",
            entity=settings.entity,
            project=settings.project,
            group=settings.group,
            job_type=stage,
            name=name,
            dir=settings.dir or str(scratch),
            mode=mode,
            config=config,
            tags=None if tags is None else [short_tag(tag) for tag in tags],
            reinit="create_new",
            settings=wandb.Settings(
                console="off",
                x_disable_stats=not system_metrics,
                x_stats_gpu_device_ids=gpu_ids or None,
                silent=True,
                init_timeout=settings.timeout_s,
                finish_timeout=settings.timeout_s,
            ),
        )

    if settings.mode == "online":
        try:
            return init("online")
        except Exception as err:  # unreachable server, rejected key, timeout: log offline
            reason = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
            print(
                f"warning: W&B did not answer for trial {name} ({reason[:300]}); it logs "
                "offline instead (the study prints the `wandb sync` command at its end)",
                file=sys.stderr,
                flush=True,
            )
            wandb.teardown()  # the failed run still holds its id in this process's service
    return init("offline")


def define_epoch_metrics(run) -> None:
    """Per-epoch metrics plotted against `epoch` (not W&B's step), and the summaries of
    `EPOCH_SUMMARIES` kept as their best epoch's value (`val_dice: {max: ...}`)."""
    run.define_metric("epoch")
    run.define_metric("*", step_metric="epoch")
    for key, summary in EPOCH_SUMMARIES.items():
        run.define_metric(key, step_metric="epoch", summary=summary)


def log_epoch(run, scalars: dict) -> None:
    """One epoch's row of the run's history, committed now: left open until the next row, the
    last epoch's values would overwrite the final summary (`log_summary`) when the run ends."""
    run.log(scalars, step=scalars["epoch"], commit=True)


def log_summary(run, summary: dict, params: dict) -> None:
    """A finished trial's final metrics into the run summary (those of `EPOCH_SUMMARIES` stay
    the best epoch's, as `define_epoch_metrics` keeps them), and its parameter counts into
    the config."""
    run.summary.update({k: v for k, v in summary.items() if k not in EPOCH_SUMMARIES})
    run.config.update(params, allow_val_change=True)


def log_per_image(run, rows) -> None:
    """A final trial's per-image test results (a DataFrame) as the table `test_per_image`."""
    import wandb

    plain = rows.astype(object).where(rows.notna(), None)  # NaN cells as empty, not "nan"
    run.log({"test_per_image": wandb.Table(dataframe=plain)})


def finish_run(run, experiment: Experiment | None) -> None:
    """End the run (the upload bounded by its finish_timeout); an offline run written on this
    node is copied into the experiment (`experiment`: given when the experiment is remote),
    where `wandb sync` finds it after the node is gone."""
    if run is None:
        return
    offline = run.settings.mode == "offline"
    run_dir = Path(run.settings.sync_dir)
    run.finish()
    if offline and experiment is not None:
        import wandb

        # W&B's service may still be writing the run file when finish() returns (seen with
        # wandb 0.31: 7 bytes at return, complete a moment later); ending it flushes the file.
        wandb.teardown()
        experiment.store_wandb_run(run_dir)


def sync_hint(experiment: Experiment) -> str | None:
    """The command that uploads the experiment's offline runs, or None when there are none."""
    runs = experiment.offline_wandb_runs()
    if not runs:
        return None
    where = f"{experiment.uri}/wandb"
    if experiment.store.is_remote:
        return (
            f"W&B: {len(runs)} offline run(s) in {where}; copy the folder down (e.g. `aws s3 "
            f"cp --recursive {where} wandb`), then `wandb sync wandb/offline-run-*`"
        )
    return f"W&B: {len(runs)} offline run(s); upload them with `wandb sync {where}/offline-run-*`"
