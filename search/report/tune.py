"""The report's tune-stage section: per strategy, the best recipe's gain over the paper's, and
which recipe parameters mattered (Optuna's PED-ANOVA importances, with a bar chart).

Importance is computed on an in-memory Optuna study rebuilt from the stage's rows of the trials
table, as the stage's own study records them (`search.driver.stages.history`): a trial that
ended ok or was stopped early by ASHA is complete with its validation Dice; others are left out.
`lr` is log-scaled, `lr_schedule` categorical, the decay keys (`lr_gamma`, `lr_step_size`) exist
only for the schedules that read them. PED-ANOVA (Watanabe et al., IJCAI 2023) asks which
parameters' values set the top trials apart from all of them: per parameter, the Pearson
divergence between the two Parzen densities. fANOVA would need scikit-learn, which FreezeFrame
does not install.

- `lr` and `lr_schedule`: evaluated together over all complete trials; shares of their sum.
- A decay key: evaluated with `lr` (and `lr_schedule` when more than one of its schedules ran)
  over the trials whose schedule reads it; its share there. So each number says how much of what
  set the best trials apart it carried, among the parameters those trials all had.
- At least `MIN_TRIALS` complete trials per evaluation (else the report says so, no number);
  the top quantile holds at least `TOP_TRIALS` trials (Optuna's advice for PED-ANOVA), i.e.
  max(10%, TOP_TRIALS / n).
"""

from __future__ import annotations

import inspect
import math
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from trainables.core import recipe  # noqa: E402

IMPORTANCE_PNG = "importance.png"
MIN_TRIALS = 10
TOP_TRIALS = 5
DECAY = tuple(key for key in recipe.DRAWS if key != "lr")  # lr_gamma, lr_step_size
PARAMS = ("lr", "lr_schedule", *DECAY)
COMPLETE = ("ok", "stopped_early")
# With a few dozen trials PED-ANOVA finds some importance in noise (a continuous key's density
# over a handful of top trials is never flat): each importance is checked against the same
# study with its scores shuffled among the trials, SHUFFLES times (seeded).
SHUFFLES = 19
SEED = 0


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


# -- parameter importance ----------------------------------------------------------------------
def complete_tune_rows(trials: pd.DataFrame, strategy: str) -> pd.DataFrame:
    """The strategy's tune trials that count as complete, with their proposed keys."""
    rows = trials[(trials["stage"] == "tune") & (trials["strategy"] == strategy)]
    rows = rows.drop_duplicates("trial_name", keep="last")
    rows = rows[rows["status"].isin(COMPLETE) & pd.to_numeric(rows["val_dice"]).notna()]
    rows = rows[rows["lr"].notna() & rows["lr_schedule"].notna()]
    keep = [
        all(pd.notna(row.get(key)) for key in recipe.proposed_keys(str(row["lr_schedule"])))
        for row in rows.to_dict("records")
    ]
    return rows[keep]


