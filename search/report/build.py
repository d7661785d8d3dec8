"""Build one experiment's report: compute, draw, write the files, and copy them to W&B.

Files written to the output folder (the experiment's report folder by default):
report.md, report.html (self-contained), strategies.csv, pareto.png/.svg and boxplot.png; with
the final trials' per-image tables also bland_altman.png and worst_images.png (`clinical`); with
enough tune trials importance.png (`tune`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from search.experiment.folder import TRIALS
from search.report import clinical, compute, explore, fractions, interactive, plots, stats, tune
from search.report.load import NoResults, Results, load_results
from search.report.page import Bullets, Figure, Page, Paragraph, Section, Table
from search.report.text import build_notes, display_table, few_seeds_warning, tune_display
from search.shared.metrics import Metric, get_metric
from search.shared.wandb_options import wandb_options
from trainables.evaluation.hc_errors import HC_FAIL_MM

REPORT_MD, REPORT_HTML = "report.md", "report.html"
STRATEGIES_CSV = "strategies.csv"
PARETO_PNG, PARETO_SVG, BOXPLOT_PNG = "pareto.png", "pareto.svg", "boxplot.png"
FILES = (REPORT_MD, REPORT_HTML, STRATEGIES_CSV, PARETO_PNG, PARETO_SVG, BOXPLOT_PNG)
# W&B's job type of a report run is this package's name ("search.report" -> its last part).
WANDB_JOB_TYPE = __package__.rpartition(".")[2]


@dataclass
class ReportResult:
    table: pd.DataFrame  # strategies.csv: one row per strategy, in rank order
    text: str  # what the terminal shows
    out_dir: Path
    notes: list[str] = field(default_factory=list)
    tune: pd.DataFrame = field(default_factory=pd.DataFrame)


def report_page(
    results: Results,
    metric: Metric,
    table: pd.DataFrame,
    notes: Sequence[str],
    tune: pd.DataFrame,
    out_dir: Path,
    pareto_plotly,
    clinical_blocks: Sequence = (),
    explore_blocks: Sequence = (),
    fraction_blocks: Sequence = (),
    compute_blocks: Sequence = (),
    importance_blocks: Sequence = (),
) -> Page:
    """The one page report.md and report.html both show, section by section.

    Args:
        results: the experiment's saved results.
        metric: the ranking metric.
        table: `stats.strategy_stats` output; tune: `tune.tune_gains` output.
        notes: `text.build_notes` output.
        out_dir: the folder holding the PNGs (the page is written beside them).
        pareto_plotly: the interactive Pareto plot the HTML shows instead of its PNG.
        clinical_blocks: the clinical section's blocks (`clinical.build_clinical`).
        explore_blocks: the explore section's blocks (`explore.build_explore`; none without an
            explore stage).
        fraction_blocks: the training-set size section's blocks (`fractions.build_fractions`;
            none when the final stage trained on one share of the training split).
        compute_blocks: the compute section's blocks (`compute.build_compute`).
        importance_blocks: the tune stage's parameter importance (`importance_section`).
    """
    direction = "higher" if metric.higher_is_better else "lower"
    intro = (
        f"Experiment {results.location}; ranked by test {metric.label} ({direction} is better). "
        "Cells: mean ± sd over seeds [95% interval]; intervals and the verdict against the best "
        "follow one rule, stated in the Notes."
    )
    warning = few_seeds_warning(table)
    tune_table = Table(tune_display(tune, table), "tune", empty="No tune stage in this experiment.")
    csv_note = f"{STRATEGIES_CSV} holds the same numbers unrounded (accuracy metrics as fractions)."
    return Page(
        title=f"FreezeFrame report: {results.name}",
        intro=intro,
        sections=[
            Section(
                "Strategies (final stage)",
                [
                    *([Paragraph(warning)] if warning else []),
                    Table(display_table(table, metric), "strategies"),
                ],
            ),
            Section("Notes", [Bullets(notes)]),
            Section("Pareto front", [Figure("Pareto front", out_dir / PARETO_PNG, pareto_plotly)]),
            Section("Seeds per strategy", [Figure("Seeds per strategy", out_dir / BOXPLOT_PNG)]),
            Section("Clinical measurement (test images)", list(clinical_blocks)),
            Section("Tune stage", [tune_table, *importance_blocks]),
            *([Section("Explore stage", list(explore_blocks))] if explore_blocks else []),
            *(
                [Section("Training-set size (learning curves)", list(fraction_blocks))]
                if fraction_blocks
                else []
            ),
            *([Section("Compute", list(compute_blocks))] if compute_blocks else []),
            Section(None, [Paragraph(csv_note)]),
        ],
    )


def importance_section(results: Results, planned, out: Path) -> tuple[list, Path | None]:
    """The tune stage's parameter importance: its blocks and the figure (None: not drawn)."""
    found = tune.importances(results.trials, results.config, list(planned or []))
    if found.empty:
        return [], None
    figure = tune.save_importance(found, out)
    text = (
        "Which recipe parameters set the best tune trials apart: PED-ANOVA importances (Optuna) "
        "over each strategy's complete tune trials (ok, or stopped early by ASHA, with their "
        "validation Dice), as shares: lr and lr_schedule over all of them, each decay key over "
        f"the trials whose schedule reads it. Needs at least {tune.MIN_TRIALS} trials per "
        "evaluation; the top trials are the best max(10%, 5 trials)."
    )
    blocks = [Paragraph(text), Table(tune.importance_display(found), "importance")]
    if figure is not None:
        blocks.append(Figure("Parameter importance per strategy", figure))
    return blocks, figure


