"""The report's training-set size section (`search.train_fractions`): how each strategy's test
score and HC failure rate grow with the number of labelled training images, the ranking and
Pareto front at each size, and where the ranking changes.

Read from trials.csv only: the final stage's finished rows, one point per strategy x share of
the training split (mean over seeds, the seeds' range as a band). `curves` is the table the plot
and the statements are drawn from (`learning_curves.csv`), so both can be checked against a
recomputation from trials.csv.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from search.report.page import Bullets, Figure, Paragraph, Table  # noqa: E402
from search.shared.metrics import Metric  # noqa: E402
from search.shared.pareto import non_dominated  # noqa: E402

CURVES_PNG, CURVES_CSV = "learning_curves.png", "learning_curves.csv"
FAIL = "test_hc_fail_rate"


def with_fraction(trials: pd.DataFrame) -> pd.DataFrame:
    """The table with `train_fraction` filled (1.0 for rows written before the column)."""
    out = trials.copy()
    if "train_fraction" not in out:
        out["train_fraction"] = np.nan
    out["train_fraction"] = pd.to_numeric(out["train_fraction"], errors="coerce").fillna(1.0)
    if "train_images" not in out:
        out["train_images"] = np.nan
    return out


def largest_fraction_only(trials: pd.DataFrame) -> pd.DataFrame:
    """The rows the rest of the report ranks: every stage's rows but the final stage's at a
    share of the training split below the largest one trained (the learning-curve points)."""
    table = with_fraction(trials)
    final = table["stage"] == "final"
    if not final.any():
        return trials
    largest = table.loc[final, "train_fraction"].max()
    return trials[~(final & (table["train_fraction"] < largest))]


def learning_curves(trials: pd.DataFrame, metric: Metric) -> pd.DataFrame:
    """One row per strategy x training share: its training images (mean over seeds), seeds,
    the metric's and the HC failure rate's mean, min and max over seeds, and the rank and
    Pareto flag among the strategies at that share."""
    table = with_fraction(trials)
    done = table[(table["stage"] == "final") & (table["status"] == "ok")]
    done = done.drop_duplicates(["strategy", "seed", "train_fraction"], keep="last")
    rows = []
    for (fraction, strategy), group in done.groupby(["train_fraction", "strategy"], sort=True):
        row = {
            "train_fraction": float(fraction),
            "strategy": strategy,
            "train_images": float(pd.to_numeric(group["train_images"]).mean()),
            "seeds": len(group),
            "trainable_params": int(group["trainable_params"].iloc[0]),
        }
        for column in dict.fromkeys([metric.column, FAIL]):
            values = pd.to_numeric(group[column], errors="coerce") if column in group else None
            for stat in ("mean", "min", "max"):
                row[f"{column}_{stat}"] = getattr(values, stat)() if values is not None else np.nan
        rows.append(row)
    curves = pd.DataFrame(rows)
    if curves.empty:
        return curves
    mean = f"{metric.column}_mean"
    curves["rank"] = curves.groupby("train_fraction")[mean].rank(
        ascending=not metric.higher_is_better, method="min"
    )
    curves["pareto"] = False
    for _, group in curves.groupby("train_fraction"):
        score = group[mean] if metric.higher_is_better else -group[mean]
        curves.loc[group.index, "pareto"] = non_dominated(score, group["trainable_params"])
    return curves.sort_values(["train_fraction", "rank"]).reset_index(drop=True)


def ranking_changes(curves: pd.DataFrame, metric: Metric) -> list[str]:
    """Plain statements of where two strategies swap places on `metric` between neighbouring
    training sizes ("below about N images, A beats B"), the leader at each size first."""
    mean = f"{metric.column}_mean"
    if curves.empty or mean not in curves or curves[mean].isna().all():
        return []
    sizes = sorted(curves["train_fraction"].unique())
    scale = 100 if metric.percent else 1
    unit = " points" if metric.percent else ""
    lines = []
    for fraction in sizes:
        here = curves[curves["train_fraction"] == fraction].dropna(subset=[mean])
        best = here.sort_values(mean, ascending=not metric.higher_is_better).iloc[0]
        lines.append(
            f"With {best['train_images']:.0f} training images ({fraction:.0%} of the split) "
            f"`{best['strategy']}` leads on {metric.label} ({best[mean] * scale:.2f})."
        )
    pivot = curves.pivot(index="train_fraction", columns="strategy", values=mean).sort_index()
    low_of = curves.pivot(index="train_fraction", columns="strategy", values=f"{metric.column}_min")
    high_of = curves.pivot(
        index="train_fraction", columns="strategy", values=f"{metric.column}_max"
    )

    def overlap(fraction: float, a: str, b: str) -> bool:
        """The two strategies' seed ranges overlap at this size."""
        return bool(
            low_of.at[fraction, a] <= high_of.at[fraction, b]
            and low_of.at[fraction, b] <= high_of.at[fraction, a]
        )

    images = curves.groupby("train_fraction")["train_images"].mean()
    sign = 1 if metric.higher_is_better else -1
    crossings = []
    for a, b in combinations(sorted(pivot.columns), 2):
        diff = (sign * (pivot[a] - pivot[b])).dropna()
        for low, high in zip(diff.index[:-1], diff.index[1:], strict=True):
            if np.sign(diff[low]) * np.sign(diff[high]) < 0:
                small, large = (a, b) if diff[low] > 0 else (b, a)
                gap = abs(diff[low]) * scale
                noise = (
                    " The seeds' ranges overlap there: this may be noise."
                    if overlap(low, a, b) or overlap(high, a, b)
                    else ""
                )
                crossings.append(
                    f"{metric.label}: below about {images[high]:.0f} images `{small}` beats "
                    f"`{large}` (by {gap:.2f}{unit} at {images[low]:.0f} images); from "
                    f"{images[high]:.0f} images on `{large}` is ahead.{noise}"
                )
    if not crossings:
        crossings.append(
            f"{metric.label}: no two strategies change places between the training sizes tried."
        )
    return lines + crossings


