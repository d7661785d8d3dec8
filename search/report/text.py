"""The report's words: the strategies and tune tables as text, and the notes.

Turns `search.report.stats` tables into the strings a reader sees (in the terminal, report.md
and report.html alike) and states the caveats (failed seeds, one-seed strategies, the
separation rule, exams shared by train and test, encoder weights other than ImageNet).
"""

from __future__ import annotations

import pandas as pd

from search.experiment.folder import CONFIG, SPLIT
from search.report import stats as rs
from search.shared.metrics import METRICS, Metric


def _stat(row, metric: Metric, detail: bool = True) -> str:
    column, scale = metric.column, 100.0 if metric.percent else 1.0
    n, mean = row[f"{column}_n"], row[f"{column}_mean"] * scale
    if n == 0:
        return "-"
    if n == 1:
        return f"{mean:.2f} (n=1, no interval)"
    text = f"{mean:.2f} ± {row[f'{column}_sd'] * scale:.2f}"
    low, high = row[f"{column}_ci95_low"] * scale, row[f"{column}_ci95_high"] * scale
    if pd.isna(low):  # too few seeds for a seed-level interval, and no per-image results
        return f"{text} (n={n}, no interval)" if detail else text
    return f"{text} [{low:.2f}, {high:.2f}]" if detail else text


def _pareto_text(row) -> str:
    if pd.isna(row["pareto_optimal"]):
        return "-"
    return "optimal" if row["pareto_optimal"] else f"dominated by {row['dominated_by']}"


def _percent(value: float) -> str:
    if pd.isna(value):
        return "n/a"
    # 99.98% must not print as 100.0%: that would claim nothing trains
    return f"{value:.2f}%" if round(value, 1) == 100 and value < 100 else f"{value:.1f}%"


def _p_text(p_value: float, fallback: str) -> str:
    return fallback if pd.isna(p_value) else f"p={p_value:.3g}"


def _time(seconds: float) -> str:
    if pd.isna(seconds):
        return "-"
    return f"{seconds / 60:.1f} min" if seconds >= 120 else f"{seconds:.0f} s"


def display_table(table: pd.DataFrame, metric: Metric, compact: bool = False) -> pd.DataFrame:
    """The strategies table as strings, for the terminal (compact), Markdown and HTML."""
    shown = [metric] if compact else [METRICS[c] for c in METRICS]
    if metric not in shown:
        shown.insert(0, metric)
    rows = []
    for _, row in table.iterrows():
        out = {"Rank": "-" if pd.isna(row["rank"]) else str(int(row["rank"]))}
        out |= {"Strategy": row["strategy"], "Seeds": row["seed_status"]}
        for m in shown:
            header = f"{m.unit_label} mean ± sd [95% interval]" if compact else m.unit_label
            out[header] = _stat(row, m)
        for column, header in (("trainable_params", "Trainable"), ("total_params", "Total")):
            if not (compact and column == "total_params"):
                out[header] = "-" if pd.isna(row[column]) else f"{int(row[column]):,}"
        reduction = row["trainable_reduction_pct"]
        out["Reduction"] = _percent(reduction)
        out["Train time"] = _time(row["wall_s_mean"])
        out["Pareto"] = _pareto_text(row)
        if not compact:
            out["Interval"] = row[f"{metric.column}_ci_method"] or "none"
        out["vs best (the rule in Notes)"] = row["vs_best"]
        rows.append(out)
    return pd.DataFrame(rows)


