"""The report's clinical section on a hand-made experiment with per-image test tables.

tests/data/report/exp_clinical: decoder, all, decoder_4 x seeds 0, 1, six test images of the
shipped sample. Per-image Dice (seed 0 / seed 1):
  decoder    .97 .96 .95 .93 .90 .40  /  .96 .97 .94 .92 .91 .50   mean .8592 (best)
  all        .95 .95 .93 .90 .85 .60  /  .94 .93 .92 .91 .86 .55   mean .8575
  decoder_4  .90 .88 .85 .80 .70 .00  /  .91 .87 .86 .82 .72 .10   mean .7008
HC error, predicted - reference (mm); decoder_4 seed 0 predicts nothing on its last image:
  decoder    +1 -2 +3 -4 +12 +40      /  -1.5 +2.5 +2 -3 +8 +30
  decoder_4  +5 -8 +9 -12 +20 (empty) /  +6 -7 +10 -11 +25 +60
By hand, decoder: seed 0 mean |error| 62/6 = 10.333, median 3.5, P90 12 + 0.5 * 28 = 26,
failures 2/6, bias 50/6; seed 1: 47/6 = 7.833, median 2.75, P90 8 + 0.5 * 22 = 19, failures 1/6,
bias 38/6 -> over seeds 9.083, 3.125, 22.5, 25%, 7.333. decoder_4 seed 0 fails 3 of 6 images at
10 mm and still 1 (the empty prediction) at 1000 mm. Paired per image (seed means): every
decoder_4 image is below decoder's, so the exact Wilcoxon p is 2/2^6 = 0.03125; Holm over the two
strategies compared with decoder doubles the smaller p: 0.0625. That test is shown for reference;
the verdict is the report's rule (`stats.SEPARATION_RULE`): with 2 seeds, the bootstrap over
seeds and images, which separates decoder_4 (every image below, by 0.01 to 0.45) and not all.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from helpers import DATA
from scipy import stats

from search.report import build_report
from search.report import clinical as report_clinical
from search.report import stats as report_stats
from search.report.__main__ import main as report_main
from search.report.load import load_results
from search.shared.metrics import get_metric

EXP = DATA / "report" / "exp_clinical"
STRATEGIES = ["decoder", "all", "decoder_4"]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    out = tmp_path_factory.mktemp("report")
    assert report_main([str(EXP), "--out", str(out)]) == 0
    return out, pd.read_csv(out / "strategies.csv").set_index("strategy")


def seed_means(strategy: str, column: str) -> pd.Series:
    """Each test image's `column` averaged over the strategy's two seeds, by filename."""
    tables = [
        pd.read_csv(EXP / "results" / "final" / f"{strategy}__seed{seed}.test_per_image.csv")
        for seed in (0, 1)
    ]
    return (tables[0].set_index("filename")[column] + tables[1].set_index("filename")[column]) / 2


def test_clinical_figures_per_strategy_match_hand_computation(built):
    _, table = built
    decoder = table.loc["decoder"]
    expected = {
        "hc_abs_diff_mm": (62 / 6 + 47 / 6) / 2,
        "hc_abs_diff_mm_median": (3.5 + 2.75) / 2,
        "hc_abs_diff_mm_p90": (26 + 19) / 2,
        "hc_fail_rate": (2 / 6 + 1 / 6) / 2,
        "hc_signed_diff_mm": (50 / 6 + 38 / 6) / 2,
        "dice": (5.11 / 6 + 5.20 / 6) / 2,
        "dice_median": (0.94 + 0.93) / 2,
    }
    for key, value in expected.items():
        assert decoder[f"clinical_{key}_mean"] == pytest.approx(value), key
    assert decoder["clinical_seeds"] == 2 and decoder["clinical_images"] == 6
    # The post-processing gain: the hand-made raw Dice is one point lower on every image.
    assert decoder["clinical_dice_mean"] - decoder["clinical_raw_dice_mean"] == pytest.approx(0.01)


def test_the_failure_rate_counts_empty_predictions(tmp_path):
    results = load_results(str(EXP))
    long = report_clinical.per_image_long(results.trials, results.per_image)
    seed0 = long[long["trial_name"] == "decoder_4__seed0"]
    assert report_clinical.trial_summary(seed0, 10.0)["hc_fail_rate"] == pytest.approx(3 / 6)
    assert report_clinical.trial_summary(seed0, 1000.0)["hc_fail_rate"] == pytest.approx(1 / 6)
    # The CLI's --hc-fail-mm reaches the table and its header.
    assert report_main([str(EXP), "--out", str(tmp_path), "--hc-fail-mm", "1000"]) == 0
    table = pd.read_csv(tmp_path / "strategies.csv").set_index("strategy")
    assert table.loc["decoder_4", "clinical_hc_fail_rate_mean"] == pytest.approx((1 / 6 + 0) / 2)
    assert "Failures > 1000 mm (%)" in (tmp_path / "report.md").read_text()


def holm_of_two(p_values: dict[str, float]) -> dict[str, float]:
    """Holm for m = 2: the smaller p doubles; the larger stays, but not below the former."""
    low, high = sorted(p_values.values())
    return {
        name: min(1.0, 2 * low) if p == low else max(min(1.0, 2 * low), high)
        for name, p in p_values.items()
    }


def test_wilcoxon_and_holm_match_scipy_on_the_hand_made_table(built):
    _, table = built
    best = seed_means("decoder", "dice")
    wilcoxon = {}
    for name in ("all", "decoder_4"):
        mine = seed_means(name, "dice")
        wilcoxon[name] = stats.wilcoxon(best, mine[best.index]).pvalue
        assert table.loc[name, "p_wilcoxon_vs_best"] == pytest.approx(wilcoxon[name], rel=1e-9)
        assert table.loc[name, "n_images_paired"] == 6
    assert wilcoxon["decoder_4"] == pytest.approx(2 / 2**6)
    # Holm over the m = 2 strategies compared with decoder.
    for name, value in holm_of_two(wilcoxon).items():
        assert table.loc[name, "p_wilcoxon_vs_best_holm"] == pytest.approx(value, rel=1e-9)
    assert table.loc["decoder_4", "p_wilcoxon_vs_best_holm"] == pytest.approx(0.0625)
    # The rule's comparison (2 seeds: the bootstrap), Holm-corrected the same way; it decides.
    rule_p = table.loc[["all", "decoder_4"], "p_value_vs_best"].to_dict()
    for name, value in holm_of_two(rule_p).items():
        assert table.loc[name, "p_value_vs_best_holm"] == pytest.approx(value, rel=1e-9)
        assert table.loc[name, "test_vs_best"] == "bootstrap (2+2 seeds, 6 images)"
    assert (
        table.loc["decoder_4", "p_value_vs_best_holm"]
        < 0.05
        < table.loc["all", "p_value_vs_best_holm"]
    )
    assert table.loc["decoder_4", "separated_from_best"]
    assert not table.loc["all", "separated_from_best"]


def test_holm_by_hand():
    adjusted = report_clinical.holm([0.01, np.nan, 0.04, 0.03])
    # m = 3: 0.01 * 3 = 0.03; 0.03 * 2 = 0.06; 0.04 * 1 = 0.04 -> raised to 0.06.
    assert adjusted[[0, 2, 3]].tolist() == pytest.approx([0.03, 0.06, 0.06])
    assert np.isnan(adjusted[1])


def test_report_shows_the_clinical_tables_and_figures(built):
    out, _ = built
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "## Clinical measurement (test images)" in md
    assert "| decoder | 2 | 85.92 ± 1.06 | 93.50 ± 0.71 | 9.08 ± 1.77 | 3.12 ± 0.53 |" in md
    assert (
        "| decoder_4 | yes | 0.001 | bootstrap (2+2 seeds, 6 images) | 6 | 0.0312 | 0.0625 |" in md
    )
    assert "| all | no | 0.826 | bootstrap (2+2 seeds, 6 images) | 6 |" in md
    assert "Bland-Altman, decoder: bias +7.33 mm" in md
    assert "![Worst test images of decoder](worst_images.png)" in md
    assert (out / "bland_altman.png").stat().st_size > 0


def colour_pixels(image: np.ndarray, rgb: tuple[int, int, int]) -> int:
    """Pixels close to a saturated colour (a grey ultrasound image has none of its own)."""
    pixels = image[..., :3].astype(float) * (255 if image.dtype != np.uint8 else 1)
    close = np.abs(pixels - np.array(rgb, dtype=float)).max(axis=-1) < 90
    return int(close.sum())


def test_worst_images_png_shows_reference_and_prediction_outlines(built):
    out, _ = built
    image = matplotlib.image.imread(out / "worst_images.png")
    assert image.shape[1] == 2100  # 7 in at 300 dpi
    green, magenta = colour_pixels(image, (0, 255, 0)), colour_pixels(image, (255, 0, 255))
    # Five panels, each with two ellipses a few pixels thick and ~1000 px around.
    assert green > 5 * 1000 and magenta > 5 * 1000, (green, magenta)
    gray = matplotlib.image.imread(
        Path(report_clinical.default_data_dir()) / "training_set" / "731_HC.png"
    )
    assert colour_pixels(np.dstack([gray] * 3), (0, 255, 0)) == 0


def test_unreachable_data_folder_skips_the_figure_with_a_note(tmp_path):
    result = build_report(str(EXP), out_dir=str(tmp_path), data_dir=str(tmp_path / "nowhere"))
    assert not (tmp_path / "worst_images.png").exists()
    assert (tmp_path / "bland_altman.png").exists()
    assert any("Worst test images not drawn" in note for note in result.notes)
    assert "Worst test images not drawn" in (tmp_path / "report.md").read_text()


def test_experiment_without_per_image_tables_says_so(tmp_path):
    exp = shutil.copytree(EXP, tmp_path / "exp")
    shutil.rmtree(exp / "results")
    result = build_report(str(exp), out_dir=str(tmp_path / "out"))
    md = (tmp_path / "out" / "report.md").read_text()
    assert "No per-image test results in this experiment" in md
    assert result.table["clinical_seeds"].eq(0).all()
    assert not (tmp_path / "out" / "bland_altman.png").exists()


def test_a_failure_rate_column_ranks_lower_is_better():
    trials = pd.read_csv(EXP / "trials.csv").assign(
        test_hc_fail_rate=[0.2, 0.1, 0.3, 0.25, 0.5, 0.35]
    )
    metric = get_metric("test_hc_fail_rate", trials)
    assert not metric.higher_is_better
    table = report_stats.strategy_stats(trials, metric).set_index("strategy")
    assert table.loc["decoder", "rank"] == 1 and table.loc["decoder_4", "rank"] == 3
