"""The report's clinical view, from the final trials' per-image test tables: how far the head
circumference is off and how often it fails, per strategy; a paired per-image test against the
best strategy; the figures of `clinical_plots`.

Pure pandas/scipy over the rows; nothing here reads files or draws. Conventions (the report
states them too):
- Per trial, from its per-image table: Dice mean and median, HC absolute error mean, median and
  90th percentile, HC bias (mean predicted - reference over the heads it measured), failure
  rate (`trainables.evaluation.hc_errors.hc_failed`: HC error above `hc_fail_mm`, or no
  measurable head) and HD95 mean; the same of the raw masks, before post-processing (`raw_*`).
  Per strategy: mean and sd over its `ok` seeds that have a table.
- Paired per-image test, for reference: each test image's score (the ranking metric's per-image
  column) is averaged over each strategy's ok seeds; each strategy is compared with the
  best-ranked one by the Wilcoxon signed-rank test over the images both have
  (`scipy.stats.wilcoxon`, two-sided, zero differences dropped), with Holm's step-down
  correction over the strategies compared with the best. It decides nothing: whether a strategy
  is separated from the best is `stats.SEPARATION_RULE`'s verdict, shown beside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from scipy import stats as sps

from search.experiment.folder import CONFIG
from search.report import clinical_plots, stats
from search.report.page import Figure, Paragraph, Table
from search.report.stats import holm, per_image_long
from search.shared.metrics import Metric
from trainables.data.arrays import default_data_dir
from trainables.evaluation.hc_errors import hc_error_summary

BLAND_ALTMAN_PNG, WORST_IMAGES_PNG = "bland_altman.png", "worst_images.png"

# Per-trial figures, each also of the raw masks as raw_<key>.
SUMMARY = (
    "dice",
    "dice_median",
    "hc_abs_diff_mm",
    "hc_abs_diff_mm_median",
    "hc_abs_diff_mm_p90",
    "hc_signed_diff_mm",
    "hc_fail_rate",
    "hd95_mm",
)
KEYS = SUMMARY + tuple(f"raw_{key}" for key in SUMMARY)


def trial_summary(rows: pd.DataFrame, hc_fail_mm: float, prefix: str = "") -> dict[str, float]:
    """One trial's figures (`SUMMARY`) from its per-image rows; `prefix='raw_'` for the raw
    masks. Columns an older table lacks give NaN."""

    def column(key: str) -> pd.Series:
        name = prefix + key
        return rows[name].astype(float) if name in rows else pd.Series(math.nan, index=rows.index)

    dice = column("dice")
    out = {"dice": float(dice.mean()), "dice_median": float(dice.median())}
    out |= hc_error_summary(
        column("hc_abs_diff_mm"), column("hc_signed_diff_mm"), column("hc_pred_mm"), hc_fail_mm
    )
    out["hd95_mm"] = float(column("hd95_mm").mean())
    return {prefix + key: value for key, value in out.items()}


def clinical_stats(long: pd.DataFrame, strategies: list[str], hc_fail_mm: float) -> pd.DataFrame:
    """Per strategy: clinical_seeds (ok seeds with a table), clinical_images (test images per
    table), and clinical_<key>_mean / _sd over those seeds for every key of `KEYS`."""
    rows = []
    for name in strategies:
        mine = long[long["strategy"] == name] if len(long) else long
        trials = [group for _, group in mine.groupby("trial_name")] if len(mine) else []
        summaries = pd.DataFrame(
            [trial_summary(t, hc_fail_mm) | trial_summary(t, hc_fail_mm, "raw_") for t in trials]
        )
        row = {"strategy": name, "clinical_seeds": len(trials)}
        row["clinical_images"] = max((len(t) for t in trials), default=0)
        for key in KEYS:
            summary = stats.interval(summaries.get(key, []))
            row[f"clinical_{key}_mean"], row[f"clinical_{key}_sd"] = summary["mean"], summary["sd"]
        rows.append(row)
    return pd.DataFrame(rows)


def per_image_score(metric: Metric, long: pd.DataFrame) -> str | None:
    """The per-image column behind a test metric (test_dice -> dice), None when there is none."""
    column = metric.column.removeprefix("test_")
    usable = column in long and pd.api.types.is_numeric_dtype(long[column])
    return column if usable and column not in ("hc_pred_mm", "hc_reference_mm") else None


def paired_per_image(long: pd.DataFrame, table: pd.DataFrame, metric: Metric) -> pd.DataFrame:
    """Wilcoxon signed-rank test of each ranked strategy against the best, on per-image scores
    averaged over seeds, and its Holm correction (for reference: the verdict is the rule's).

    Returns:
        strategy, n_images_paired, median_image_diff_vs_best (this strategy - the best),
        p_wilcoxon_vs_best, p_wilcoxon_vs_best_holm.
    """
    ranked = table[table["rank"].notna()].sort_values("rank", kind="stable")
    best = ranked.iloc[0]["strategy"] if len(ranked) else None
    score = per_image_score(metric, long) if len(long) else None
    means = long.groupby(["strategy", "filename"])[score].mean().dropna() if score else None
    have = set(means.index.get_level_values(0)) if means is not None else set()
    records = []
    for row in table.itertuples():
        record = {"strategy": row.strategy, "n_images_paired": 0}
        record |= {"median_image_diff_vs_best": math.nan, "p_wilcoxon_vs_best": math.nan}
        if row.strategy != best and not pd.isna(row.rank) and {row.strategy, best} <= have:
            theirs, mine = means.loc[best], means.loc[row.strategy]
            common = theirs.index.intersection(mine.index)
            differences = mine[common] - theirs[common]
            record["n_images_paired"] = len(common)
            record["median_image_diff_vs_best"] = float(differences.median())
            if (differences != 0).any():
                test = sps.wilcoxon(theirs[common].to_numpy(), mine[common].to_numpy())
                record["p_wilcoxon_vs_best"] = float(test.pvalue)
        records.append(record)
    frame = pd.DataFrame(records)
    frame["p_wilcoxon_vs_best_holm"] = holm(frame["p_wilcoxon_vs_best"])
    return frame


# -- words -------------------------------------------------------------------------------------
def _cell(row, key: str, scale: float = 1.0) -> str:
    mean, sd = row[f"clinical_{key}_mean"], row[f"clinical_{key}_sd"]
    if pd.isna(mean):
        return "-"
    return f"{mean * scale:.2f}" if pd.isna(sd) else f"{mean * scale:.2f} ± {sd * scale:.2f}"


def _gain(row, key: str) -> str:
    after, before = row[f"clinical_{key}_mean"], row[f"clinical_raw_{key}_mean"]
    return "-" if pd.isna(after) or pd.isna(before) else f"{100 * (after - before):+.2f}"


def clinical_display(table: pd.DataFrame, hc_fail_mm: float) -> pd.DataFrame:
    """The clinical table as strings: one row per strategy with per-image results."""
    rows = []
    for _, row in table[table["clinical_seeds"] > 0].iterrows():
        rows.append(
            {
                "Strategy": row["strategy"],
                "Seeds": str(int(row["clinical_seeds"])),
                "Dice mean (%)": _cell(row, "dice", 100),
                "Dice median (%)": _cell(row, "dice_median", 100),
                "HC error mean (mm)": _cell(row, "hc_abs_diff_mm"),
                "HC error median (mm)": _cell(row, "hc_abs_diff_mm_median"),
                "HC error P90 (mm)": _cell(row, "hc_abs_diff_mm_p90"),
                "HC bias (mm)": _cell(row, "hc_signed_diff_mm"),
                f"Failures > {hc_fail_mm:g} mm (%)": _cell(row, "hc_fail_rate", 100),
                "HD95 (mm)": _cell(row, "hd95_mm"),
                "Post-processing: Dice (points)": _gain(row, "dice"),
                "Post-processing: failures (points)": _gain(row, "hc_fail_rate"),
            }
        )
    return pd.DataFrame(rows)


def _p(value: float) -> str:
    return "-" if pd.isna(value) else f"{value:.3g}"


def _verdict(separated) -> str:
    return "not tested" if pd.isna(separated) else "yes" if separated else "no"


def paired_display(table: pd.DataFrame, metric: Metric) -> pd.DataFrame:
    """The paired comparisons with the best as strings (ranked strategies but the best)."""
    rows = []
    scale = 100.0 if metric.percent else 1.0
    for _, row in table[table["rank"].notna() & (table["vs_best"] != "best")].iterrows():
        diff = row["median_image_diff_vs_best"]
        rows.append(
            {
                "Strategy": row["strategy"],
                "Separated from the best (the rule)": _verdict(row["separated_from_best"]),
                "Rule p (Holm)": _p(row["p_value_vs_best_holm"]),
                "Rule's comparison": row["test_vs_best"] or "-",
                "Images paired": str(int(row["n_images_paired"])),
                "Wilcoxon p": _p(row["p_wilcoxon_vs_best"]),
                "Wilcoxon p (Holm)": _p(row["p_wilcoxon_vs_best_holm"]),
                f"Median per-image difference ({metric.unit_label})": (
                    "-" if pd.isna(diff) else f"{diff * scale:+.2f}"
                ),
            }
        )
    return pd.DataFrame(rows)


# -- the section -------------------------------------------------------------------------------
@dataclass
class Clinical:
    """The clinical part of a report: the strategies table with its columns added, the page's
    blocks, the notes, and the figures written."""

    table: pd.DataFrame
    blocks: list
    notes: list[str] = field(default_factory=list)
    figures: dict[str, Path] = field(default_factory=dict)


def images_folder(config: dict, data_dir: str | None) -> Path | None:
    """Where the test images are: `data_dir`, else the experiment's trial.data_dir (None there
    = the shipped sample); None when the experiment has no config."""
    if data_dir:
        return Path(data_dir)
    if "trial" not in config:
        return None
    folder = config["trial"].get("data_dir")
    return Path(folder) if folder else default_data_dir()


def build_clinical(
    results,
    table: pd.DataFrame,
    metric: Metric,
    out_dir: Path,
    hc_fail_mm: float,
    data_dir: str | None = None,
) -> Clinical:
    """Compute, word and draw the clinical section of one experiment's report.

    Args:
        results: `search.report.load.Results` (trials, config, per-image tables).
        table: `stats.strategy_stats` output; metric: the ranking metric.
        out_dir: where the figures go.
        hc_fail_mm: the HC error that counts as a failed measurement.
        data_dir: the images' folder for the worst-images figure (default: the experiment's).
    """
    long = per_image_long(results.trials, results.per_image)
    found = clinical_stats(long, table["strategy"].tolist(), hc_fail_mm)
    table = table.join(found.set_index("strategy"), on="strategy")
    table = table.join(paired_per_image(long, table, metric).set_index("strategy"), on="strategy")
    if long.empty:
        text = (
            "No per-image test results in this experiment (its final trials finished before "
            "FreezeFrame kept them, or none finished): no clinical table, paired per-image test "
            "or figures."
        )
        return Clinical(table, [Paragraph(text)])
    final = stats.final_trials(results.trials)
    ok = int((final["status"] == "ok").sum())
    trial = results.config.get("trial", {})
    setting = f"postprocess: {trial.get('postprocess', 'unknown')}, tta: {trial.get('tta', '?')}"
    notes = [
        f"Clinical figures from the per-image test tables of {long['trial_name'].nunique()} of "
        f"{ok} ok final trials ({setting}): a failure is an HC error above {hc_fail_mm:g} mm or "
        "no measurable head (empty prediction or no ellipse fit); the HC bias is over measured "
        "heads; the post-processing gain is the trial's output minus its raw masks. Cells: mean "
        "± sd over seeds."
    ]
    ranked = table[table["rank"].notna()]
    best = ranked.iloc[0]["strategy"] if len(ranked) else None
    paired = paired_display(table, metric)
    if len(paired) and per_image_score(metric, long) is None:
        notes.append(
            f"No paired per-image test: {metric.label} has no per-image score (rank by "
            "test_dice, test_iou, test_hd95_mm or test_hc_abs_diff_mm for one)."
        )
    elif len(paired):
        notes.append(
            f"The clinical section's Wilcoxon signed-rank test (each test image's {metric.label} "
            f"averaged over seeds, Holm over the {len(paired)} strategies compared with {best}) "
            "is shown for reference only; the verdict beside it is the strategies table's."
        )
    intro = (
        f"Per test image, then per seed; HC error in mm against the HC18 reference; failure: "
        f"HC error > {hc_fail_mm:g} mm or no measurable head."
    )
    blocks = [
        Paragraph(intro),
        Table(clinical_display(table, hc_fail_mm), "clinical"),
        Table(paired, "paired", empty="No strategy to compare with the best."),
    ]
    clinical = Clinical(table, blocks, notes)
    rows = long[long["strategy"] == best] if best is not None else long[:0]
    if len(rows):
        _figures(clinical, rows, best, out_dir, hc_fail_mm, images_folder(results.config, data_dir))
    return clinical


def _figures(clinical: Clinical, rows, best: str, out_dir: Path, hc_fail_mm, folder) -> None:
    figure, summary = clinical_plots.bland_altman_figure(rows, best, hc_fail_mm)
    clinical_plots.save(figure, out_dir / BLAND_ALTMAN_PNG)
    clinical.figures["bland_altman"] = out_dir / BLAND_ALTMAN_PNG
    clinical.blocks.append(Figure(f"Bland-Altman plot of {best}", out_dir / BLAND_ALTMAN_PNG))
    clinical.notes.append(
        f"Bland-Altman, {best}: bias {summary['bias']:+.2f} mm, 95% limits of agreement "
        f"[{summary['loa_low']:.2f}, {summary['loa_high']:.2f}] mm over {summary['n']} "
        f"measurements (all its ok seeds); {summary['unmeasured']} without a measurable head."
    )
    try:
        if folder is None:
            raise FileNotFoundError(f"the experiment has no {CONFIG} naming its data folder")
        figure = clinical_plots.worst_images_figure(rows, folder, best)
    except (FileNotFoundError, ValueError) as err:  # DataError is a ValueError
        text = (
            f"Worst test images not drawn: {err} - the data folder is not reachable from here "
            "(`python -m search.report --data DIR` points at a copy)."
        )
        clinical.blocks.append(Paragraph(text))
        clinical.notes.append(text)
        return
    clinical_plots.save(figure, out_dir / WORST_IMAGES_PNG)
    clinical.figures["worst_images"] = out_dir / WORST_IMAGES_PNG
    alt = f"Worst test images of {best}"
    clinical.blocks.append(Figure(alt, out_dir / WORST_IMAGES_PNG))