def _distributions(rows: pd.DataFrame, ranges: dict) -> dict:
    """Each key's Optuna distribution: the config's `search.tune` bounds, widened to hold every
    value of `rows` (the proposals as `recipe_params` gives them; a config edited since, or
    none)."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    def bounds(key: str, low: str | int, high: str) -> tuple[float, float]:
        values = pd.to_numeric(rows[key], errors="coerce").dropna()
        given = [ranges.get(low) if isinstance(low, str) else low, ranges.get(high)]
        found = [v for v in [*given, values.min(), values.max()] if v is not None and pd.notna(v)]
        return min(found), max(found)

    out = {}
    for key, draw in recipe.DRAWS.items():
        if key in rows and rows[key].notna().any():
            low, high = bounds(key, draw.low, draw.high)
            if draw.kind == "int":
                out[key] = IntDistribution(int(low), int(high))
            else:
                out[key] = FloatDistribution(float(low), float(high), log=draw.log)
    schedules = [*ranges.get("schedules", []), *rows["lr_schedule"].astype(str)]
    out["lr_schedule"] = CategoricalDistribution(list(dict.fromkeys(schedules)))
    return out


def _evaluator(trials: int):
    """PED-ANOVA whose top quantile holds at least `TOP_TRIALS` of `trials` (the argument is
    `target_quantile` from Optuna 5, `baseline_quantile` in 4.x)."""
    from optuna.importance import PedAnovaImportanceEvaluator

    quantile = max(0.1, TOP_TRIALS / trials)
    names = inspect.signature(PedAnovaImportanceEvaluator).parameters
    key = "target_quantile" if "target_quantile" in names else "baseline_quantile"
    return PedAnovaImportanceEvaluator(**{key: quantile})


def ped_anova(
    rows: pd.DataFrame, params: list[str], ranges: dict
) -> tuple[dict[str, float], dict[str, bool]]:
    """PED-ANOVA's importances of `params` over `rows` as shares (summing to 1, or all 0), and
    whether each is above chance: above its importance in each of `SHUFFLES` studies whose
    scores were shuffled among the same trials (a permutation test, p <= 1 / (SHUFFLES + 1))."""
    import optuna

    proposals = [recipe.recipe_params(row) for row in rows.to_dict("records")]
    dists = _distributions(pd.DataFrame(proposals), ranges)

    def raw(scores) -> dict[str, float]:
        study = optuna.create_study(direction="maximize")
        study.add_trials(
            [
                optuna.trial.create_trial(
                    params=values,
                    distributions={key: dists[key] for key in values},
                    value=float(score),
                )
                for values, score in zip(proposals, scores, strict=True)
            ]
        )
        found = optuna.importance.get_param_importances(
            study, evaluator=_evaluator(len(proposals)), params=params, normalize=False
        )
        return {p: found.get(p, 0.0) for p in params}

    scores = rows["val_dice"].to_numpy(dtype=float)
    rng = np.random.default_rng(SEED)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "new study created" line
    try:
        with warnings.catch_warnings():  # experimental in 4.x; thin regimes warn in 5.x
            warnings.simplefilter("ignore")
            found = raw(scores)
            chance = [raw(rng.permutation(scores)) for _ in range(SHUFFLES)]
    finally:
        optuna.logging.set_verbosity(verbosity)
    total = sum(found.values())
    shares = {p: found[p] / total if total > 0 else 0.0 for p in params}
    return shares, {p: found[p] > max(c[p] for c in chance) for p in params}


def importances(trials: pd.DataFrame, config: dict, strategies: list[str]) -> pd.DataFrame:
    """Per strategy with tune trials: trials (complete ones), one share per `PARAMS` key (NaN
    where not evaluated), `<key>_trials` for the decay keys, and a note."""
    ranges = config.get("search", {}).get("tune", {})
    tune = trials[trials["stage"] == "tune"] if "stage" in trials else trials[:0]
    order = list(dict.fromkeys([*strategies, *tune["strategy"].tolist()]))
    out = []
    for name in order:
        if tune.empty or not (tune["strategy"] == name).any():
            continue
        rows = complete_tune_rows(tune, name)
        record = {"strategy": name, "trials": len(rows)} | {p: math.nan for p in PARAMS}
        record |= {f"{p}_above_chance": False for p in PARAMS}
        record |= {f"{key}_trials": 0 for key in DECAY} | {"note": ""}
        if len(rows) < MIN_TRIALS:
            record["note"] = too_few(len(rows))
            out.append(record)
            continue
        shares, above = ped_anova(rows, ["lr", "lr_schedule"], ranges)
        record |= shares | {f"{p}_above_chance": above[p] for p in shares}
        for key in DECAY:
            reads = rows["lr_schedule"].map(lambda s, k=key: k in recipe.proposed_keys(str(s)))
            having = rows[reads]
            record[f"{key}_trials"] = len(having)
            if len(having) >= MIN_TRIALS:
                several = having["lr_schedule"].nunique() > 1
                params = ["lr", *(["lr_schedule"] if several else []), key]
                shares, above = ped_anova(having, params, ranges)
                record[key], record[f"{key}_above_chance"] = shares[key], above[key]
        out.append(record)
    return pd.DataFrame(out)


def too_few(trials: int) -> str:
    return f"too few complete tune trials for importance ({trials}; at least {MIN_TRIALS})"


def importance_display(found: pd.DataFrame) -> pd.DataFrame:
    """The importances as strings: shares with 2 decimals, '(chance)' where shuffled scores
    gave as much, '-' where not evaluated."""

    def share(row: dict, key: str) -> str:
        value = row[key]
        if pd.isna(value):
            return "-"
        return f"{value:.2f}" + ("" if row[f"{key}_above_chance"] else " (chance)")

    rows = []
    for row in found.to_dict("records"):
        shown = {"Strategy": row["strategy"], "Complete trials": str(row["trials"])}
        shown |= {"lr": share(row, "lr"), "lr_schedule": share(row, "lr_schedule")}
        for key in DECAY:
            shown[f"{key} (its trials)"] = f"{share(row, key)} ({row[f'{key}_trials']})"
        rows.append(shown | {"Note": row["note"] or "-"})
    return pd.DataFrame(rows)


def importance_figure(found: pd.DataFrame):
    """One horizontal bar chart per evaluated strategy; decay keys (evaluated over their own
    trials) hatched, importances not above chance grey. None when no strategy had enough
    trials."""
    drawn = found[found["lr"].notna()] if len(found) else found
    if drawn.empty:
        return None
    columns = min(len(drawn), 4)
    lines = math.ceil(len(drawn) / columns)
    fig, axes = plt.subplots(
        lines,
        columns,
        figsize=(7.0, 1.9 * lines + 0.5),
        squeeze=False,
        sharex=True,
        sharey=True,
        layout="constrained",
    )
    for ax, row in zip(axes.flat, drawn.to_dict("records"), strict=False):
        values = [0.0 if pd.isna(row[p]) else row[p] for p in PARAMS]
        bars = ax.barh(range(len(PARAMS)), values, color="#1f5fa8")
        for bar, key in zip(bars, PARAMS, strict=True):
            if not row[f"{key}_above_chance"]:
                bar.set_facecolor("#b5b5b5")  # no more than shuffled scores give
            if key in DECAY:
                bar.set_hatch("///")
            if pd.isna(row[key]):
                ax.text(0.02, bar.get_y() + 0.4, "too few trials", fontsize=7, va="center")
        ax.set_yticks(range(len(PARAMS)), PARAMS, fontsize=8)
        ax.set_xlim(0, 1)
        ax.set_title(f"{row['strategy']}\n{row['trials']} trials", fontsize=8)
        ax.tick_params(axis="x", labelsize=8)
        ax.grid(True, axis="x", color="#e5e5e5", lw=0.6)
        ax.set_axisbelow(True)
    axes[0, 0].invert_yaxis()  # once: the y axis is shared; lr on top
    for index, ax in enumerate(axes.flat[: len(drawn)]):
        if index + columns >= len(drawn):  # nothing drawn below it: it shows the x scale
            ax.xaxis.set_tick_params(labelbottom=True)
    for ax in list(axes.flat)[len(drawn) :]:
        ax.set_axis_off()
    fig.supxlabel(
        "PED-ANOVA importance (share; hatched: within the trials that use the key; grey: no "
        "more than shuffled scores give)",
        fontsize=8,
    )
    return fig


def save_importance(found: pd.DataFrame, out_dir: Path) -> Path | None:
    """The bar chart as `IMPORTANCE_PNG` in `out_dir`; None when nothing was drawn."""
    fig = importance_figure(found)
    if fig is None:
        return None
    fig.savefig(out_dir / IMPORTANCE_PNG, dpi=200)
    plt.close(fig)
    return out_dir / IMPORTANCE_PNG