def build_notes(
    table: pd.DataFrame,
    metric: Metric,
    trials: pd.DataFrame,
    config: dict,
    split: pd.DataFrame | None,
    encoder: dict | None = None,
) -> list[str]:
    """The statements a reader needs to trust (or distrust) the table.

    Args:
        table: `stats.strategy_stats` output.
        metric: the ranking metric.
        trials, config, split: the experiment's trials table, config and split (the split is
            None when the experiment has none).
    """
    notes = [
        "Only `ok` final-stage trials enter a statistic; failed, stopped-early, running and "
        "missing seeds are counted in the Seeds column and never averaged in. Cells: mean ± sd "
        "over seeds [95% interval]; n=1 gets no interval. The rule: " + rs.SEPARATION_RULE,
    ]
    warning = few_seeds_warning(table)
    notes += [warning] if warning else []
    final = rs.final_trials(trials)
    for _, row in table[table["seeds_ok"] < table["seeds_planned"]].iterrows():
        failed = final[(final["strategy"] == row["strategy"]) & (final["status"] == "failed")]
        errors = "; ".join(f"seed {int(r.seed)}: {r.error}" for r in failed.itertuples())
        notes.append(
            f"{row['strategy']}: {row['seed_status']}" + (f" ({errors})" if errors else "")
        )
    for name in table.loc[table[f"{metric.column}_n"] == 1, "strategy"]:
        notes.append(f"{name}: n=1, no interval - its rank and Pareto position rest on one seed.")
    for m in METRICS.values():  # an ok seed can lack a value (e.g. HD of an empty mask)
        short = table[table[f"{m.column}_n"] < table["seeds_ok"]]
        notes += [
            f"{r.strategy}: {m.label} over {getattr(r, m.column + '_n')} of {r.seeds_ok} ok "
            "seeds (the others reported no value)."
            for r in short.itertuples()
        ]
    unfinished = int(table["seeds_running"].sum() + table["seeds_missing"].sum())
    if unfinished:
        notes.append(
            f"The experiment is not finished ({unfinished} seeds running or not started):"
            " these numbers will change."
        )
    ranked = table[table["rank"].notna()]
    if len(ranked):
        best = ranked.iloc[0]["strategy"]
        direction = "higher" if metric.higher_is_better else "lower"
        front = table[table["pareto_optimal"].fillna(False).astype(bool)]
        front = front.sort_values("trainable_params")["strategy"].tolist()
        text = (
            f"Ranked by test {metric.label} ({direction} is better), best: {best}. Pareto front "
            f"on the means (fewer trainable parameters, {direction} {metric.label}): "
            f"{' -> '.join(front)}. Compared with {best} by the rule. "
        )
        notes.append(text + verdict_text(ranked, best))
    base = table.loc[table["strategy"] == "baseline", "trainable_params"].dropna()
    if len(base):
        notes.append(f"Reduction = 1 - trainable / baseline's trainable ({int(base.iloc[0]):,}).")
    elif "baseline" in set(table["strategy"]):
        notes.append("Reduction vs baseline: n/a - no baseline row reported its parameter count.")
    else:
        notes.append("Reduction vs baseline: n/a - no baseline strategy in this experiment.")
    notes += honest_notes(trials, config, split, encoder)
    return notes


def verdicts(table: pd.DataFrame) -> dict[str, list[str]]:
    """The ranked strategies but the best, by the rule's verdict: 'separated', 'not separated'
    and 'not tested' - the one reading the notes and the plots share."""
    ranked = table[table["rank"].notna() & (table["vs_best"] != "best")]
    verdict = ranked["separated_from_best"]
    return {
        "separated": ranked.loc[verdict.eq(True).fillna(False), "strategy"].tolist(),
        "not separated": ranked.loc[verdict.eq(False).fillna(False), "strategy"].tolist(),
        "not tested": ranked.loc[verdict.isna(), "strategy"].tolist(),
    }


def verdict_text(table: pd.DataFrame, best: str) -> str:
    """'Not separated from the best: a (Holm p=0.31). Separated from the best: b (...).'"""
    holm = table.set_index("strategy")["p_value_vs_best_holm"]
    parts = []
    for verdict, names in verdicts(table).items():
        if not names:
            continue
        if verdict == "not tested":
            parts.append(
                f"Not tested (fewer than {rs.MIN_SEEDS} common seeds and no per-image results): "
                + ", ".join(names)
                + "."
            )
            continue
        shown = [f"{n} ({_p_text(holm[n], '-').replace('p=', 'Holm p=')})" for n in names]
        parts.append(f"{verdict.capitalize()} from the best: {', '.join(shown)}.")
    return " ".join(parts) if parts else f"no other strategy is ranked beside {best}."


