"""The report's explore section: every explore trial (validation Dice against trainable
parameters, log x, coloured by encoder), the validation front, the explore table, and whether
a discovered configuration dominates a paper strategy on the test set.

Read from trials.csv only (stage `explore` rows; the final stage's rows with recipe
`explore` are the discovered configurations being confirmed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from search.report.bootstrap import PerImage  # noqa: E402
from search.report.page import Figure, Paragraph, Table  # noqa: E402
from search.report.plots import DPI, PAPER_SIZE_IN, save  # noqa: E402
from search.report.stats import ALPHA, Metric, compare, final_trials, holm, per_image_long  # noqa: E402
from search.report.tune import recipe_text  # noqa: E402
from search.shared.pareto import non_dominated  # noqa: E402

EXPLORE_PNG = "explore.png"
EXPLORE_CSV = "explore.csv"


def explore_rows(trials: pd.DataFrame) -> pd.DataFrame:
    """The explore trials with a validation Dice; `on_front`: non-dominated among the finished
    (`ok`) ones on (val Dice max, trainable parameters min); `front_rank`: 1 = most Dice."""
    rows = trials[(trials["stage"] == "explore") & trials["val_dice"].notna()].copy()
    if rows.empty:
        return rows
    rows["trainable_params"] = pd.to_numeric(rows["trainable_params"], errors="coerce")
    ok = rows[rows["status"] == "ok"]
    rows["on_front"] = False
    if len(ok):
        rows.loc[ok.index, "on_front"] = non_dominated(ok["val_dice"], ok["trainable_params"])
    front = rows[rows["on_front"]].sort_values("val_dice", ascending=False)
    rows["front_rank"] = pd.Series(range(1, len(front) + 1), index=front.index, dtype="Int64")
    return rows.sort_values(["on_front", "val_dice"], ascending=[False, False], kind="stable")


def explore_figure(rows: pd.DataFrame):
    """Every explore trial, coloured by encoder; the validation front as a step line."""
    fig, ax = plt.subplots(figsize=PAPER_SIZE_IN, dpi=DPI)
    for encoder, group in rows.groupby("encoder"):
        finished = group["status"] == "ok"
        ax.scatter(group.loc[finished, "trainable_params"], 100 * group.loc[finished, "val_dice"],
                   s=18, label=f"{encoder}", alpha=0.8)  # fmt: skip
        ax.scatter(group.loc[~finished, "trainable_params"],
                   100 * group.loc[~finished, "val_dice"], s=12, marker="x", alpha=0.5,
                   color="#8c8c8c")  # fmt: skip
    front = rows[rows["on_front"]].sort_values("trainable_params")
    ax.step(front["trainable_params"], 100 * front["val_dice"], where="post", color="#1f5fa8",
            linewidth=1.2, label="validation front")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("Trainable parameters (log scale)")
    ax.set_ylabel("Validation Dice (%), higher is better")
    ax.set_title("Explore stage: every trial (x = stopped early)", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig


def _count(value) -> str:
    return "-" if pd.isna(value) else f"{int(value):,}"


def explore_display(rows: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame(
        {
            "Front rank": rows["front_rank"].map(lambda r: "-" if pd.isna(r) else str(int(r))),
            "Mask": rows["strategy"],
            "Encoder": rows["encoder"],
            "Frozen BN": rows["bn_update_frozen"].map({True: "update", False: "pinned"}),
            "Recipe": [recipe_text(r) for r in rows.to_dict("records")],
            "Val Dice (%)": (100 * rows["val_dice"]).map("{:.2f}".format),
            "Trainable": rows["trainable_params"].map(_count),
            "Total": rows["total_params"].map(_count),
            "Status": rows["status"],
        }
    )
    return out.reset_index(drop=True)


def dominance(
    trials: pd.DataFrame, table: pd.DataFrame, metric: Metric, scores: PerImage | None = None
) -> list[str]:
    """Which discovered configurations (final rows with recipe 'explore') beat a named paper
    strategy on the test set with fewer trainable parameters. 'Better' (in the metric's own
    direction) is the report's one rule (`stats.SEPARATION_RULE`) applied to the pair: the
    same comparison, Holm-corrected over the paper strategies a configuration is compared with;
    not separated, or not tested, counts as not better."""
    metric_column, sign = metric.column, 1.0 if metric.higher_is_better else -1.0
    final = final_trials(trials)
    discovered = sorted(final.loc[final["recipe"] == "explore", "strategy"].unique())
    paper = [s for s in table["strategy"] if s not in discovered]
    ok = final[(final["status"] == "ok") & final[metric_column].notna()]
    params = table.set_index("strategy")["trainable_params"]
    means = ok.groupby("strategy")[metric_column].mean()
    scores = scores or PerImage(pd.DataFrame())
    findings = []
    for found in discovered:
        compared, p_values = [], []
        for name in paper:
            if found not in means or name not in means or not params[found] < params[name]:
                continue
            if sign * (means[found] - means[name]) <= 0:
                continue
            _, result = compare(ok, scores, name, found, metric_column)
            if result is not None:
                compared.append((name, result["test_vs_best"].split(" (")[0]))
                p_values.append(result["p_value_vs_best"])
        adjusted = holm(p_values) if p_values else []
        beaten = [
            f"{name} (Holm p={p:.3g}, {test})"
            for (name, test), p in zip(compared, adjusted, strict=True)
            if p < ALPHA
        ]
        findings.append(
            f"{found} dominates {', '.join(beaten)}: a better test score with fewer trainable "
            "parameters."
            if beaten
            else f"{found} dominates no paper strategy (no better test score with fewer "
            "trainable parameters, separated by the report's rule)."
        )
    return findings


@dataclass
class ExploreSection:
    blocks: list = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    figure: Path | None = None


def build_explore(
    trials: pd.DataFrame,
    table: pd.DataFrame,
    metric: Metric,
    out_dir: Path,
    per_image: dict[str, pd.DataFrame] | None = None,
) -> ExploreSection:
    """The explore section's blocks and notes (no blocks without an explore stage)."""
    rows = explore_rows(trials)
    if rows.empty:
        return ExploreSection()
    save(explore_figure(rows), out_dir / EXPLORE_PNG)
    rows.to_csv(out_dir / EXPLORE_CSV, index=False)
    front = rows[rows["on_front"]]
    text = (
        f"{len(rows)} explore trials ({int((rows['status'] == 'ok').sum())} finished); "
        f"{len(front)} on the validation front (validation Dice against trainable parameters, "
        "finished trials only). The final stage confirms the front's best by validation on "
        "the test set, beside the named strategies."
    )
    notes = dominance(trials, table, metric, PerImage(per_image_long(trials, per_image or {})))
    return ExploreSection(
        blocks=[
            Paragraph(text),
            Figure("Explore trials and the validation front", out_dir / EXPLORE_PNG),
            Table(explore_display(rows), "explore"),
        ],
        notes=notes,
        figure=out_dir / EXPLORE_PNG,
    )
