"""The report's numbers: per-strategy statistics, ranking, Pareto front, paired tests, tune gains.

Pure pandas/scipy over the rows of the trials table; nothing here reads files or draws. Only `ok`
final-stage rows enter a statistic; every other status is counted and shown, never averaged in.

Conventions (the report states them too):
- 95% CI = mean +- t(0.975, n-1) * sd / sqrt(n), sd with n-1; n=1 gets no interval.
- Rank and Pareto front use the means; the front is over (trainable parameters, fewer is better;
  metric, in its own direction). A dominated strategy names its best-ranked dominator.
- Each strategy is compared with the best-ranked one by a paired t-test over the seeds both
  finished (scipy.stats.ttest_rel); 'not separated' when p >= 0.05 or the 95% CIs overlap.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from search.shared.metrics import METRICS, Metric, numeric_test_columns
from trainables.core import recipe
from trainables.data.splits import exam_id

ALPHA = 0.05  # two-sided level of the paired test and of the intervals (95%)
STATUSES = ("ok", "failed", "stopped_early", "running", "interrupted")


def interval(values) -> dict:
    """n, mean, sd and the t-based 95% CI of the non-missing `values` (NaN where undefined)."""
    data = pd.to_numeric(pd.Series(values, dtype=float), errors="coerce").dropna().to_numpy()
    n = len(data)
    mean = float(data.mean()) if n else math.nan
    sd = float(data.std(ddof=1)) if n > 1 else math.nan
    half = float(stats.t.ppf(1 - ALPHA / 2, n - 1) * sd / math.sqrt(n)) if n > 1 else math.nan
    return {"n": n, "mean": mean, "sd": sd, "ci95_low": mean - half, "ci95_high": mean + half}


def final_trials(trials: pd.DataFrame) -> pd.DataFrame:
    """The final stage's rows, one per (strategy, seed) - the last written wins."""
    final = trials[trials["stage"] == "final"]
    return final.drop_duplicates(["strategy", "seed"], keep="last").reset_index(drop=True)


def seed_status(counts: dict[str, int], planned: int) -> str:
    """'ok 3/4, failed 1' - every non-ok status that occurred, in a fixed order."""
    parts = [f"ok {counts.get('ok', 0)}/{planned}"]
    others = [s for s in counts if s != "ok" and counts[s]]
    order = [*STATUSES[1:], "missing"]
    others.sort(key=lambda s: order.index(s) if s in order else len(order))
    return ", ".join(parts + [f"{s.replace('_', ' ')} {counts[s]}" for s in others])


def strategy_stats(
    trials: pd.DataFrame,
    metric: Metric,
    strategies: list[str] | None = None,
    seeds: list[int] | None = None,
) -> pd.DataFrame:
    """One row per strategy of the final stage: seed counts, metric stats, params, time, rank,
    Pareto flag and the paired comparison with the best strategy.

    Args:
        trials: all rows of the trials table (`Experiment.read_trials`).
        metric: the metric that ranks (and defines the front).
        strategies: the planned strategies (config order); ones without rows show as missing.
        seeds: the planned seeds; seeds without a row count as 'missing'.

    Returns:
        The table, sorted by rank (strategies without an ok seed last, unranked).
    """
    final = final_trials(trials)
    order = list(dict.fromkeys([*(strategies or []), *final["strategy"].tolist()]))
    columns = [*dict.fromkeys([*METRICS, *numeric_test_columns(trials), metric.column])]
    rows = []
    for name in order:
        mine = final[final["strategy"] == name]
        ok = mine[mine["status"] == "ok"]
        counts = mine["status"].fillna("unknown").value_counts().to_dict()
        planned = max(len(seeds or []), len(mine))
        missing = len(set(seeds or []) - set(mine["seed"].dropna().astype(int)))
        if missing:
            counts["missing"] = missing
            planned = max(planned, len(mine) + missing)
        row = {"strategy": name, "seeds_planned": planned}
        row |= {f"seeds_{s}": int(counts.get(s, 0)) for s in [*STATUSES, "missing"]}
        row["seed_status"] = seed_status(counts, planned)
        row["recipe"] = ",".join(sorted(mine["recipe"].dropna().astype(str).unique()))
        for column in columns:
            values = ok.get(column, [])
            row |= {f"{column}_{k}": v for k, v in interval(values).items()}
        for column in ("trainable_params", "total_params"):  # fixed by the strategy
            known = mine[column].dropna() if column in mine else pd.Series(dtype=float)
            row[column] = int(known.iloc[-1]) if len(known) else pd.NA
        row["wall_s_mean"] = interval(ok["wall_s"])["mean"]
        row["epochs_mean"] = interval(ok["epochs"])["mean"]
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table["trainable_reduction_pct"] = reduction_vs_baseline(table)
    table["rank"] = rank(table, metric)
    optimal, dominated_by = pareto_front(table, metric)
    table["pareto_optimal"], table["dominated_by"] = optimal, dominated_by
    table = table.join(paired_vs_best(final, table, metric).set_index("strategy"), on="strategy")
    return table.sort_values("rank", na_position="last", kind="stable").reset_index(drop=True)