def few_seeds_warning(table: pd.DataFrame) -> str | None:
    """The plain warning of a table whose ranked strategies have fewer than `MIN_SEEDS` ok
    seeds (None when every one has enough)."""
    few = table[table["rank"].notna() & (table["seeds_ok"] < rs.MIN_SEEDS)]
    if few.empty:
        return None
    counts = ", ".join(f"{r.strategy} {r.seeds_ok}" for r in few.itertuples())
    return (
        f"**Warning: too few seeds for seed-level statistics** (ok seeds: {counts}; "
        f"{rs.MIN_SEEDS} needed). No t-interval or t-test is used for these strategies: their "
        "intervals and comparisons come from the bootstrap over seeds and test images where "
        "per-image test results exist, and they get none where those are missing. Run more "
        "seeds (`search.seeds`) for estimates that hold across training runs."
    )


def honest_notes(
    trials: pd.DataFrame,
    config: dict,
    split: pd.DataFrame | None,
    encoder: dict[str, dict] | None = None,
) -> list[str]:
    """Test-train exam sharing, encoder weights other than ImageNet, and the devices."""
    notes = device_notes(trials)
    if split is None:
        notes.append(f"{SPLIT} not found: cannot check whether test exams also appear in train.")
    else:
        shared = rs.shared_exams(split)
        if shared["train"]:
            listed = ", ".join(shared["train"][:10]) + (" ..." if len(shared["train"]) > 10 else "")
            text = (
                f"The test split shares exams with the training split: {len(shared['train'])} "
                f"exam prefix(es) appear in both ({listed}); images of one exam are near "
                "duplicates, so test scores are optimistic (split: grouped avoids this)."
            )
            if shared["val"]:
                text += f" {len(shared['val'])} test exam(s) also appear in val."
            notes.append(text)
    if not config:
        notes.append(
            f"{CONFIG} not found: the planned strategies and seeds (so missing seeds) and the "
            "encoder weights are unknown."
        )
    trial, search = config.get("trial", {}), config.get("search", {})
    weights = str(trial.get("encoder_weights", "unknown"))
    if encoder:
        for network, info in encoder.items():
            cost = f"{info['wall_s'] / 60:.1f} min" if info.get("wall_s") else "no training"
            reused = f", reused from {info['reused_from']}" if info.get("reused_from") else ""
            notes.append(
                f"The {network} encoder weights were not ImageNet: the pretrain stage's, "
                f"{info['description']} (pretraining: {cost}{reused})."
            )
    elif "pretrain" in search.get("stages", []) or (trials["stage"] == "pretrain").any():
        source = search.get("pretrain", {}).get("source")
        notes.append(
            "The encoder weights were not ImageNet: the encoder was pretrained in this "
            "experiment's pretrain stage"
            + (f" on '{source}' data." if source else " (source unknown).")
        )
    elif weights == "none":
        notes.append(
            "The encoder weights were not ImageNet: the encoder started from random "
            "initialisation (encoder_weights: none)."
        )
    elif weights not in ("imagenet", "unknown"):
        notes.append(f"The encoder weights were not ImageNet: checkpoint {weights}.")
    return notes


def device_notes(trials: pd.DataFrame) -> list[str]:
    """Where the final stage's numbers came from: '32 trials on cpu (fp32)'."""
    if "device" not in trials or "precision" not in trials:
        return []
    final = trials[(trials["stage"] == "final") & (trials["status"] == "ok")]
    used = final.groupby([final["device"].fillna("?"), final["precision"].fillna("?")]).size()
    if used.empty:
        return []
    parts = [f"{count} on {device} ({precision})" for (device, precision), count in used.items()]
    return ["Devices of the finished final trials: " + ", ".join(parts) + "."]


def tune_display(tune: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    recipe = table.set_index("strategy")["recipe"]
    rows = []
    for row in tune.itertuples():
        gain = row.gain_val_dice
        rows.append(
            {
                "Strategy": row.strategy,
                "Tune trials (ok/all)": f"{row.tune_ok}/{row.tune_trials}",
                "Best recipe": row.best_recipe or "-",
                "Best val Dice (%)": "-"
                if pd.isna(row.best_val_dice)
                else f"{100 * row.best_val_dice:.2f}",
                "Paper recipe val Dice (%)": "-"
                if pd.isna(row.paper_val_dice)
                else f"{100 * row.paper_val_dice:.2f}",
                "Gain (points)": "n/a" if pd.isna(gain) else f"{100 * gain:+.2f}",
                "Final stage used": recipe.get(row.strategy, "-") or "-",
                "Note": row.note,
            }
        )
    return pd.DataFrame(rows)