def report_run_id(results: Results, metric: str) -> str:
    """The W&B run id of an experiment's report ranked by `metric`."""
    key = f"{results.identity}/{results.name}/{WANDB_JOB_TYPE}/{metric}"
    return hashlib.sha1(key.encode()).hexdigest()[:16]


def log_to_wandb(
    results: Results,
    table: pd.DataFrame,
    out_dir: Path,
    plotly_fig,
    metric: str,
    mode: str,
    project: str,
    figures: dict[str, Path] | None = None,
    timeout_s: float = 60.0,
    entity: str | None = None,
) -> None:
    """A report run in the experiment's group: the table, the plots, and the report folder's
    files as a `report` artifact (`report-<experiment>-<metric>`: a new version when they
    change). No key is written; an unreachable server is given up after `timeout_s` to start
    and as long to finish. The run's id is fixed per experiment and metric: running the report
    again updates that run."""
    import wandb  # here: it takes about a second, and only a report logged to W&B needs it

    run = wandb.init(
        id=report_run_id(results, metric),
        resume="allow",
        entity=entity,
        project=project,
        group=results.name,
        job_type=WANDB_JOB_TYPE,
        name=f"{WANDB_JOB_TYPE}-{metric}",
        mode=mode,
        # Always named: a W&B set up earlier in this process would keep its old dir (the cwd).
        dir=os.environ.get("WANDB_DIR") or str(out_dir),
        config={"experiment": results.location, "metric": metric},
        reinit="create_new",
        settings=wandb.Settings(
            console="off",
            x_disable_stats=True,
            silent=True,
            init_timeout=timeout_s,
            finish_timeout=timeout_s,
        ),
    )
    plain = table.astype(object).where(table.notna(), None)
    run.log(
        {
            "strategies": wandb.Table(dataframe=plain),
            "pareto": wandb.Image(str(out_dir / PARETO_PNG)),
            "boxplot": wandb.Image(str(out_dir / BOXPLOT_PNG)),
            "pareto_interactive": wandb.Plotly(plotly_fig),
        }
        | {name: wandb.Image(str(path)) for name, path in (figures or {}).items()}
    )
    folder = wandb.Artifact(
        f"report-{results.name}-{metric}"[:128],  # the experiment name is [A-Za-z0-9_.-]
        type="report",
        description=f"the report of {results.location}, ranked by {metric}",
        metadata={"experiment": results.location, "metric": metric},
    )
    for path in sorted(out_dir.iterdir()):  # its files; not W&B's own run folder (wandb/)
        if path.is_file():
            folder.add_file(str(path), name=path.name)
    run.log_artifact(folder)
    run.finish()