def curves_figure(curves: pd.DataFrame, metric: Metric):
    """Test metric and HC failure rate against training images (log x), one line per
    strategy, the seeds' range as a band."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    scale = 100 if metric.percent else 1
    panels = [(metric.column, metric.unit_label, scale), (FAIL, "HC failure rate (%)", 100)]
    colours = plt.get_cmap("tab10")
    for i, (strategy, group) in enumerate(curves.groupby("strategy", sort=True)):
        group = group.sort_values("train_images")
        for ax, (column, _, factor) in zip(axes, panels, strict=True):
            mean = group[f"{column}_mean"] * factor
            if mean.isna().all():
                continue
            colour = colours(i % 10)
            ax.plot(group["train_images"], mean, "o-", color=colour, label=strategy, lw=1.5)
            ax.fill_between(
                group["train_images"],
                group[f"{column}_min"] * factor,
                group[f"{column}_max"] * factor,
                color=colour,
                alpha=0.15,
                lw=0,
            )
    sizes = sorted(curves["train_images"].dropna().unique())
    for ax, (_, label, _) in zip(axes, panels, strict=True):
        ax.set_xscale("log")
        ax.set_xticks(sizes, [f"{n:.0f}" for n in sizes])  # the sizes trained, as numbers
        ax.minorticks_off()
        ax.set_xlabel("training images (log scale)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
    axes[0].set_title(f"Test {metric.label}: mean over seeds, band = seeds' range", fontsize=9)
    axes[1].set_title("HC error > the failure threshold (lower is better)", fontsize=9)
    axes[0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def curves_display(curves: pd.DataFrame, metric: Metric) -> pd.DataFrame:
    """The learning-curve table as the report shows it: one row per size and strategy."""
    scale = 100 if metric.percent else 1
    col = metric.column

    def cell(row, column, factor) -> str:
        if pd.isna(row[f"{column}_mean"]):
            return "-"
        low, high = row[f"{column}_min"] * factor, row[f"{column}_max"] * factor
        return f"{row[f'{column}_mean'] * factor:.2f} [{low:.2f}, {high:.2f}]"

    return pd.DataFrame(
        {
            "Share": [f"{f:.0%}" for f in curves["train_fraction"]],
            "Images": [f"{n:.0f}" for n in curves["train_images"]],
            "Rank": [f"{r:.0f}" for r in curves["rank"]],
            "Strategy": curves["strategy"],
            "Seeds": curves["seeds"],
            f"{metric.unit_label} mean [min, max]": [
                cell(r, col, scale) for _, r in curves.iterrows()
            ],
            "HC failures (%) mean [min, max]": [cell(r, FAIL, 100) for _, r in curves.iterrows()],
            "Trainable": [f"{p:,}" for p in curves["trainable_params"]],
            "Pareto": ["optimal" if p else "dominated" for p in curves["pareto"]],
        }
    )


@dataclass
class FractionSection:
    blocks: list = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    figure: Path | None = None
    curves: pd.DataFrame = field(default_factory=pd.DataFrame)


def budget_text(config: dict) -> str:
    budget = config.get("search", {}).get("fraction_budget", "steps")
    if budget == "epochs":
        return (
            "Budget (`search.fraction_budget: epochs`): every share trained the config's "
            "epochs, so a smaller share took proportionally fewer optimizer steps."
        )
    return (
        "Budget (`search.fraction_budget: steps`): every share trained as many optimizer steps "
        "as the whole training split (more epochs on fewer images; a per-epoch decay stretched "
        "to fall as far over those steps)."
    )


def build_fractions(
    trials: pd.DataFrame, metric: Metric, config: dict, out: Path
) -> FractionSection:
    """The section's blocks (none when the final stage trained one share only)."""
    table = with_fraction(trials)
    final = table[table["stage"] == "final"]
    if final["train_fraction"].nunique() < 2:
        return FractionSection()
    curves = learning_curves(trials, metric)
    if curves.empty:
        return FractionSection()
    curves.to_csv(out / CURVES_CSV, index=False)
    fig = curves_figure(curves, metric)
    fig.savefig(out / CURVES_PNG, dpi=110)
    plt.close(fig)
    failures = Metric(FAIL, "HC failure rate", higher_is_better=False, percent=True)
    changes = ranking_changes(curves, metric)
    if metric.column != FAIL:
        changes += [
            line for line in ranking_changes(curves, failures) if not line.startswith("With")
        ]
    intro = (
        "Each strategy trained on nested, exam-grouped shares of the training split "
        f"({', '.join(f'{f:.0%}' for f in sorted(curves['train_fraction'].unique()))}; the same "
        "validation and test images for every row). " + budget_text(config)
    )
    blocks = [
        Paragraph(intro),
        Figure("Learning curves", out / CURVES_PNG),
        Bullets(changes),
        Table(curves_display(curves, metric), "learning-curves"),
        Paragraph(f"{CURVES_CSV} holds the same numbers unrounded."),
    ]
    notes = [line for line in changes if not line.startswith("With ")]
    notes = [f"Training-set size (section below): {line}" for line in notes]
    return FractionSection(blocks, notes, out / CURVES_PNG, curves)
