"""Search efficiency: does the explore stage's search beat random search, or more seeds of the
paper's 8-strategy grid, at equal compute?

`python -m search.bench.efficiency --out DIR` replays each search algorithm (NSGA-II, Optuna's
multi-objective TPE and random search, each with and without ASHA, and the paper's grid) for
several search seeds against a table of REAL trials (`search/bench/data/explore_table.csv`,
made by `python -m search.bench.table` from a `configs/bench_explore_table.yaml` run;
configurations it lacks come from a surrogate fitted on it, `search.bench.surrogate`), counts
the training epochs each spends, and reports the hypervolume of the validation front
(Dice up, log10 trainable parameters down, `search.bench.hypervolume.REFERENCE`) against the
epochs spent: DIR/efficiency.md (the table: median and range over seeds at a few budgets, the
ratio to random search), DIR/efficiency.png (the curves), DIR/curves.csv (every seed's curve),
DIR/surrogate_cv.csv (the surrogate's cross-validated error per epoch). `--check CSV` adds a
real search's trials (a table of the same form, e.g. the `configs/bench_explore_check.yaml`
run) as one more curve, compared with the replayed spread of the same algorithm.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from search.bench.hypervolume import REFERENCE, Event, curve, epochs_spent
from search.bench.replay import ALGORITHMS, Oracle, Setup, replay
from search.bench.surrogate import MODELS, best_model, cross_validate, epoch_agreement, fit
from search.bench.table import dice_columns, read_table

TABLE = Path(__file__).parent / "data" / "explore_table.csv"
DEFAULT_ALGORITHMS = ALGORITHMS
STEP = 4  # epochs between two points of a curve
COLOURS = {"nsga2": "C0", "tpe": "C2", "random": "C7", "grid": "C3"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m search.bench.efficiency",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", required=True, help="folder for the table, plot and curves")
    parser.add_argument("--table", default=str(TABLE), help="the table of real trials (CSV)")
    parser.add_argument("--seeds", type=int, default=10, help="search seeds per algorithm")
    parser.add_argument("--budget", type=int, default=192, help="training epochs per search")
    parser.add_argument(
        "--budgets", default="32,64,96,144,192", help="epochs at which the table reports"
    )
    parser.add_argument(
        "--algorithms", default=",".join(DEFAULT_ALGORITHMS), help=f"of {list(ALGORITHMS)}"
    )
    parser.add_argument("--population", type=int, default=8, help="NSGA-II's population")
    parser.add_argument("--grace-period", type=int, default=2, help="ASHA's grace period")
    parser.add_argument("--surrogate", default="auto", choices=["auto", *MODELS])
    parser.add_argument("--check", help="a real search's trials (table CSV) to compare")
    parser.add_argument("--check-algorithm", default="nsga2+asha", help="what --check ran")
    parser.add_argument(
        "--fit-check",
        action="store_true",
        help="also fit the surrogate on --check's trials (then the check is not independent)",
    )
    args = parser.parse_args(argv)
    try:
        args.budgets = [int(b) for b in args.budgets.split(",") if b.strip()]
    except ValueError:
        parser.error(f"--budgets: comma-separated epochs, got {args.budgets!r}")
    args.algorithms = [a.strip() for a in args.algorithms.split(",") if a.strip()]
    unknown = [a for a in args.algorithms + [args.check_algorithm] if a not in ALGORITHMS]
    problems = [f"--algorithms: unknown {unknown}; valid: {list(ALGORITHMS)}"] if unknown else []
    for name in ("seeds", "budget", "population", "grace_period"):
        if getattr(args, name) < 1 or (name == "population" and args.population < 2):
            problems.append(f"--{name.replace('_', '-')}: must be a positive count")
    if not args.budgets or min(args.budgets) < 1 or max(args.budgets) > args.budget:
        problems.append(f"--budgets: each in 1..--budget ({args.budget}), got {args.budgets}")
    if args.check and not Path(args.check).is_file():
        problems.append(f"--check: no such file {args.check}")
    if args.fit_check and not args.check:
        problems.append("--fit-check: needs --check")
    if problems:
        parser.error("; ".join(problems))
    return args


def run(args: argparse.Namespace) -> dict:
    start = time.perf_counter()
    table = read_table(args.table)
    checked = read_table(args.check) if args.check else None
    if args.fit_check:  # the check's trials as table rows too (looked up and fitted)
        table = pd.concat([table, checked.assign(source="explore")], ignore_index=True)
    epochs = len(dice_columns(table))
    encoders = sorted(table.loc[table["source"] == "explore", "encoder"].unique())
    if not encoders:
        raise SystemExit(f"{args.table}: no 'explore' rows to search over")
    cv = cross_validate(table, encoders)
    kind = best_model(cv) if args.surrogate == "auto" else args.surrogate
    oracle = Oracle(table, fit(table, kind, encoders), encoders)
    if args.grace_period > epochs:
        raise SystemExit(f"--grace-period {args.grace_period}: above the table's {epochs} epochs")
    setup = Setup(tuple(encoders), epochs, args.budget, args.population, args.grace_period)
    grid = list(range(STEP, args.budget + 1, STEP))
    rows, finals = [], {}
    for algorithm in args.algorithms:
        for seed in range(args.seeds):
            events = replay(algorithm, seed, oracle, setup)
            for budget, hv in zip(grid, curve(events, grid), strict=True):
                rows.append({"algorithm": algorithm, "seed": seed, "epochs": budget, "hv": hv})
            finals[(algorithm, seed)] = (epochs_spent(events), len(events))
    curves = pd.DataFrame(rows)
    check = None
    if args.check:
        events = check_events(checked)
        check = pd.DataFrame({"epochs": grid, "hv": curve(events, grid)})
        check = check[check["epochs"] <= epochs_spent(events) + STEP]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    curves.to_csv(out / "curves.csv", index=False)
    cv.to_csv(out / "surrogate_cv.csv", index=False)
    summary = summarise(curves, args.budgets)
    facts = {
        "table": str(args.table),
        "table_rows": int(len(table)),
        "explore_rows": int((table["source"] == "explore").sum()),
        "grid_rows": int((table["source"] == "grid").sum()),
        "epochs_per_trial": epochs,
        "encoders": encoders,
        "surrogate": kind,
        "surrogate_hits": oracle.hits,
        "surrogate_misses": oracle.misses,
        "reference": {"dice": REFERENCE.dice, "log10_params": REFERENCE.log_params},
        "seeds": args.seeds,
        "fit_check": bool(args.fit_check),
        "budget": args.budget,
        "population": args.population,
        "grace_period": args.grace_period,
        "grid_epochs_measured": int(table.loc[table["source"] == "grid", "epochs_trained"].sum()),
        "rank_agreement_with_last_epoch": epoch_agreement(table),
        "command": "python -m search.bench.efficiency " + " ".join(sys.argv[1:]),
        "wall_s": round(time.perf_counter() - start, 1),
    }
    if check is not None:
        facts["check"] = check_verdict(curves, check, args.check_algorithm)
        check.to_csv(out / "check_curve.csv", index=False)
    (out / "efficiency.json").write_text(json.dumps(facts, indent=1, default=str))
    (out / "efficiency.md").write_text(markdown(summary, cv, kind, facts))
    plot(curves, check, args.check_algorithm, out / "efficiency.png")
    print((out / "efficiency.md").read_text())
    return facts


def check_events(trials: pd.DataFrame) -> list[Event]:
    """A real search's trials, in the order they ended, as events (a trial ASHA stopped spends
    its epochs and adds no point to the front)."""
    trials = trials.sort_values("ended", kind="stable")
    return [
        Event(
            int(r.epochs_trained),
            float(r.val_dice) if r.status == "ok" else float("nan"),
            float(np.log10(r.trainable_params)),
            i,
        )
        for i, r in enumerate(trials.itertuples())
    ]


def summarise(curves: pd.DataFrame, budgets: list[int]) -> pd.DataFrame:
    """Median, quartiles and range over seeds at each budget; the ratio of medians to random's."""
    picked = curves[curves["epochs"].isin(budgets)]
    stats = picked.groupby(["algorithm", "epochs"])["hv"].describe()
    stats = stats.rename(columns={"50%": "median", "25%": "q1", "75%": "q3"}).reset_index()
    if "random" in set(stats["algorithm"]):
        base = stats[stats["algorithm"] == "random"].set_index("epochs")["median"]
        stats["vs_random"] = stats["median"] / stats["epochs"].map(base)
    return stats


