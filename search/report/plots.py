"""The report's figures: the Pareto plot (matplotlib PNG/SVG; `interactive` draws the plotly one)
and the per-strategy box plot of seeds.

All take the table of `search.report.stats.strategy_stats`; sizes are for a paper column pair
(7 in wide, 9-10 pt text at 300 dpi), so the files can be pasted as they are.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator  # noqa: E402

from search.report.labels import LABEL_SIZE, LEADER_MIN_PT, label_spots, obstacles  # noqa: E402
from search.shared.metrics import Metric  # noqa: E402

FRONT_COLOR = "#1f5fa8"
TIED_COLOR = "#d98c00"  # the ring around the best and every strategy not separated from it
DOMINATED_COLOR = "#8c8c8c"
PAPER_SIZE_IN = (7.0, 4.5)
DPI = 300
TIED_LABEL = "best, and not separated from it"


def _scale(metric: Metric) -> float:
    return 100.0 if metric.percent else 1.0


def axis_label(metric: Metric) -> str:
    direction = "higher is better" if metric.higher_is_better else "lower is better"
    return f"Test {metric.unit_label}, {direction}"


def _params_text(value: float, _pos=None) -> str:
    for factor, suffix in ((1e6, "M"), (1e3, "k")):
        if value >= factor:
            return f"{value / factor:g}{suffix}"
    return f"{value:g}"


def verdict(row) -> str:
    """'best', 'separated', 'not separated' or 'not tested': the rule's verdict on a table row
    (`stats.SEPARATION_RULE`), as the plots show it."""
    if row["vs_best"] == "best":
        return "best"
    separated = row["separated_from_best"]
    return "not tested" if pd.isna(separated) else "separated" if separated else "not separated"


def plotted(table: pd.DataFrame, metric: Metric) -> pd.DataFrame:
    """The strategies a Pareto plot can show (a mean and a parameter count), in plot units,
    with the rule's verdict against the best."""
    column, scale = metric.column, _scale(metric)
    rows = table[table[f"{column}_mean"].notna() & table["trainable_params"].notna()]
    return pd.DataFrame(
        {
            "strategy": rows["strategy"],
            "params": rows["trainable_params"].astype(float),
            "mean": rows[f"{column}_mean"] * scale,
            "low": rows[f"{column}_ci95_low"] * scale,
            "high": rows[f"{column}_ci95_high"] * scale,
            "n": rows[f"{column}_n"].astype(int),
            "optimal": rows["pareto_optimal"].fillna(False).astype(bool),
            "rank": rows["rank"],
            "verdict": [verdict(row) for _, row in rows.iterrows()],
        }
    ).reset_index(drop=True)


def front_steps(points: pd.DataFrame) -> pd.DataFrame:
    """The Pareto-optimal points sorted by parameter count (the step line's corners)."""
    return points[points["optimal"]].sort_values("params")


def limits(points: pd.DataFrame) -> tuple[tuple[float, float], tuple[float, float]]:
    """(x, y) axis limits of a Pareto plot, y as (low, high) before any reversal."""
    low, high = points["params"].min(), points["params"].max()
    y_low = np.nanmin([points["low"].min(), points["mean"].min()])
    y_high = np.nanmax([points["high"].max(), points["mean"].max()])
    pad = max(y_high - y_low, abs(points["mean"].mean()) * 0.01, 1e-3) * 0.15
    return (low / 2.5, high * 2.5), (y_low - pad, y_high + pad)


def _draw_labels(ax, points: pd.DataFrame, avoid: list) -> None:
    """Each strategy's name at the spot `label_spots` chose; far ones get a leader line."""
    for i, text, (dx, dy), _, _ in label_spots(ax, points, avoid):
        point = points.loc[i]
        ax.annotate(
            text,
            (point["params"], point["mean"]),
            xytext=(dx, dy),
            textcoords="offset points",
            ha="left" if dx > 0 else "right" if dx < 0 else "center",
            va="bottom" if dy > 0 else "top" if dy < 0 else "center",
            fontsize=LABEL_SIZE,
            color=FRONT_COLOR if point["optimal"] else "#333333",
            arrowprops=(
                {"arrowstyle": "-", "color": "#999999", "lw": 0.6, "shrinkA": 0, "shrinkB": 4}
                if max(abs(dx), abs(dy)) > LEADER_MIN_PT
                else None
            ),
        )


