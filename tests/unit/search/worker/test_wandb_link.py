"""W&B runs of trials, read back from their offline run files: one run id per stage and trial;
the tags a team filters by; per-epoch metrics against `epoch` with the best validation Dice as
the summary (not the last); the per-image test table; the dataset artifact as every trial's
input; system metrics where asked; the driver's dataset run and model artifacts."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from wandb_records import read_runs

from search.experiment.folder import Experiment
from search.shared.spec import WandbSettings
from search.worker.wandb_artifacts import dataset_name, declare_dataset, log_dataset, log_models
from search.worker.wandb_link import (
    define_epoch_metrics,
    finish_run,
    log_epoch,
    log_per_image,
    log_summary,
    run_tags,
    short_tag,
    start_run,
    system_metrics_on,
    wandb_run_id,
)
from trainables.core.config import TrialConfig
from trainables.core.files import BEST

FINGERPRINT = {"samples": {"a.png": "d1", "b.png": "d2", "c.png": "d3"}, "split": {"train": ["a.png"], "val": ["b.png"], "test": ["c.png"]}}  # fmt: skip


@pytest.fixture
def wandb_teardown():
    """W&B keeps process-wide state (its service, its folder): each test gets fresh ones."""
    import wandb

    wandb.teardown()
    yield
    wandb.teardown()


def written_runs(folder):
    """The offline runs under `folder`, read once W&B's service has ended: it may still be
    writing a run file when `finish()` returns."""
    import wandb

    wandb.teardown()
    return read_runs(folder)


def offline(tmp_path, **kwargs) -> WandbSettings:
    return WandbSettings(mode="offline", project="p", group="g", dir=str(tmp_path), **kwargs)


def experiment_with_data(tmp_path) -> Experiment:
    experiment = Experiment(str(tmp_path / "runs"), "exp")
    experiment.write_data_fingerprint(FINGERPRINT)
    return experiment


def test_a_final_trial_and_the_pretrain_trial_of_one_name_get_two_wandb_runs(tmp_path):
    """`all__seed0` is the pretrain stage's trial and, with strategy `all` in the final grid,
    a final trial: two runs, not one resumed by the other."""
    settings = WandbSettings(mode="offline", project="p", group="demo", experiment_id="x1")
    ids = {stage: wandb_run_id(settings, stage, "all__seed0") for stage in ("pretrain", "final")}
    assert ids["pretrain"] != ids["final"]
    assert wandb_run_id(settings, "final", "all__seed0") == ids["final"]  # stable on resume


def test_tags_name_stage_strategy_share_encoder_mask_and_recipe_within_64_characters():
    assert run_tags("final", "decoder", 0.1, "best") == (
        "final",
        "decoder",
        "train_fraction:0.1",
        "encoder:mobilenet_v2",
        "mask:mobilenet_v2:dec0-4",
        "recipe:best",
    )
    explore = run_tags("explore", "resnet18:enc0-1+dec3+head", 1.0, "explore")
    assert "encoder:resnet18" in explore and "mask:resnet18:enc0-1+dec3+head" in explore
    # Two masks alike in their first 64 characters keep two tags of at most 64.
    long_a, long_b = "mask:" + "x" * 70 + "a", "mask:" + "x" * 70 + "b"
    assert len(short_tag(long_a)) == len(short_tag(long_b)) == 64
    assert short_tag(long_a) != short_tag(long_b)
    assert short_tag("final") == "final"


def test_a_trial_run_keeps_its_best_validation_dice_tags_table_and_dataset(
    tmp_path, wandb_teardown
):
    """A planted run whose last epoch (0.6) is below its best (0.8): the run file W&B syncs
    holds val_dice's summary as the best, every epoch metric against `epoch`, the final
    summary, the per-image table, and the dataset artifact marked as the run's input."""
    experiment = experiment_with_data(tmp_path)
    cfg = TrialConfig(strategy="decoder", train_fraction=0.1)
    tags = run_tags("final", cfg.strategy, cfg.train_fraction, "best")
    config = cfg.model_dump(mode="json")
    run = start_run(offline(tmp_path), "final", cfg.run_name, config, tmp_path, tags)
    define_epoch_metrics(run)
    declare_dataset(run, experiment, "ab" * 20, tmp_path)
    for epoch, dice in ((1, 0.5), (2, 0.8), (3, 0.6)):
        log_epoch(
            run, {"epoch": epoch, "val_dice": dice, "val_iou": dice / 2, "train_loss": 1 / epoch}
        )
    # The final metrics: val_iou of the best epoch (0.4), not the last's (0.3).
    summary = {"val_dice": 0.8, "val_iou": 0.4, "test_dice": 0.7, "train_images": 56}
    log_summary(run, summary, {"trainable_params": 4_404_928, "total_params": 6_628_945})
    rows = pd.DataFrame({"image": ["c.png", "d.png"], "dice": [0.9, float("nan")]})
    log_per_image(run, rows)
    finish_run(run, None)

    (recorded,) = written_runs(tmp_path / "wandb")
    assert recorded.job_type == "final"
    assert set(tags) <= set(recorded.tags) and "mask:mobilenet_v2:dec0-4" in recorded.tags
    assert recorded.summary["val_dice"] == {"max": 0.8}  # the best epoch, not the last (0.6)
    assert recorded.summary["train_loss"] == {"min": pytest.approx(1 / 3)}
    assert recorded.summary["val_iou"] == 0.4 and recorded.summary["test_dice"] == 0.7
    assert recorded.summary["train_images"] == 56
    assert recorded.config["trainable_params"] == 4_404_928
    assert recorded.metrics["val_dice"].step_metric == "epoch"
    assert recorded.metrics["*"].step_metric == "epoch"  # every other per-epoch metric
    assert {"epoch", "val_dice", "test_per_image"} <= recorded.history_keys
    assert recorded.summary["test_per_image"]["_type"] == "table-file"
    assert recorded.summary["test_per_image"]["nrows"] == 2
    (table,) = [a for a in recorded.artifacts if a.type == "run_table"]
    assert table.name.endswith("test_per_image")
    (dataset,) = [a for a in recorded.artifacts if a.type == "dataset"]
    assert dataset.name == dataset_name("ab" * 20) == "data-abababababababab"
    assert dataset.use_after_commit  # an input of this run once `wandb sync` commits it
    assert json.loads(dataset.metadata)["images"] == 3


