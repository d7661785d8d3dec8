"""`python -m search.report EXPERIMENT_DIR`: the ranked, honest summary of one experiment.

Reads only saved results (trials.csv, config.yaml, split.csv), so it works on a finished, a
running or a copied experiment, at a local path or a storage URI (s3://, gs://, file://). Writes
report.md, report.html (self-contained), strategies.csv, pareto.png/.svg and boxplot.png to
--out (default EXP/report/, or ./report_<name>/ for a URI), prints the table and the notes,
and with --wandb logs the table and plots to the experiment's W&B group.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from search import report_plots as plots
from search import report_stats as rs
from search import report_text as rt
from search.storage import ExperimentStore, is_uri

FILES = ("report.md", "report.html", "strategies.csv", "pareto.png", "pareto.svg", "boxplot.png")


@dataclass
class Experiment:
    """What the report reads from an experiment folder."""

    name: str
    location: str
    trials: pd.DataFrame
    config: dict = field(default_factory=dict)
    split: pd.DataFrame | None = None


@dataclass
class ReportResult:
    table: pd.DataFrame  # strategies.csv: one row per strategy, in rank order
    text: str  # what the terminal shows
    out_dir: Path
    notes: list[str] = field(default_factory=list)
    tune: pd.DataFrame = field(default_factory=pd.DataFrame)


def load_experiment(exp_dir: str) -> Experiment:
    """Read an experiment folder (path or URI). Raises FileNotFoundError without trials.csv."""
    location = str(exp_dir).rstrip("/")
    parent, _, name = location.rpartition("/")
    if not is_uri(location):
        path = Path(location).expanduser().resolve()
        parent, name = str(path.parent), path.name
    store = ExperimentStore(parent, name)
    if not store.exists("trials.csv"):
        raise FileNotFoundError(f"no trials.csv in {location} - has the search started there?")
    trials = pd.read_csv(io.StringIO(store.read_text("trials.csv")))
    config = yaml.safe_load(store.read_text("config.yaml")) if store.exists("config.yaml") else {}
    split = None
    if store.exists("split.csv"):
        split = pd.read_csv(io.StringIO(store.read_text("split.csv")), dtype=str)
    # The folder name, not search.name: trial runs use it as their W&B group too.
    return Experiment(name, store.uri, trials, config or {}, split)


def log_to_wandb(
    exp: Experiment,
    table: pd.DataFrame,
    out_dir: Path,
    plotly_fig,
    metric: str,
    mode: str,
    project: str,
) -> None:
    """A job_type='report' run in the experiment's group: the table, the plots. No key is written."""
    import wandb

    run = wandb.init(
        project=project,
        group=exp.name,
        job_type="report",
        name=f"report-{metric}",
        mode=mode,
        dir=None if os.environ.get("WANDB_DIR") else str(out_dir),
        config={"experiment": exp.location, "metric": metric},
        reinit="create_new",
        settings=wandb.Settings(console="off", x_disable_stats=True, silent=True),
    )
    plain = table.astype(object).where(table.notna(), None)
    run.log(
        {
            "strategies": wandb.Table(dataframe=plain),
            "pareto": wandb.Image(str(out_dir / "pareto.png")),
            "boxplot": wandb.Image(str(out_dir / "boxplot.png")),
            "pareto_interactive": wandb.Plotly(plotly_fig),
        }
    )
    run.finish()


def build_report(
    exp_dir: str,
    metric: str = "test_dice",
    out_dir: str | None = None,
    wandb_mode: str = "disabled",
    wandb_project: str | None = None,
) -> ReportResult:
    """Compute, draw and write the report of one experiment.

    Args:
        exp_dir: the experiment folder: a local path or a URI (s3://, gs://, file://).
        metric: the test_* column that ranks the strategies and defines the Pareto front.
        out_dir: where the files go (default EXP/report, or ./report_<name> for a URI).
        wandb_mode: online, offline or disabled.
        wandb_project: the W&B project (default: the config's search.wandb_project).

    Returns:
        The strategies table, the terminal text and the output folder.
    """
    exp = load_experiment(exp_dir)
    info = rs.get_metric(metric, exp.trials)
    search = exp.config.get("search", {})
    table = rs.strategy_stats(exp.trials, info, search.get("strategies"), search.get("seeds"))
    if table.empty:
        raise ValueError(f"{exp.location}: trials.csv has no final-stage rows yet")
    out = (
        Path(out_dir)
        if out_dir
        else (Path(f"report_{exp.name}") if is_uri(exp_dir) else Path(exp.location) / "report")
    )
    out.mkdir(parents=True, exist_ok=True)
    notes = rt.build_notes(table, info, exp.trials, exp.config, exp.split)
    tune = rs.tune_gains(exp.trials, search.get("strategies"))
    table.to_csv(out / "strategies.csv", index=False)

    plots.save(plots.pareto_figure(table, info), out / "pareto.png", out / "pareto.svg")
    plots.save(plots.box_figure(table, rs.final_trials(exp.trials), info), out / "boxplot.png")
    plotly_fig = plots.plotly_pareto(table, info)

    title = f"FreezeFrame report: {exp.name}"
    direction = "higher" if info.higher_is_better else "lower"
    intro = (
        f"Experiment {exp.location}; ranked by test {info.label} ({direction} is better). "
        "Cells: mean ± sd [95% CI] over seeds."
    )
    shown, tune_shown = rt.display_table(table, info), rt.tune_display(tune, table)
    (out / "report.md").write_text(
        rt.markdown_page(title, intro, shown, notes, tune_shown), encoding="utf-8"
    )
    rt.write_html(
        out / "report.html", title, intro, shown, notes, plotly_fig, out / "boxplot.png", tune_shown
    )
    compact = rt.display_table(table, info, compact=True).to_string(index=False)
    text = "\n".join([title, intro, compact, "", *[f"- {n}" for n in notes], f"Files: {out}"])
    if wandb_mode != "disabled":
        project = wandb_project or search.get("wandb_project") or "freezeframe"
        try:
            log_to_wandb(exp, table, out, plotly_fig, metric, wandb_mode, project)
        except Exception as err:  # the files are written; W&B only holds a copy of them
            text += (
                f"\nW&B logging failed ({type(err).__name__}: {err}); the files above are complete."
            )
    return ReportResult(table, text, out, notes, tune)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m search.report", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("experiment", help="experiment folder: a path, or s3:// gs:// file:// URI")
    parser.add_argument(
        "--metric",
        default="test_dice",
        help=f"test column to rank by, e.g. {', '.join(rs.METRICS)}",
    )
    parser.add_argument(
        "--out",
        default=None,
        help="output folder (default EXP/report, or ./report_<name> for a URI)",
    )
    parser.add_argument("--wandb", choices=["online", "offline", "disabled"], default="disabled")
    parser.add_argument("--wandb-project", default=None, help="default: the config's project")
    args = parser.parse_args(argv)
    try:
        result = build_report(
            args.experiment, args.metric, args.out, args.wandb, args.wandb_project
        )
    except (FileNotFoundError, KeyError, ValueError) as err:
        print(f"error: {err.args[0] if err.args else err}", file=sys.stderr)
        return 2
    print(result.text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