def pareto_figure(table: pd.DataFrame, metric: Metric):
    """Metric (mean, 95% CI bars) against trainable parameters (log x), front as a step line."""
    points = plotted(table, metric)
    fig, ax = plt.subplots(figsize=PAPER_SIZE_IN, layout="constrained")
    if points.empty:
        ax.text(
            0.5, 0.5, "no strategy has a finished seed yet", ha="center", transform=ax.transAxes
        )
        ax.set_axis_off()
        return fig
    front = front_steps(points)
    ax.step(
        front["params"],
        front["mean"],
        where="post",
        color=FRONT_COLOR,
        lw=1.2,
        ls="--",
        alpha=0.8,
        label="Pareto front (on means)",
        zorder=1,
    )
    for optimal, group in points.groupby("optimal"):
        color = FRONT_COLOR if optimal else DOMINATED_COLOR
        has_ci = group["low"].notna()
        ax.errorbar(
            group["params"][has_ci],
            group["mean"][has_ci],
            yerr=[(group["mean"] - group["low"])[has_ci], (group["high"] - group["mean"])[has_ci]],
            fmt="o",
            ms=6 if optimal else 5,
            color=color,
            ecolor=color,
            elinewidth=1.1,
            capsize=3,
            zorder=4 if optimal else 3,  # the front's markers stay visible in a cluster
            label="Pareto-optimal" if optimal else "dominated",
        )
        single = group[~has_ci]  # n=1: no interval; a hollow marker says so
        ax.plot(single["params"], single["mean"], "o", mfc="white", mec=color, ms=6, zorder=3)
    if (points["n"] == 1).any():
        ax.plot([], [], "o", mfc="white", mec="#555555", label="one seed: no interval")
    tied = points[points["verdict"].isin(["best", "not separated"])]
    if len(tied):
        ax.plot(
            tied["params"],
            tied["mean"],
            "o",
            ms=13,
            mfc="none",
            mec=TIED_COLOR,
            mew=1.6,
            zorder=5,
            label=TIED_LABEL,
        )
    ax.set_xscale("log")
    x_lim, y_lim = limits(points)
    ax.set_xlim(*x_lim)
    ax.set_ylim(*y_lim)
    if not metric.higher_is_better:
        ax.invert_yaxis()  # "better" stays up, so the front reads the same way for every metric
    ax.xaxis.set_major_locator(LogLocator(base=10))
    ax.xaxis.set_major_formatter(FuncFormatter(_params_text))
    ax.set_xlabel("Trainable parameters (log scale; fewer is better)", fontsize=10)
    ax.set_ylabel(axis_label(metric) + "\nmean over seeds, 95% interval", fontsize=10)
    ax.tick_params(labelsize=9)
    ax.grid(True, which="major", color="#e5e5e5", lw=0.6)
    ax.set_axisbelow(True)
    handles, labels = ax.get_legend_handles_labels()
    order = ["Pareto-optimal", "dominated", "one seed: no interval", TIED_LABEL]
    order.append("Pareto front (on means)")
    pairs = sorted(zip(labels, handles, strict=True), key=lambda p: order.index(p[0]))
    ax.legend([h for _, h in pairs], [lab for lab, _ in pairs], fontsize=8, loc="best")
    fig.canvas.draw()  # fixes the layout, so label boxes are measured where they will be drawn
    fig.set_layout_engine("none")
    legend_box = ax.get_legend().get_window_extent(fig.canvas.get_renderer())
    _draw_labels(ax, points, [*obstacles(ax, points, front), legend_box])
    return fig


def box_figure(table: pd.DataFrame, final: pd.DataFrame, metric: Metric):
    """Seeds per strategy (ok rows only), strategies in rank order; every seed drawn as a dot."""
    column, scale = metric.column, _scale(metric)
    ok = final[(final["status"] == "ok") & final[column].notna()] if column in final else final[:0]
    names = table["strategy"].tolist()  # already in rank order, unranked last
    fig, ax = plt.subplots(figsize=(7.0, 4.0), layout="constrained")
    rng = np.random.default_rng(0)  # jitter only; fixed so the figure is reproducible
    for position, name in enumerate(names, start=1):
        values = ok.loc[ok["strategy"] == name, column].to_numpy(float) * scale
        if len(values) >= 2:
            ax.boxplot(
                values,
                positions=[position],
                widths=0.55,
                showfliers=False,
                medianprops={"color": FRONT_COLOR, "lw": 1.4},
                boxprops={"color": "#555555"},
                whiskerprops={"color": "#555555"},
                capprops={"color": "#555555"},
            )
        if len(values):
            jitter = rng.uniform(-0.12, 0.12, len(values))
            ax.plot(position + jitter, values, "o", ms=4, color="#222222", alpha=0.75, zorder=3)
        else:  # an empty slot would read as "not run"; say what happened instead
            ax.text(
                position,
                0.5,
                "no finished seed",
                transform=ax.get_xaxis_transform(),
                rotation=90,
                ha="center",
                va="center",
                fontsize=8,
                color="#a33",
            )
    ax.set_xticks(range(1, len(names) + 1))
    crowded = len(names) > 8  # ~0.75 in per slot: 'decoder_2_3_4' at 8 pt no longer fits flat
    ax.set_xticklabels(
        names,
        fontsize=8,
        rotation=25 if crowded else 0,
        ha="right" if crowded else "center",
        rotation_mode="anchor",
    )
    seeds = table.set_index("strategy")[["seeds_ok", "seeds_planned"]]
    for position, name in enumerate(names, start=1):  # seeds finished, above each slot
        done, planned = seeds.loc[name]
        ax.text(
            position,
            1.01,
            f"{done}/{planned} ok",
            transform=ax.get_xaxis_transform(),
            ha="center",
            va="bottom",
            fontsize=7.5,
            color="#555555" if done == planned else "#a33",
        )
    ax.set_xlim(0.4, len(names) + 0.6)
    ax.set_ylabel(f"Test {metric.unit_label} per seed", fontsize=10)
    ax.tick_params(axis="y", labelsize=9)
    ax.grid(True, axis="y", color="#e5e5e5", lw=0.6)
    ax.set_axisbelow(True)
    if not metric.higher_is_better:
        ax.invert_yaxis()
    return fig


def save(fig, *paths: Path) -> None:
    for path in paths:
        fig.savefig(path, dpi=DPI)
    plt.close(fig)
