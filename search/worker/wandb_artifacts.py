"""W&B artifacts of a study: the data fingerprint every trial used, and the best models.

The dataset artifact is the experiment's `data.json` (every image's content digest and its
side of the split), named after the data's digest: the same images and split are one artifact
version in the project, whichever study logs them. The driver logs it once, in a short run of
job type `data` before the first stage (`log_dataset`), so concurrent trials never race to
create it; each trial run then declares it as its input (`use_dataset`), which W&B matches to
that version by content. Offline, W&B refuses `use_artifact`: the trial writes the record that
`use_artifact` sends online (the artifact, marked to be used once committed), which `wandb
sync` turns into the same lineage.

The best checkpoint per strategy (`log_models`, when `search.wandb.log_checkpoints`) is logged
by the driver after the final stage, when all its seeds are done, in one run of job type
`models` that uses the dataset artifact (data -> models run -> model; each model's metadata
names the trial that trained it and that trial's run id).
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
from pathlib import Path

from search.experiment.folder import DATA, Experiment
from search.shared.spec import WandbSettings
from search.worker.wandb_link import finish_run, start_run, wandb_run_id
from trainables.core.files import BEST


def artifact_name(text: str) -> str:
    """`text` as a W&B artifact name: letters, digits, '-', '_' and '.' (a mask's ':' and '+'
    become '-' and '_'), at most 128 characters."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text.replace(":", "-"))[:128]


def dataset_name(digest: str) -> str:
    """The dataset artifact of the data with this fingerprint digest."""
    return artifact_name(f"data-{digest[:16]}")


def dataset_artifact(experiment: Experiment, digest: str, folder: Path):
    """The draft dataset artifact: the experiment's data fingerprint, written to `folder` (its
    bytes depend only on the fingerprint, so every writer's draft has one content digest)."""
    import wandb

    fingerprint = experiment.read_data_fingerprint()
    if fingerprint is None:
        raise FileNotFoundError(f"no data fingerprint in {experiment.uri}")
    path = folder / DATA
    path.write_text(json.dumps(fingerprint, indent=1, sort_keys=True))
    sides = {side: len(files) for side, files in fingerprint.get("split", {}).items()}
    artifact = wandb.Artifact(
        dataset_name(digest),
        type="dataset",
        description="the images' content digests and their train/val/test side",
        metadata={"digest": digest, "images": len(fingerprint.get("samples", {})), **sides},
    )
    artifact.add_file(str(path), name=DATA)
    return artifact


def use_dataset(run, artifact) -> None:
    """Declare the dataset artifact as the run's input: `use_artifact` online; offline the
    record it would send (W&B's `_log_artifact` with `use_after_commit`), for `wandb sync`."""
    if run.settings.mode != "offline":
        run.use_artifact(artifact)
        return
    run._log_artifact(artifact, is_user_created=True, use_after_commit=True)


def declare_dataset(run, experiment: Experiment, digest: str, folder: Path) -> None:
    """A trial's `use_dataset`, never failing the trial: a problem is one warning."""
    try:
        use_dataset(run, dataset_artifact(experiment, digest, folder))
    except Exception as err:  # W&B degrades, never fails the trial
        _warn(f"the dataset artifact was not declared ({type(err).__name__}: {err})")


def log_dataset(settings: WandbSettings, experiment: Experiment, digest: str) -> None:
    """Driver side, before the first stage: the dataset artifact, logged by one run of job type
    `data` (a resumed study continues that run; the same content adds no version)."""
    with tempfile.TemporaryDirectory() as scratch:
        run = None
        try:
            run = start_run(settings, "data", "data", {"data_digest": digest}, Path(scratch))
            artifact = dataset_artifact(experiment, digest, Path(scratch))
            run.log_artifact(artifact)
        except Exception as err:
            _warn(f"the dataset artifact was not logged ({type(err).__name__}: {err})")
        finally:
            finish_run(run, None if settings.dir else experiment)


def log_models(
    settings: WandbSettings, experiment: Experiment, results: list[dict], digest: str | None
) -> None:
    """Driver side, after the final stage: each given final trial's best.pt as a `model`
    artifact `<experiment>-<strategy>`, logged by one run of job type `models` that uses the
    dataset artifact (lineage: data -> models run -> model; each model names its trial and
    that trial's run id). Not into the trial's own run: resumed offline, that run's second
    file would hold an empty summary, which `wandb sync` uploads over the trial's.

    Args:
        results: the trials' stored results (`Experiment.read_result`), one per strategy.
        digest: the data's fingerprint digest (None: no dataset to declare).
    """
    with tempfile.TemporaryDirectory() as scratch:
        run = None
        try:
            run = start_run(settings, "models", "models", {"trials": len(results)}, Path(scratch))
            if digest:
                use_dataset(run, dataset_artifact(experiment, digest, Path(scratch)))
            artifacts = [
                _log_model(run, settings, experiment, result, Path(scratch)) for result in results
            ]
            if run.settings.mode != "offline":
                for artifact in artifacts:
                    artifact.wait()  # uploaded before the temporary copies go
        except Exception as err:
            _warn(f"the models were not logged ({type(err).__name__}: {err})")
        finally:
            finish_run(run, None if settings.dir else experiment)


def _log_model(run, settings: WandbSettings, experiment: Experiment, result: dict, scratch: Path):
    name = result["trial_name"]
    local = scratch / name / BEST
    experiment.store.download(experiment.checkpoint("final", name, BEST), local)
    artifact = _model_artifact(experiment, result, local, wandb_run_id(settings, "final", name))
    return run.log_artifact(artifact, aliases=["latest", f"seed{result['seed']}"])


def _model_artifact(experiment: Experiment, result: dict, checkpoint: Path, run_id: str):
    import wandb

    val, test = result.get("val", {}), result.get("test", {})
    artifact = wandb.Artifact(
        artifact_name(f"{experiment.name}-{result['strategy']}"),
        type="model",
        description=f"best.pt of {result['trial_name']}: the best seed of strategy "
        f"{result['strategy']} by validation Dice",
        metadata={
            "strategy": result["strategy"],
            "seed": result["seed"],
            "trial_name": result["trial_name"],
            "run_id": run_id,  # the W&B run of the trial that trained it
            "trainable_params": result.get("trainable_params"),
            "val_dice": val.get("dice"),
            "test_dice": test.get("dice"),
        },
    )
    artifact.add_file(str(checkpoint), name=BEST)
    return artifact


def _warn(message: str) -> None:
    print(f"warning: W&B: {message}", file=sys.stderr, flush=True)