def build_report(
    exp_dir: str,
    metric: str = "test_dice",
    out_dir: str | None = None,
    wandb_mode: str = "disabled",
    wandb_project: str | None = None,
    hc_fail_mm: float | None = None,
    data_dir: str | None = None,
    wandb_timeout_s: float | None = None,
) -> ReportResult:
    """Compute, draw and write the report of one experiment.

    Args:
        exp_dir: the experiment folder: a local path or a URI (s3://, gs://, file://).
        metric: the test_* column that ranks the strategies and defines the Pareto front.
        out_dir: where the files go (default: the experiment's report folder, or
            ./report_<name> for a URI).
        wandb_mode: online, offline or disabled.
        wandb_project: the W&B project (default: the config's search.wandb_project).
        hc_fail_mm: an HC error above this is a failed measurement (default: the config's
            search.report.hc_fail_mm, else 10 mm).
        data_dir: the test images' folder for the worst-images figure (default: the config's
            trial.data_dir).
        wandb_timeout_s: how long W&B may take to start and to finish before the report gives
            it up (default: the config's search.wandb_timeout_s, else 60 s).

    Returns:
        The strategies table, the terminal text and the output folder.
    """
    everything = load_results(exp_dir)
    info = get_metric(metric, everything.trials)
    # The ranking, the front and the clinical tables compare strategies on the largest share of
    # the training split; the smaller shares are the learning curves' (their own section).
    results = replace(everything, trials=fractions.largest_fraction_only(everything.trials))
    search = results.config.get("search", {})
    planned = search.get("strategies")
    table = stats.strategy_stats(
        results.trials, info, planned, search.get("seeds"), results.per_image
    )
    if table.empty:
        raise NoResults(f"{results.location}: {TRIALS} has no final-stage rows yet")
    out = Path(out_dir) if out_dir else results.default_out_dir
    out.mkdir(parents=True, exist_ok=True)
    notes = build_notes(table, info, results.trials, results.config, results.split, results.encoder)
    gains = tune.tune_gains(results.trials, planned)
    importance_blocks, importance_png = importance_section(results, planned, out)
    if hc_fail_mm is None:
        hc_fail_mm = search.get("report", {}).get("hc_fail_mm", HC_FAIL_MM)
    clinic = clinical.build_clinical(results, table, info, out, hc_fail_mm, data_dir)
    table, notes = clinic.table, notes + clinic.notes
    found = explore.build_explore(results.trials, table, info, out, results.per_image)
    notes += found.notes
    curves = fractions.build_fractions(everything.trials, info, results.config, out)
    notes += curves.notes
    spent = compute.build_compute(everything.trials, results.config)
    notes += spent.notes
    table.to_csv(out / STRATEGIES_CSV, index=False)

    plots.save(plots.pareto_figure(table, info), out / PARETO_PNG, out / PARETO_SVG)
    final = stats.final_trials(results.trials)
    plots.save(plots.box_figure(table, final, info), out / BOXPLOT_PNG)
    plotly_fig = interactive.plotly_pareto(table, info)

    page = report_page(
        results,
        info,
        table,
        notes,
        gains,
        out,
        plotly_fig,
        clinic.blocks,
        found.blocks,
        curves.blocks,
        spent.blocks,
        importance_blocks,
    )
    (out / REPORT_MD).write_text(page.to_markdown(), encoding="utf-8")
    (out / REPORT_HTML).write_text(page.to_html(), encoding="utf-8")
    compact = display_table(table, info, compact=True).to_string(index=False)
    shown = clinical.clinical_display(table, hc_fail_mm)
    compact += "\n\n" + shown.to_string(index=False) if len(shown) else ""
    text = "\n".join(
        [page.title, page.intro, compact, "", *[f"- {n}" for n in notes], f"Files: {out}"]
    )
    if wandb_mode != "disabled":
        try:
            options = wandb_options(search)  # either form of search.wandb, wandb_project too
            project = wandb_project or options.project
            figures = clinic.figures | ({"explore": found.figure} if found.figure else {})
            figures |= {"learning_curves": curves.figure} if curves.figure else {}
            figures |= {"importance": importance_png} if importance_png else {}
            timeout_s = wandb_timeout_s or search.get("wandb_timeout_s") or 60.0
            log_to_wandb(
                results,
                table,
                out,
                plotly_fig,
                metric,
                wandb_mode,
                project,
                figures,
                timeout_s,
                options.entity,
            )
        except Exception as err:  # the files are written; W&B only holds a copy of them
            reason = str(err).splitlines()[0][:300] if str(err) else ""
            text += (
                f"\nW&B logging failed ({type(err).__name__}: {reason}); the files above are "
                "complete (`python -m search.report EXPERIMENT --wandb online` logs them later)."
            )
    return ReportResult(table, text, out, notes, gains)
