"""The report's numbers: per-strategy statistics, ranking, Pareto front, paired comparisons.

Pure pandas/scipy/numpy over the rows of the trials table and the final trials' per-image test
tables; nothing here reads files or draws. Only `ok` final-stage rows enter a statistic; every
other status is counted and shown, never averaged in.

Conventions (the report states them too):
- Cells: mean and sd over seeds; the 95% intervals and the comparison with the best follow one
  rule, `SEPARATION_RULE`, the only place it is stated (the notes quote it; the table, the notes,
  the plots and W&B read its verdict from the `separated_from_best` column computed here).
- Rank and Pareto front use the means; the front is over (trainable parameters, fewer is better;
  metric, in its own direction). A dominated strategy names its best-ranked dominator.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from search.report import bootstrap
from search.report.bootstrap import PerImage, per_image_column
from search.shared.metrics import METRICS, Metric, numeric_test_columns, value_range
from trainables.data.splits import exam_id

ALPHA = 0.05  # two-sided level of the paired test and of the intervals (95%)
STATUSES = ("ok", "failed", "stopped_early", "running", "interrupted")
# Seed-level statistics (a t-interval, a paired t-test over seeds) need at least this many seeds:
# over 2-4 seeds a t-interval is either very wide (t(0.975, 1) = 12.7) or, when the seeds happen
# to agree, far too narrow, and it leaves the metric's range.
MIN_SEEDS = 5
SEPARATION_RULE = (
    "A strategy is separated from the best-ranked one when the two-sided p-value of their paired "
    "comparison, Holm-corrected over the strategies compared with the best, is below 0.05. "
    "The comparison and every 95% interval come from a hierarchical bootstrap over seeds and "
    f"test images ({bootstrap.RESAMPLES} seeded resamples of the seeds, then of the test images, "
    "one image draw shared by every seed and strategy, so the comparison is paired on the "
    "images) where the per-image test results exist; else from the seed-level t-interval and "
    f"paired t-test, only with at least {MIN_SEEDS} seeds; else there is none. Intervals are "
    "clipped to the metric's range; overlapping intervals of two means decide nothing, the "
    "paired comparison does."
)


def interval(values) -> dict:
    """n, mean, sd and the t-based 95% CI of the non-missing `values` (NaN where undefined)."""
    data = pd.to_numeric(pd.Series(values, dtype=float), errors="coerce").dropna().to_numpy()
    n = len(data)
    mean = float(data.mean()) if n else math.nan
    sd = float(data.std(ddof=1)) if n > 1 else math.nan
    half = float(stats.t.ppf(1 - ALPHA / 2, n - 1) * sd / math.sqrt(n)) if n > 1 else math.nan
    return {"n": n, "mean": mean, "sd": sd, "ci95_low": mean - half, "ci95_high": mean + half}


def rule_interval(values, scores: PerImage, strategy: str, column: str) -> dict:
    """n, mean, sd over seeds and the 95% interval `SEPARATION_RULE` gives (ci_method says
    which: 'bootstrap', 't' or '' for none), clipped to the column's range."""
    out = interval(values)
    reps = None
    if len(scores.seeds(strategy)) >= bootstrap.MIN_SEEDS and out["n"] > 1:
        reps = scores.replicates(strategy, per_image_column(column))
    if reps is not None:
        out["ci95_low"], out["ci95_high"] = bootstrap.percentile_interval(reps, ALPHA)
        out["ci_method"] = "bootstrap"
    elif out["n"] >= MIN_SEEDS:
        out["ci_method"] = "t"
    else:
        out["ci95_low"] = out["ci95_high"] = math.nan
        out["ci_method"] = ""
    low, high = value_range(column)
    out["ci95_low"], out["ci95_high"] = (
        v if math.isnan(v) else min(max(v, low), high) for v in (out["ci95_low"], out["ci95_high"])
    )
    return out