def reduction_vs_baseline(table: pd.DataFrame) -> pd.Series:
    """100 * (1 - trainable / baseline's trainable); NaN without a baseline row."""
    base = table.loc[table["strategy"] == "baseline", "trainable_params"].dropna()
    if base.empty:
        return pd.Series(math.nan, index=table.index)
    trainable = pd.to_numeric(table["trainable_params"], errors="coerce").astype(float)
    return 100.0 * (1.0 - trainable / float(base.iloc[0]))


def rank(table: pd.DataFrame, metric: Metric) -> pd.Series:
    """1 = best mean in the metric's direction; ties share the better rank; no mean, no rank."""
    means = table[f"{metric.column}_mean"]
    return means.rank(ascending=not metric.higher_is_better, method="min").astype("Int64")


def pareto_front(table: pd.DataFrame, metric: Metric) -> tuple[pd.Series, pd.Series]:
    """Pareto flags on the means, and for each dominated strategy its best-ranked dominator.

    B dominates A when B has no more trainable parameters and a mean no worse, and is strictly
    better in one of the two. Strategies without a mean or a parameter count get NA.
    """
    sign = 1.0 if metric.higher_is_better else -1.0
    score = sign * table[f"{metric.column}_mean"].astype(float)
    params = pd.to_numeric(table["trainable_params"], errors="coerce").astype(float)
    usable = score.notna() & params.notna()
    optimal = pd.Series(pd.NA, index=table.index, dtype="boolean")
    dominated_by = pd.Series("", index=table.index, dtype=object)
    for i in table.index[usable]:
        better = (
            usable
            & (params <= params[i])
            & (score >= score[i])
            & ((params < params[i]) | (score > score[i]))
        )
        optimal[i] = not better.any()
        if better.any():
            # best-ranked dominator; among equals, the one with fewer parameters
            best = pd.DataFrame({"s": score[better], "p": params[better]}).sort_values(
                ["s", "p"], ascending=[False, True]
            )
            dominated_by[i] = table.at[best.index[0], "strategy"]
    return optimal, dominated_by


def _ci_overlap(a: pd.Series, b: pd.Series, column: str) -> bool | None:
    """Do the two rows' 95% intervals of `column` overlap? None when either has none."""
    lows = (a[f"{column}_ci95_low"], b[f"{column}_ci95_low"])
    highs = (a[f"{column}_ci95_high"], b[f"{column}_ci95_high"])
    if any(pd.isna(v) for v in (*lows, *highs)):
        return None
    return not (lows[0] > highs[1] or lows[1] > highs[0])


def paired_vs_best(final: pd.DataFrame, table: pd.DataFrame, metric: Metric) -> pd.DataFrame:
    """Paired t-test of each strategy against the best-ranked one, over seeds both finished.

    Returns:
        strategy, n_paired, p_value_vs_best, separated_from_best (True/False/NA), vs_best (text).
    """
    column = metric.column
    ok = final[(final["status"] == "ok") & final[column].notna()] if column in final else final[:0]
    ranked = table[table["rank"].notna()].sort_values("rank", kind="stable")
    out = []
    best = ranked.iloc[0] if len(ranked) else None
    for _, row in table.iterrows():
        record = {"strategy": row["strategy"], "n_paired": 0, "p_value_vs_best": math.nan}
        record |= {"separated_from_best": pd.NA, "vs_best": ""}
        if best is None or pd.isna(row["rank"]):
            record["vs_best"] = "no finished seed" if best is not None else "no ranked strategy"
        elif row["strategy"] == best["strategy"]:
            record["vs_best"] = "best"
        else:
            mine = ok[ok["strategy"] == row["strategy"]].set_index("seed")[column]
            theirs = ok[ok["strategy"] == best["strategy"]].set_index("seed")[column]
            common = sorted(set(mine.index) & set(theirs.index))
            record["n_paired"] = len(common)
            if len(common) < 2:
                record["vs_best"] = f"no test: {len(common)} common seed(s)"
            else:
                record |= _paired_verdict(theirs[common], mine[common], best, row, column)
        out.append(record)
    frame = pd.DataFrame(out)
    frame["separated_from_best"] = frame["separated_from_best"].astype("boolean")
    return frame