def check_verdict(curves: pd.DataFrame, check: pd.DataFrame, algorithm: str) -> dict:
    """Where the real run's curve lies in the replayed seeds' range of the same algorithm."""
    same = curves[curves["algorithm"] == algorithm].groupby("epochs")["hv"]
    lo, hi = same.min(), same.max()
    merged = check.assign(lo=check["epochs"].map(lo), hi=check["epochs"].map(hi))
    inside = (merged["hv"] >= merged["lo"] - 1e-9) & (merged["hv"] <= merged["hi"] + 1e-9)
    return {
        "algorithm": algorithm,
        "points": int(len(merged)),
        "inside": int(inside.sum()),
        "last": merged.iloc[-1][["epochs", "hv", "lo", "hi"]].to_dict() if len(merged) else {},
    }


def markdown(summary: pd.DataFrame, cv: pd.DataFrame, kind: str, facts: dict) -> str:
    lines = [
        "# Search efficiency (hypervolume of the validation front against epochs spent)",
        "",
        f"Reference point {REFERENCE}; {facts['seeds']} search seeds per algorithm; "
        f"budget {facts['budget']} epochs; {facts['epochs_per_trial']} epochs per trial; "
        f"NSGA-II population {facts['population']}; ASHA grace period "
        f"{facts['grace_period']} (reduction factor 4). Table: {facts['table']} "
        f"({facts['explore_rows']} explore + {facts['grid_rows']} grid trials); surrogate "
        f"`{kind}` for the {facts['surrogate_misses']} proposals the table lacks "
        f"({facts['surrogate_hits']} looked up).",
        "",
        "Hypervolume: median [min - max] over seeds; x = median / random search's median.",
        "",
    ]
    budgets = sorted(summary["epochs"].unique())
    lines.append("| algorithm | " + " | ".join(f"{b} epochs" for b in budgets) + " |")
    lines.append("| --- |" + " ---: |" * len(budgets))
    for algorithm, rows in summary.groupby("algorithm", sort=False):
        cells = []
        for b in budgets:
            r = rows[rows["epochs"] == b]
            if r.empty:
                cells.append("-")
                continue
            r = r.iloc[0]
            ratio = (
                f" x{r['vs_random']:.2f}" if "vs_random" in r and pd.notna(r["vs_random"]) else ""
            )
            cells.append(f"{r['median']:.3f} [{r['min']:.3f} - {r['max']:.3f}]{ratio}")
        lines.append(f"| {algorithm} | " + " | ".join(cells) + " |")
    if "grid" in set(summary["algorithm"]) and facts["grid_epochs_measured"] < max(budgets):
        lines += [
            "",
            f"grid: {facts['grid_epochs_measured']} epochs measured (every strategy x seed in the "
            "table); beyond that its curve stays where it is (no seeds left to train).",
        ]
    agreement = ", ".join(
        f"epoch {e}: {r:.2f}" for e, r in facts["rank_agreement_with_last_epoch"].items()
    )
    lines += ["", f"Rank agreement with the last epoch's Dice (Spearman, table rows): {agreement}."]
    lines += ["", "Surrogate, cross-validated error of validation Dice per epoch:", ""]
    lines.append("| model | epoch | RMSE | MAE | rank corr. | rows |")
    lines.append("| --- | ---: | ---: | ---: | ---: | ---: |")
    for r in cv.itertuples():
        lines.append(
            f"| {r.model} | {r.epoch} | {r.rmse:.4f} | {r.mae:.4f} | {r.rank_corr:.2f} | {r.rows} |"
        )
    if "check" in facts:
        c = facts["check"]
        lines += [
            "",
            f"Real-vs-replay: the real {c['algorithm']} run's curve lies inside the replayed "
            f"seeds' range at {c['inside']} of {c['points']} points (every {STEP} epochs); at "
            f"its end: {json.dumps({k: round(float(v), 4) for k, v in c['last'].items()})}"
            + (
                " (its trials were in the surrogate's fit too: --fit-check)."
                if facts["fit_check"]
                else " (its trials are not in the table or the surrogate's fit)."
            ),
        ]
    lines += ["", f"Command: `{facts['command']}`; wall time {facts['wall_s']} s.", ""]
    return "\n".join(lines)


def plot(curves: pd.DataFrame, check, check_algorithm: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.6), dpi=100)
    for algorithm, rows in curves.groupby("algorithm", sort=False):
        g = rows.groupby("epochs")["hv"]
        x = g.median().index.to_numpy()
        colour = COLOURS.get(algorithm.partition("+")[0], "C4")
        style = "--" if algorithm.endswith("+asha") else "-"
        ax.plot(x, g.median().to_numpy(), style, color=colour, label=f"{algorithm} (median)")
        q1, q3 = g.quantile(0.25).to_numpy(), g.quantile(0.75).to_numpy()
        ax.fill_between(x, q1, q3, color=colour, alpha=0.08 if style == "--" else 0.15, lw=0)
    if check is not None:
        ax.plot(check["epochs"], check["hv"], "k:", lw=2.2, label=f"real {check_algorithm} run")
    ax.set_xlabel("training epochs spent")
    ax.set_ylabel("hypervolume (val Dice x decades)")
    ax.set_title(
        f"Validation-front hypervolume (median, band: quartiles over seeds), reference {REFERENCE}",
        fontsize=8,
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    run(parse_args(argv))


if __name__ == "__main__":
    main()