def per_image_long(trials: pd.DataFrame, per_image: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The per-image rows of every ok final trial that has a table, with strategy, seed and
    trial_name columns (empty when there are none)."""
    final = final_trials(trials)
    frames = []
    for row in final[final["status"] == "ok"].itertuples():
        rows = per_image.get(row.trial_name)
        if rows is not None and len(rows):
            frames.append(
                rows.assign(strategy=row.strategy, seed=int(row.seed), trial_name=row.trial_name)
            )
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


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
    per_image: dict[str, pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """One row per strategy of the final stage: seed counts, metric stats, params, time, rank,
    Pareto flag and the paired comparison with the best strategy (`SEPARATION_RULE`).

    Args:
        trials: all rows of the trials table (`Experiment.read_trials`).
        metric: the metric that ranks (and defines the front).
        strategies: the planned strategies (config order); ones without rows show as missing.
        seeds: the planned seeds; seeds without a row count as 'missing'.
        per_image: the final trials' per-image test tables by trial name (`Results.per_image`);
            without them only seed-level statistics exist (and only with `MIN_SEEDS` seeds).

    Returns:
        The table, sorted by rank (strategies without an ok seed last, unranked).
    """
    final = final_trials(trials)
    scores = PerImage(per_image_long(trials, per_image or {}))
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
            found = rule_interval(values, scores, name, column)
            row |= {f"{column}_{k}": v for k, v in found.items()}
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
    paired = paired_vs_best(final, table, metric, scores)
    table = table.join(paired.set_index("strategy"), on="strategy")
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


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjusted p-values (NaN entries are not tested and stay NaN).

    The i-th smallest of m p-values becomes max over j <= i of min(1, (m - j + 1) * p_(j)).
    """
    p = np.asarray(p_values, dtype=np.float64)
    adjusted = np.full(p.shape, math.nan)
    tested = np.flatnonzero(~np.isnan(p))
    running = 0.0
    for step, index in enumerate(tested[np.argsort(p[tested], kind="stable")]):
        running = max(running, min(1.0, (len(tested) - step) * p[index]))
        adjusted[index] = running
    return adjusted


def _bootstrap_pair(scores: PerImage, best: str, name: str, column: str) -> dict | None:
    """The bootstrap comparison of `name` with `best` on the images both scored, or None."""
    if min(len(scores.seeds(best)), len(scores.seeds(name))) < bootstrap.MIN_SEEDS:
        return None
    theirs, mine = scores.scores(best, column), scores.scores(name, column)
    if theirs is None or mine is None:
        return None
    common = np.isfinite(theirs).any(axis=0) & np.isfinite(mine).any(axis=0)
    if not common.any():
        return None
    diff = scores.replicates(name, column, common) - scores.replicates(best, column, common)
    low, high = bootstrap.percentile_interval(diff, ALPHA)
    seeds = f"{len(scores.seeds(name))}+{len(scores.seeds(best))} seeds"
    return {
        "p_value_vs_best": bootstrap.two_sided_p(diff),
        "diff_vs_best_low": low,
        "diff_vs_best_high": high,
        "test_vs_best": f"bootstrap ({seeds}, {int(common.sum())} images)",
    }


def _t_pair(best_values: pd.Series, values: pd.Series) -> dict:
    """The seed-level paired t-test of `values` against `best_values` (same seeds)."""
    differences = values.to_numpy(float) - best_values.to_numpy(float)
    n = len(differences)
    if np.all(differences == differences[0]):  # no spread: t is 0/0 or infinite
        p_value = 1.0 if differences[0] == 0 else 0.0
        half = 0.0
    else:
        p_value = float(stats.ttest_rel(values, best_values).pvalue)
        half = float(stats.t.ppf(1 - ALPHA / 2, n - 1) * differences.std(ddof=1) / math.sqrt(n))
    mean = float(differences.mean())
    return {
        "p_value_vs_best": p_value,
        "diff_vs_best_low": mean - half,
        "diff_vs_best_high": mean + half,
        "test_vs_best": f"paired t ({n} seeds)",
    }


def compare(
    ok: pd.DataFrame, scores: PerImage, reference: str, name: str, column: str
) -> tuple[int, dict | None]:
    """`name` against `reference` as `SEPARATION_RULE` compares them: (common seeds, the
    bootstrap's or the paired t-test's difference, interval and raw p; None: not tested)."""
    mine = ok[ok["strategy"] == name].set_index("seed")[column]
    theirs = ok[ok["strategy"] == reference].set_index("seed")[column]
    common = sorted(set(mine.index) & set(theirs.index))
    found = _bootstrap_pair(scores, reference, name, per_image_column(column)) or (
        _t_pair(theirs[common], mine[common]) if len(common) >= MIN_SEEDS else None
    )
    return len(common), found


def paired_vs_best(
    final: pd.DataFrame, table: pd.DataFrame, metric: Metric, scores: PerImage | None = None
) -> pd.DataFrame:
    """Each ranked strategy against the best-ranked one, by `SEPARATION_RULE`.

    Returns:
        strategy, n_paired (seeds both finished), diff_vs_best (this strategy's mean - the
        best's), diff_vs_best_low/_high (its 95% interval), test_vs_best (which comparison),
        p_value_vs_best, p_value_vs_best_holm, separated_from_best (True/False/NA: not tested)
        and vs_best (the verdict in words).
    """
    column, scores = metric.column, scores or PerImage(pd.DataFrame())
    ok = final[(final["status"] == "ok") & final[column].notna()] if column in final else final[:0]
    ranked = table[table["rank"].notna()].sort_values("rank", kind="stable")
    best = ranked.iloc[0] if len(ranked) else None
    means = table.set_index("strategy")[f"{column}_mean"]
    out = []
    for _, row in table.iterrows():
        record = {"strategy": row["strategy"], "n_paired": 0, "diff_vs_best": math.nan}
        record |= {"diff_vs_best_low": math.nan, "diff_vs_best_high": math.nan}
        record |= {"test_vs_best": "", "p_value_vs_best": math.nan, "vs_best": ""}
        if best is None or pd.isna(row["rank"]):
            record["vs_best"] = "no finished seed" if best is not None else "no ranked strategy"
        elif row["strategy"] == best["strategy"]:
            record["vs_best"] = "best"
        else:
            name = row["strategy"]
            record["n_paired"], found = compare(ok, scores, best["strategy"], name, column)
            record["diff_vs_best"] = float(means[name] - means[best["strategy"]])
            if found is None:
                record["vs_best"] = (
                    f"not tested: {record['n_paired']} common seed(s), fewer than {MIN_SEEDS}, "
                    "and no per-image results"
                )
            else:
                record |= found
        out.append(record)
    frame = pd.DataFrame(out)
    frame["p_value_vs_best_holm"] = holm(frame["p_value_vs_best"])
    tested = frame["p_value_vs_best_holm"].notna()
    frame["separated_from_best"] = pd.Series(pd.NA, index=frame.index, dtype="boolean")
    frame.loc[tested, "separated_from_best"] = frame.loc[tested, "p_value_vs_best_holm"] < ALPHA
    scale = 100.0 if metric.percent else 1.0
    for i in frame.index[tested]:
        r = frame.loc[i]
        low, high = r["diff_vs_best_low"] * scale, r["diff_vs_best_high"] * scale
        verdict = "separated" if r["separated_from_best"] else "not separated"
        frame.at[i, "vs_best"] = (
            f"{r['diff_vs_best'] * scale:+.2f} [{low:+.2f}, {high:+.2f}], "
            f"p={r['p_value_vs_best']:.3g}, Holm p={r['p_value_vs_best_holm']:.3g}: {verdict} "
            f"({r['test_vs_best']})"
        )
    return frame


# -- honesty checks ----------------------------------------------------------------------------
def shared_exams(split: pd.DataFrame) -> dict[str, list[str]]:
    """Exam prefixes ('010' of '010_2HC.png') of the test side also found on train / val."""
    exams = split.assign(exam=split["filename"].map(exam_id))
    test = set(exams.loc[exams["split"] == "test", "exam"])
    return {
        side: sorted(test & set(exams.loc[exams["split"] == side, "exam"]))
        for side in ("train", "val")
    }