def _paired_verdict(best_values, values, best_row, row, column: str) -> dict:
    differences = np.asarray(best_values, dtype=float) - np.asarray(values, dtype=float)
    overlap = _ci_overlap(best_row, row, column)
    if np.allclose(differences, differences[0]) and differences[0] == 0:
        return {"separated_from_best": False, "vs_best": "identical on the common seeds"}
    p_value = float(stats.ttest_rel(best_values, values).pvalue)
    separated = p_value < ALPHA and overlap is False
    reasons = [r for r, hit in [("p >= 0.05", p_value >= ALPHA), ("CIs overlap", overlap)] if hit]
    verdict = "separated" if separated else f"not separated ({', '.join(reasons)})"
    return {
        "p_value_vs_best": p_value,
        "separated_from_best": separated,
        "vs_best": f"p={p_value:.3g}, {verdict}",
    }


# -- the tune stage ----------------------------------------------------------------------------
def recipe_text(row) -> str:
    """'lr 0.0001, exponential (gamma 0.9)' from a row with the recipe keys (NaN: not shown),
    in the words of `trainables.core.recipe.recipe_text`."""
    keys = recipe.RECIPE_KEYS
    given = {k: row.get(k) for k in keys if k == "lr_schedule" or pd.notna(row.get(k))}
    return recipe.recipe_text(given)


def tune_gains(trials: pd.DataFrame, strategies: list[str] | None = None) -> pd.DataFrame:
    """Per strategy: the best tune recipe on val Dice and its gain over the paper's recipe.

    Gain = best ok val_dice - the val_dice of the strategy's `recipe == 'paper'` tune row; when
    that row is absent or did not finish, the gain is NaN and `note` says why.
    """
    tune = trials[trials["stage"] == "tune"]
    order = list(dict.fromkeys([*(strategies or []), *tune["strategy"].tolist()]))
    rows = []
    for name in order:
        mine = tune[tune["strategy"] == name]
        if mine.empty:
            continue
        ok = mine[(mine["status"] == "ok") & mine["val_dice"].notna()]
        row = {"strategy": name, "tune_trials": len(mine), "tune_ok": len(ok)}
        row |= {"best_recipe": "", "best_val_dice": math.nan, "paper_val_dice": math.nan}
        row |= {"gain_val_dice": math.nan, "note": ""}
        if ok.empty:
            row["note"] = "no tune trial finished"
            rows.append(row)
            continue
        best = ok.loc[ok["val_dice"].idxmax()]
        row["best_recipe"], row["best_val_dice"] = recipe_text(best), float(best["val_dice"])
        paper = mine[mine["recipe"] == "paper"]
        paper_ok = paper[(paper["status"] == "ok") & paper["val_dice"].notna()]
        if paper.empty:
            row["note"] = "the paper's recipe was not among the tune trials"
        elif paper_ok.empty:
            statuses = ", ".join(sorted(paper["status"].fillna("unknown").unique()))
            row["note"] = f"the paper's recipe did not finish ({statuses}); no like-for-like gain"
        else:
            row["paper_val_dice"] = float(paper_ok["val_dice"].max())
            row["gain_val_dice"] = row["best_val_dice"] - row["paper_val_dice"]
            if best["recipe"] == "paper":
                row["note"] = "the paper's recipe was the best"
            paper_row = paper_ok.loc[paper_ok["val_dice"].idxmax()]
            epochs = (best["epochs"], paper_row["epochs"])
            if all(pd.notna(e) for e in epochs) and epochs[0] != epochs[1]:
                # e.g. ASHA stopped one of them early: the two val Dice are not like for like
                row["note"] = (
                    f"the best ran {int(epochs[0])} epoch(s), the paper's recipe "
                    f"{int(epochs[1])}: not like for like"
                )
        rows.append(row)
    return pd.DataFrame(rows)


# -- honesty checks ----------------------------------------------------------------------------
def shared_exams(split: pd.DataFrame) -> dict[str, list[str]]:
    """Exam prefixes ('010' of '010_2HC.png') of the test side also found on train / val."""
    exams = split.assign(exam=split["filename"].map(exam_id))
    test = set(exams.loc[exams["split"] == "test", "exam"])
    return {
        side: sorted(test & set(exams.loc[exams["split"] == side, "exam"]))
        for side in ("train", "val")
    }
