"""W&B runs of trials: one run id per stage and trial, and the training-set share carried as a
tag, a config key and a summary value."""

from __future__ import annotations

from trainables.core.config import TrialConfig


def test_a_final_trial_and_the_pretrain_trial_of_one_name_get_two_wandb_runs(tmp_path):
    """`all__seed0` is the pretrain stage's trial and, with strategy `all` in the final grid,
    a final trial: two runs, not one resumed by the other."""
    from search.shared.spec import WandbSettings
    from search.worker.wandb_link import wandb_run_id

    settings = WandbSettings(mode="offline", project="p", group="demo", experiment_id="x1")
    ids = {stage: wandb_run_id(settings, stage, "all__seed0") for stage in ("pretrain", "final")}
    assert ids["pretrain"] != ids["final"]
    assert wandb_run_id(settings, "final", "all__seed0") == ids["final"]  # stable on resume


def test_wandb_run_carries_the_share_as_tag_config_and_summary(tmp_path):
    """An offline trial run: the `train_fraction:0.1` tag, the config key and the
    `train_images` summary are in the run file W&B syncs later."""
    from search.shared.spec import WandbSettings
    from search.worker.wandb_link import finish_run, run_tags, start_run

    settings = WandbSettings(mode="offline", project="p", group="g", dir=str(tmp_path))
    cfg = TrialConfig(strategy="decoder", train_fraction=0.1)
    tags = run_tags("final", cfg.strategy, cfg.train_fraction)
    assert tags == ("final", "decoder", "train_fraction:0.1")
    import wandb

    run = start_run(settings, "final", cfg.run_name, cfg.model_dump(mode="json"), tmp_path, tags)
    try:
        run.summary.update({"train_images": 56})
        finish_run(run, None)
    finally:
        wandb.teardown()  # W&B keeps process-wide settings (its folder): later tests get fresh ones
    (record,) = tmp_path.glob("wandb/offline-run-*/run-*.wandb")
    data = record.read_bytes()
    for text in (b"train_fraction:0.1", b"train_fraction", b"train_images", b"decoder__f10__seed0"):
        assert text in data, text