def test_the_same_fingerprint_makes_the_same_dataset_content(tmp_path, wandb_teardown):
    """Every writer's draft of one experiment's data has one digest: W&B keeps one version."""
    from search.worker.wandb_artifacts import dataset_artifact

    experiment = experiment_with_data(tmp_path)
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    first = dataset_artifact(experiment, "ab" * 20, tmp_path / "a")
    second = dataset_artifact(experiment, "ab" * 20, tmp_path / "b")
    assert first.digest == second.digest
    experiment.write_data_fingerprint({**FINGERPRINT, "split": {"train": ["b.png"]}})
    assert dataset_artifact(experiment, "cd" * 20, tmp_path / "a").digest != first.digest


@pytest.mark.parametrize(("setting", "expected"), [("auto", True), ("on", True), ("off", False)])
def test_system_metrics_follow_the_setting(tmp_path, wandb_teardown, setting, expected):
    """`auto` is on: measured on a CPU, W&B's sampling cost no wall time (README)."""
    settings = offline(tmp_path, system_metrics=setting)
    assert system_metrics_on(settings) is expected
    run = start_run(settings, "tune", "t", {}, tmp_path, system_metrics=expected)
    try:
        assert run.settings.x_disable_stats is (not expected)
    finally:
        finish_run(run, None)


def test_the_driver_logs_the_dataset_once_and_the_best_models_in_a_run_that_uses_it(
    tmp_path, wandb_teardown
):
    """log_dataset: a run of job type `data` that logs (not uses) the dataset artifact;
    log_models: a run of job type `models` that uses it and logs each best.pt as a `model`
    artifact naming its trial and that trial's run."""
    experiment = experiment_with_data(tmp_path)
    settings = offline(tmp_path, experiment_id="e1")
    log_dataset(settings, experiment, "ab" * 20)
    results = []
    for strategy, seed in (("decoder", 1), ("mobilenet_v2:dec3+head", 0)):
        name = f"{strategy.replace(':', '_').replace('+', '.')}__seed{seed}"
        checkpoint = tmp_path / f"{name}.pt"
        checkpoint.write_bytes(name.encode())
        experiment.store.upload(checkpoint, experiment.checkpoint("final", name, BEST))
        result = {"trial_name": name, "strategy": strategy, "seed": seed}
        results.append(result | {"val": {"dice": 0.8}, "test": {"dice": 0.7}})
    log_models(settings, experiment, results, "ab" * 20)

    runs = {run.job_type: run for run in written_runs(tmp_path / "wandb")}
    (data,) = runs["data"].artifacts
    assert data.type == "dataset" and data.name == dataset_name("ab" * 20)
    assert not data.use_after_commit  # logged by the data run, used by the others
    used, *models = runs["models"].artifacts
    assert used.type == "dataset" and used.use_after_commit and used.digest == data.digest
    assert [(m.type, m.name) for m in models] == [
        ("model", "exp-decoder"),
        ("model", "exp-mobilenet_v2-dec3_head"),
    ]
    assert all([entry.path for entry in m.manifest.contents] == [BEST] for m in models)
    metadata = json.loads(models[0].metadata)
    assert metadata["val_dice"] == 0.8 and metadata["trial_name"] == "decoder__seed1"
    assert metadata["run_id"] == wandb_run_id(settings, "final", "decoder__seed1")
    assert "seed1" in models[0].aliases


def test_read_run_replays_one_file(tmp_path, wandb_teardown):
    """The reader itself: a run's summary is the last value each key was given."""
    run = start_run(offline(tmp_path), "tune", "t", {"lr": 0.01}, tmp_path, ("tune",))
    run.summary.update({"x": 1})
    run.summary.update({"x": 2})
    finish_run(run, None)
    (recorded,) = written_runs(tmp_path / "wandb")
    assert recorded.summary["x"] == 2 and recorded.tags == ["tune"]
    assert recorded.config["lr"] == 0.01
