"""Clinical evaluation end to end: a trial's raw and post-processed metrics in metrics.json, its
per-image table, trials.csv and the experiment folder; `python -m trainables.evaluate` scoring
the same checkpoint every way; `python -m trainables.predict` with the same post-processing."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from search.driver.config import load_config
from search.driver.stages.common import StageRunner
from search.driver.trials_table import COLUMNS, TrialsTable
from search.experiment.folder import Experiment
from search.shared.spec import FINISHED, summary_metrics
from search.worker.files import TrialFiles
from trainables.core.files import TEST_PER_IMAGE
from trainables.evaluate import main as evaluate_main
from trainables.evaluation.evaluate import SUMMARY_COLUMNS
from trainables.nets.resolve import load_trial_config
from trainables.training.run import run_trial

SMOKE = Path(__file__).parents[1] / "configs" / "smoke.yaml"
CLINICAL_KEYS = {
    "dice_median",
    "hd95_mm",
    "hc_abs_diff_mm_median",
    "hc_abs_diff_mm_p90",
    "hc_signed_diff_mm",
    "hc_fail_rate",
}
SETTINGS = ["image_size=32", "epochs=1", "max_images=None", "postprocess=ellipse", "tta=true"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, dict]:
    """One tiny trial on the shipped sample with ellipse post-processing and flip TTA."""
    from trainables.data.arrays import default_data_dir

    out = tmp_path_factory.mktemp("trial") / "decoder__seed0"
    cfg = load_trial_config(SMOKE, [f"data_dir={default_data_dir()}", *SETTINGS])
    return out, run_trial(cfg, out, verbose=False)


def test_raw_and_postprocessed_metrics_land_in_metrics_json(trained):
    out, metrics = trained
    stored = json.loads((out / "metrics.json").read_text())
    for side in ("val", "test"):
        keys = set(stored[side])
        assert keys >= CLINICAL_KEYS and {f"raw_{k}" for k in CLINICAL_KEYS} <= keys
        assert {"dice", "raw_dice", "hc_fail_mm"} <= keys
    assert stored["config"]["postprocess"] == "ellipse" and stored["config"]["tta"] is True
    rows = pd.read_csv(out / TEST_PER_IMAGE)
    assert len(rows) == metrics["split_sizes"]["test"]
    ellipse = ["center_x_mm", "center_y_mm", "semi_axes_a_mm", "semi_axes_b_mm", "angle_rad"]
    expected = {"filename", "pixel_size_mm", "dice", "raw_dice", "hd95_mm", "hc_signed_diff_mm"}
    assert expected | set(ellipse) | {f"ref_{k}" for k in ellipse} <= set(rows)
    assert rows["dice"].mean() == pytest.approx(metrics["test"]["dice"])
    assert rows["raw_dice"].mean() == pytest.approx(metrics["test"]["raw_dice"])


def test_raw_and_postprocessed_metrics_land_in_trials_csv_and_the_experiment(trained, tmp_path):
    out, metrics = trained
    cfg = load_config(None, ["search.strategies=[decoder]", "search.seeds=[0]"])
    experiment = Experiment(str(tmp_path), "exp")
    spec = StageRunner(cfg, experiment, "disabled").spec("final", strategy="decoder", seed=0)
    result = {**summary_metrics(metrics), FINISHED: True, "epoch": 1}
    trial = SimpleNamespace(config={"spec": spec.to_param()}, trial_id="t0", last_result=result)
    table = TrialsTable(experiment, "final", expected=1)
    table.setup()
    table.on_trial_result(0, [], trial, result)
    table.on_trial_complete(0, [], trial)
    row = experiment.read_trials().iloc[0]
    for key in ("test_dice", "test_raw_dice", "test_hc_fail_rate", "test_raw_hc_fail_rate"):
        assert key in COLUMNS
        assert row[key] == pytest.approx(metrics["test"][key.removeprefix("test_")])
    assert row["test_hd95_mm"] == pytest.approx(metrics["test"]["hd95_mm"])

    # The worker stores the per-image table beside the result, in the experiment folder.
    files = TrialFiles(spec)
    files.workdir.mkdir(parents=True)
    (files.workdir / TEST_PER_IMAGE).write_bytes((out / TEST_PER_IMAGE).read_bytes())
    files.finish(dict(metrics))
    stored = experiment.read_per_image("final", spec.name)
    assert stored is not None and len(stored) == metrics["split_sizes"]["test"]
    assert (tmp_path / "exp" / "results" / "final" / f"{spec.name}.test_per_image.csv").is_file()
    assert experiment.read_per_image("final", "nobody__seed0") is None
    files.cleanup()


def test_evaluate_cli_scores_one_checkpoint_every_way(trained, tmp_path, capsys):
    out, metrics = trained
    table, per_image = tmp_path / "evaluation.csv", tmp_path / "per_image"
    command = ["--checkpoint", str(out / "best.pt"), "--out", str(table), "--device", "cpu"]
    command += ["--postprocess", "none", "largest", "ellipse", "--tta", "off", "on"]
    assert evaluate_main([*command, "--per-image", str(per_image)]) == 0
    assert "ellipse" in capsys.readouterr().out
    rows = pd.read_csv(table)
    assert len(rows) == 6 and set(rows["postprocess"]) == {"none", "largest", "ellipse"}
    assert {f"raw_{key}" for key in SUMMARY_COLUMNS} <= set(rows)
    for _, group in rows.groupby("tta"):  # one network output per TTA setting
        assert group["raw_dice"].nunique() == 1
        none = group[group["postprocess"] == "none"].iloc[0]
        assert none["dice"] == none["raw_dice"]
    # The trial's own setting (tta on, ellipse) reproduces its test metrics.
    own = rows[rows["tta"] & (rows["postprocess"] == "ellipse")].iloc[0]
    assert own["dice"] == pytest.approx(metrics["test"]["dice"], abs=1e-6)
    assert own["hc_fail_rate"] == pytest.approx(metrics["test"]["hc_fail_rate"])
    assert len(list(per_image.glob("*.csv"))) == 6


def test_evaluate_cli_rejects_a_missing_checkpoint(tmp_path, capsys):
    missing = ["--checkpoint", str(tmp_path / "none.pt"), "--out", str(tmp_path / "x.csv")]
    code = evaluate_main(missing)
    assert code == 2 and "is not a file" in capsys.readouterr().err


def test_predict_applies_the_trials_postprocessing(trained, tmp_path, capsys):
    from trainables.data.arrays import default_data_dir
    from trainables.predict import main as predict_main

    out, _ = trained
    command = ["--checkpoint", str(out / "best.pt"), "--data", str(default_data_dir())]
    command += ["--device", "cpu"]
    assert predict_main([*command, "--out", str(tmp_path / "own.csv")]) == 0
    assert "postprocess ellipse, tta on" in capsys.readouterr().out
    raw = [*command, "--out", str(tmp_path / "raw.csv"), "--postprocess", "none", "--tta", "off"]
    assert predict_main(raw) == 0
    assert "postprocess none, tta off" in capsys.readouterr().out
    own, plain = pd.read_csv(tmp_path / "own.csv"), pd.read_csv(tmp_path / "raw.csv")
    assert list(own.columns)[:6] == [
        "filename",
        "center_x_mm",
        "center_y_mm",
        "semi_axes_a_mm",
        "semi_axes_b_mm",
        "angle_rad",
    ]
    assert len(own) == len(plain) == 12
