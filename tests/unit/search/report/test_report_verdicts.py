"""One rule for "separated from the best" (`stats.SEPARATION_RULE`): the table, the notes, the
plots and the clinical section give the same verdict; intervals stay inside the metric's range.

The experiment below has 2 seeds x 40 test images, and per-image Dice (by construction):
  decoder        the best: each image's difficulty d_i in [0.90, 0.995], +-0.005 by seed, plus
                 noise (+-0.002)
  decoder_2_3_4  decoder's image minus 0.02 (+-0.002): a large, consistent per-image difference
  all            decoder's image plus noise (sd 0.01) centred 0.0005 below: no real difference
Pixel accuracy lies within 0.0002 of 1 and HD within 0.02-0.6 mm, where a t-interval over 2 seeds
(t(0.975, 1) = 12.7) runs past 100% and below 0 mm.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from scoring import results_table

from search.report import build_report, interactive
from search.report import plots as report_plots
from search.report import stats as report_stats
from search.report.bootstrap import PerImage
from search.shared.metrics import METRICS, get_metric, value_range

STRATEGIES = ["decoder", "decoder_2_3_4", "all"]
PARAMS = {"decoder": 4_404_928, "decoder_2_3_4": 164_032, "all": 6_628_945}
IMAGES = [f"{k:03d}_HC.png" for k in range(40)]


def per_image_scores(seeds=(0, 1)) -> dict[tuple[str, int], pd.DataFrame]:
    rng = np.random.default_rng(7)
    difficulty = rng.uniform(0.90, 0.995, len(IMAGES))
    shift = rng.normal(0, 0.01, len(IMAGES))
    shift += -0.0005 - shift.mean()
    tables = {}
    for seed in seeds:
        offset = 0.005 if seed % 2 else -0.005  # seed to seed, as training runs differ
        best = np.minimum(difficulty + offset + rng.uniform(-0.002, 0.002, len(IMAGES)), 0.9995)
        dice = {
            "decoder": best,
            "decoder_2_3_4": best - 0.02 + rng.uniform(-0.002, 0.002, len(IMAGES)),
            "all": np.clip(best + shift, 0, 1),
        }
        for name, values in dice.items():
            tables[name, seed] = results_table(IMAGES, values)
    return tables


def write_experiment(folder, seeds=(0, 1)):
    """An experiment folder: config, trials table and per-image tables of the final stage."""
    tables = per_image_scores(seeds)
    (folder / "results" / "final").mkdir(parents=True)
    rows = []
    for (name, seed), table in tables.items():
        trial = f"{name}__seed{seed}"
        table.to_csv(folder / "results" / "final" / f"{trial}.test_per_image.csv", index=False)
        rows.append(
            {
                "stage": "final",
                "strategy": name,
                "seed": seed,
                "trial_name": trial,
                "status": "ok",
                "trainable_params": PARAMS[name],
                "total_params": 6_628_945,
                "epochs": 3,
                "wall_s": 60.0,
                "val_dice": table["dice"].mean(),
                **{m: table[m.removeprefix("test_")].mean() for m in METRICS},
                "lr": 1e-4,
                "lr_schedule": "exponential",
                "lr_gamma": 0.9,
                "recipe": "paper",
            }
        )
    pd.DataFrame(rows).to_csv(folder / "trials.csv", index=False)
    (folder / "config.yaml").write_text(
        "trial: {strategy: decoder, encoder_weights: imagenet, data_dir: /nowhere}\n"
        f"search: {{name: verdicts, stages: [final], strategies: {STRATEGIES}, "
        f"seeds: {list(seeds)}}}\n"
    )
    return folder


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    exp = write_experiment(tmp_path_factory.mktemp("exp"))
    out = tmp_path_factory.mktemp("out")
    return build_report(str(exp), out_dir=str(out)), out


def test_two_seeds_table_notes_plot_and_clinical_give_one_verdict(report):
    result, out = report
    csv = pd.read_csv(out / "strategies.csv").set_index("strategy")
    separated = csv["separated_from_best"].to_dict()
    # The large consistent difference is separated, the noise is not: per the rule, by images.
    assert csv.index[0] == "decoder"
    assert separated == {"decoder": np.nan, "decoder_2_3_4": True, "all": False} or (
        separated["decoder_2_3_4"] and not separated["all"] and pd.isna(separated["decoder"])
    )
    assert csv.loc["decoder_2_3_4", "test_vs_best"] == "bootstrap (2+2 seeds, 40 images)"
    assert (
        csv.loc["all", "p_value_vs_best_holm"]
        > 0.05
        > csv.loc["decoder_2_3_4", "p_value_vs_best_holm"]
    )

    md = (out / "report.md").read_text(encoding="utf-8")
    notes = next(n for n in result.notes if "Pareto front on the means" in n)
    plotted = report_plots.plotted(result.table, get_metric("test_dice")).set_index("strategy")
    fig = report_plots.pareto_figure(result.table, get_metric("test_dice"))
    ring = next(
        line for line in fig.axes[0].get_lines() if line.get_label() == report_plots.TIED_LABEL
    )
    ringed = {plotted.index[plotted["params"] == x][0] for x in ring.get_xdata()}
    report_plots.plt.close(fig)
    html_fig = interactive.plotly_pareto(result.table, get_metric("test_dice"))  # report.html's
    hovered = {
        name: data[3]
        for trace in html_fig.data
        if trace.mode == "markers" and trace.hoverinfo != "skip"
        for name, data in zip(trace.text, trace.customdata, strict=True)
    }
    html_ring = next(t for t in html_fig.data if t.name == report_plots.TIED_LABEL)
    html_ringed = {plotted.index[plotted["params"] == x][0] for x in html_ring.x}
    for name, apart in (("decoder_2_3_4", True), ("all", False)):
        word = "separated" if apart else "not separated"
        assert re.search(rf"\| {name} \|.*: {word} \(bootstrap", md), name  # the table
        found = re.search(r"Separated from the best: ([^.]*)\.", notes)
        assert (name in found.group(1)) is apart, notes  # the notes
        assert plotted.loc[name, "verdict"] == word  # the plot's data
        assert (name in ringed) is not apart  # the ring: best and not separated from it
        assert hovered[name] == word and (name in html_ringed) is not apart  # the HTML's plot
        clinical = f"| {name} | {'yes' if apart else 'no'} |"  # the clinical paired table
        assert sum(line.startswith(clinical) for line in md.splitlines()) == 1, clinical
    assert "decoder" in ringed


def test_no_interval_leaves_the_metric_range(report):
    result, out = report
    csv = pd.read_csv(out / "strategies.csv")
    checked = 0
    for column in [c.removesuffix("_ci95_low") for c in csv if c.endswith("_ci95_low")]:
        low, high = value_range(column)
        for lo, hi in csv[[f"{column}_ci95_low", f"{column}_ci95_high"]].dropna().to_numpy():
            assert low <= lo <= hi <= high, (column, lo, hi)
            checked += 1
    assert checked >= 3 * len(METRICS)  # every displayed metric of every strategy has one
    # Where the seed-level t-interval over 2 seeds would have left the range, and by how much:
    pixel = csv.set_index("strategy").loc["decoder"]
    t_high = pixel["test_pixel_accuracy_mean"] + sps.t.ppf(0.975, 1) * pixel[
        "test_pixel_accuracy_sd"
    ] / np.sqrt(2)
    hd = csv.set_index("strategy").loc["decoder"]
    t_low = hd["test_hd_mm_mean"] - sps.t.ppf(0.975, 1) * hd["test_hd_mm_sd"] / np.sqrt(2)
    assert t_high > 1 and t_low < 0  # where the old t-interval went
    assert set(csv["test_dice_ci_method"]) == {"bootstrap"}


def test_too_few_seeds_are_warned_in_the_page_the_notes_and_the_terminal(report):
    result, out = report
    md = (out / "report.md").read_text(encoding="utf-8")
    html = (out / "report.html").read_text(encoding="utf-8")
    warning = "Warning: too few seeds for seed-level statistics"
    assert md.count(warning) == 2  # above the strategies table, and in the notes
    assert f"<strong>{warning}</strong>" in html
    assert warning in result.text
    counts = re.search(r"ok seeds: ([^;]*); 5 needed", md).group(1)
    assert sorted(counts.split(", ")) == ["all 2", "decoder 2", "decoder_2_3_4 2"]
    assert "The rule: " + report_stats.SEPARATION_RULE in md


def test_five_seeds_get_no_warning(tmp_path):
    exp = write_experiment(tmp_path / "exp", seeds=(0, 1, 2, 3, 4))
    result = build_report(str(exp), out_dir=str(tmp_path / "out"))
    assert not any("too few seeds" in note for note in result.notes)
    assert "too few seeds" not in (tmp_path / "out" / "report.md").read_text(encoding="utf-8")


def seed_level_trials() -> pd.DataFrame:
    """Five seeds of two strategies, no per-image tables: the seed-level t statistics."""
    dice = {"decoder": [0.95, 0.96, 0.97, 0.96, 0.96], "all": [0.93, 0.94, 0.95, 0.93, 0.94]}
    return pd.DataFrame(
        [
            {
                "stage": "final",
                "strategy": name,
                "seed": seed,
                "trial_name": f"{name}__seed{seed}",
                "status": "ok",
                "trainable_params": PARAMS[name],
                "total_params": 6_628_945,
                "epochs": 3,
                "wall_s": 60.0,
                "recipe": "paper",
                "test_dice": value,
            }
            for name, values in dice.items()
            for seed, value in enumerate(values)
        ]
    )


def test_five_seeds_without_per_image_results_use_the_t_interval_and_paired_t():
    table = report_stats.strategy_stats(seed_level_trials(), get_metric("test_dice"))
    table = table.set_index("strategy")
    # decoder: sd = sqrt(0.0002 / 4) = 0.0070711; t(0.975, 4) = 2.7764451;
    # half-width = 2.7764451 * 0.0070711 / sqrt(5) = 0.0087800.
    assert table.loc["decoder", "test_dice_ci95_low"] == pytest.approx(0.96 - 0.0087800, abs=1e-6)
    assert table.loc["decoder", "test_dice_ci95_high"] == pytest.approx(0.96 + 0.0087800, abs=1e-6)
    assert table.loc["decoder", "test_dice_ci_method"] == "t"
    p = sps.ttest_rel([0.93, 0.94, 0.95, 0.93, 0.94], [0.95, 0.96, 0.97, 0.96, 0.96]).pvalue
    assert table.loc["all", "p_value_vs_best"] == pytest.approx(p, rel=1e-9)
    assert table.loc["all", "p_value_vs_best_holm"] == pytest.approx(p, rel=1e-9)  # m = 1
    assert table.loc["all", "test_vs_best"] == "paired t (5 seeds)"
    assert bool(table.loc["all", "separated_from_best"])
    # Differences -0.02, -0.02, -0.02, -0.03, -0.02: mean -0.022 (points: -2.20).
    assert table.loc["all", "vs_best"].startswith("-2.20 [")


def test_four_seeds_without_per_image_results_get_no_interval_and_no_test():
    trials = seed_level_trials()
    trials = trials[trials["seed"] < 4]
    table = report_stats.strategy_stats(trials, get_metric("test_dice")).set_index("strategy")
    assert table["test_dice_ci95_low"].isna().all()
    assert pd.isna(table.loc["all", "separated_from_best"])
    assert table.loc["all", "vs_best"] == (
        "not tested: 4 common seed(s), fewer than 5, and no per-image results"
    )


def test_the_vectorised_bootstrap_is_the_explicit_resampling():
    rng = np.random.default_rng(3)
    long = pd.DataFrame(
        [
            {"strategy": "a", "seed": seed, "filename": f"{k}.png", "dice": rng.uniform()}
            for seed in (0, 1, 2)
            for k in range(7)
        ]
    )
    long.loc[4, "dice"] = np.nan  # a missing score is left out, not counted as 0
    scores = PerImage(long, resamples=50)
    fast = scores.replicates("a", "dice")
    matrix = scores.scores("a", "dice")
    seeds, images = scores.seed_counts("a").astype(int), scores.image_counts().astype(int)
    for b in range(50):
        picked = matrix[np.repeat(np.arange(3), seeds[b])][:, np.repeat(np.arange(7), images[b])]
        assert fast[b] == pytest.approx(np.nanmean(picked), rel=1e-12)
    again = PerImage(long, resamples=50).replicates("a", "dice")
    assert np.array_equal(fast, again)  # seeded: the report is deterministic


def test_value_ranges_of_the_test_columns():
    assert value_range("test_dice") == (0.0, 1.0)
    assert value_range("test_hd_mm") == (0.0, np.inf)
    assert value_range("test_raw_dice_median") == (0.0, 1.0)
    assert value_range("test_hc_fail_rate") == (0.0, 1.0)
    assert value_range("test_hc_signed_diff_mm") == (-np.inf, np.inf)  # signed: no bound
    assert value_range("test_something") == (-np.inf, np.inf)
    assert get_metric("test_hd95_mm", pd.DataFrame({"test_hd95_mm": [1.0]})).low == 0.0
