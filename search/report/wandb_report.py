"""A W&B Report per study, built with wandb-workspaces: panels over the study's own W&B runs.

One W&B group is one experiment (its folder's name); a run's job type is its stage (tune,
explore, final) or `report` for the report run. The report has a section per stage that ran:

- Pareto front: the ranking metric (test Dice by default) against trainable parameters, final
  runs, one run set per strategy (its seeds are the points);
- Ranking: the report run's `strategies` table (only when this command logs the report run);
- Validation Dice per epoch: final runs, grouped by strategy (mean, min-max band);
- Tune stage: parallel coordinates of strategy, lr, lr_schedule and the decay keys of the
  schedules tried, to validation Dice;
- Explore front: validation Dice against trainable parameters of the explore runs.

A panel names only keys the runs hold, derived from the experiment's results files the way
`search.worker.trainable` logs them. The definition is plain JSON (`wandb_report.json` in the
report folder), made without W&B or a network; `search.report.wandb_report_push` turns it into a
`wandb_workspaces` Report and saves that (a login and the network needed there only).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from types import MappingProxyType

from search.experiment.folder import Experiment
from search.report.build import WANDB_JOB_TYPE
from search.shared.spec import summary_metrics
from search.shared.wandb_options import EPOCH_SUMMARIES
from trainables.core.atomic import atomic_output
from trainables.core.errors import UserError
from trainables.core.recipe import proposed_keys

REPORT_JSON = "wandb_report.json"
FORMAT = "freezeframe-wandb-report/1"
RANKING_TABLE = "strategies"  # the table `build.log_to_wandb` logs in the report run
DEFAULT_PROJECT = "freezeframe"  # search.wandb_project's default (`search.driver.config`)
# What `search.worker.trainable` adds to a trial's resolved config in W&B: its labels, then the
# parameter counts once the trial ends.
LABELS = ("trial_name", "stage", "recipe", "encoder_source", "trainable_params", "total_params")
# Per-epoch keys a trial run summarises by an aggregate (the trial runs' own `define_metric`).
# LAST: each summary the last value (runs logged before the trials defined them).
TRIAL_SUMMARIES: Mapping[str, str] = EPOCH_SUMMARIES
LAST: Mapping[str, str] = MappingProxyType({})
# Panel sizes on W&B's 24-column grid.
LAYOUT = {"scatter": (12, 9), "line": (12, 9), "parallel": (24, 9), "table": (24, 10)}


class WandbReportError(UserError, RuntimeError):
    """W&B could not save the report; the message says why and what to check."""


@dataclass(frozen=True)
class RunKeys:
    """What every run of one stage holds in W&B: config keys, summary keys, per-epoch keys."""

    config: frozenset[str]
    summary: frozenset[str]
    history: frozenset[str]

    def has(self, ref: str) -> bool:
        """`ref` is 'config:NAME', 'summary:NAME' or 'history:NAME'."""
        section, _, name = ref.partition(":")
        return name in getattr(self, section)


# What `build.log_to_wandb` logs in the report run (config, summary, history).
REPORT_RUN = RunKeys(
    frozenset({"experiment", "metric"}), frozenset({RANKING_TABLE}), frozenset({RANKING_TABLE})
)


def run_keys(result: dict, aggregates: Mapping[str, str] = LAST) -> RunKeys:
    """The keys the W&B run of one finished trial holds, from its stored result: the resolved
    config with the labels, each epoch's scalars (`run.log`) and the final summary (W&B's
    summary also keeps every logged key's last value).

    Args:
        aggregates: per-epoch keys whose summary `define_metric` aggregates, e.g. {'val_dice':
            'max'}: W&B's summary holds `val_dice: {max: ...}`, the column `val_dice.max`.
    """
    records = result.get("history", [])
    history = {k for row in records for k, v in row.items() if isinstance(v, (int, float))}
    try:
        summary = set(summary_metrics(result))
    except KeyError:  # an older result: its history's keys only
        summary = set()
    config = set(result.get("config", {})) | {k for k in LABELS if k in result}
    summary = {summary_name(key, aggregates) for key in summary | history}
    return RunKeys(frozenset(config), frozenset(summary), frozenset(history))


def summary_name(key: str, aggregates: Mapping[str, str] = LAST) -> str:
    """`key`'s summary as W&B's panels name it: `val_dice.max` when aggregated so."""
    return f"{key}.{aggregates[key]}" if key in aggregates else key


def stage_keys(results: Iterable[dict], aggregates: Mapping[str, str] = LAST) -> RunKeys | None:
    """The keys every finished run of a stage holds (None: no finished trial, the stage did
    not run)."""
    keys = [run_keys(result, aggregates) for result in results]
    if not keys:
        return None
    parts = (field.name for field in fields(RunKeys))
    return RunKeys(*(frozenset.intersection(*(getattr(k, part) for k in keys)) for part in parts))


def wandb_target(config: dict, project: str | None = None, entity: str | None = None):
    """(entity or None, project): the arguments, else the experiment config's `search.wandb`
    mapping (`entity`, `project`) or `search.wandb_project`, else the defaults."""
    search = config.get("search") or {}
    settings = search.get("wandb") if isinstance(search.get("wandb"), dict) else {}
    project = project or settings.get("project") or search.get("wandb_project") or DEFAULT_PROJECT
    return entity or settings.get("entity") or None, project


def _filters(group: str, job_type: str, **config) -> str:
    """A run-set filter in wandb-workspaces' expression syntax (values as Python literals)."""
    terms = [f"Metric('Group') = {group!r}", f"Metric('JobType') = {job_type!r}"]
    terms += [f"Config({key!r}) = {value!r}" for key, value in config.items()]
    return " and ".join(terms)


def panel_keys(panel: dict) -> list[str]:
    """Every run key a panel names: 'config:NAME', 'summary:NAME' or 'history:NAME'."""
    keys = [panel[part] for part in ("x", "y", "groupby") if part in panel]
    keys += panel.get("columns", [])
    return keys + ([f"summary:{panel['table']}"] if "table" in panel else [])


def _largest_share(final: list[dict]) -> dict:
    """The filter on the training share the ranking uses (the largest), when the final stage
    also trained on smaller ones (the learning curves' points); {} otherwise."""
    shares = {row.get("config", {}).get("train_fraction") for row in final} - {None}
    return {"train_fraction": max(shares)} if len(shares) > 1 else {}


def _tune_columns(tune: list[dict]) -> list[str]:
    """The parallel plot's axes: strategy, lr, lr_schedule and the decay keys the tune stage
    proposes for the schedules its trials tried."""
    schedules = sorted({row.get("config", {}).get("lr_schedule") or "none" for row in tune})
    keys = dict.fromkeys(["strategy", *(key for s in schedules for key in proposed_keys(s))])
    return [f"config:{key}" for key in keys]


def definition(
    experiment: Experiment,
    metric: str = "test_dice",
    project: str | None = None,
    entity: str | None = None,
    ranking_table: bool = False,
    aggregates: Mapping[str, str] = TRIAL_SUMMARIES,
) -> dict:
    """The report of one study as plain JSON data; reads the experiment's results files only.
    A panel whose stage did not run, or that names a key its runs lack, is left out and said
    so under "skipped".

    Args:
        experiment: the experiment folder (its results files and config are read).
        metric: the final stage's ranking metric (a test_* summary key).
        project, entity: W&B's (default: the experiment's config; entity None = the login's
            default entity, resolved when the report is pushed).
        ranking_table: the report run holds the `strategies` table (this command logs it).
        aggregates: the per-epoch keys the trial runs' `define_metric` summarises (`run_keys`).
    """
    entity, project = wandb_target(experiment.read_config(), project, entity)
    group = experiment.name  # the W&B group of its runs (`search.driver.stages.common`)
    found = {stage: experiment.results(stage) for stage in ("tune", "explore", "final")}
    keys = {stage: stage_keys(rows, aggregates) for stage, rows in found.items()}
    val_dice = f"summary:{summary_name('val_dice', aggregates)}"
    keys[WANDB_JOB_TYPE] = REPORT_RUN if ranking_table else None
    sections, skipped = [], []

    def add(title: str, text: str, job_type: str, runsets: dict[str, dict], panel: dict):
        """A heading, a line of text and a panel over runs of one job type; or why not."""
        have = keys[job_type]
        named = panel_keys(panel) + [f"config:{key}" for where in runsets.values() for key in where]
        missing = [key for key in dict.fromkeys(named) if have and not have.has(key)]
        if have is None and job_type == WANDB_JOB_TYPE:
            skipped.append(f"{title}: this command logs no report run (--wandb online|offline)")
        elif have is None:
            skipped.append(f"{title}: no finished {job_type} trial")
        elif missing:
            skipped.append(f"{title}: the {job_type} runs lack {', '.join(missing)}")
        else:
            where = [
                {"name": n, "filters": _filters(group, job_type, **f)} for n, f in runsets.items()
            ]
            section = {"title": title, "text": text, "job_type": job_type}
            sections.append(section | {"runsets": where, "panels": [panel]})

    share = _largest_share(found["final"])  # the learning curves' smaller shares stay out
    strategies = sorted({row["strategy"] for row in found["final"] if "strategy" in row})
    scatter = {"kind": "scatter", "title": f"{metric} vs trainable parameters", "log_x": True}
    scatter |= {"x": "config:trainable_params", "y": f"summary:{summary_name(metric, aggregates)}"}
    text = f"Final runs ({metric}): one run set per strategy, one point per seed."
    per_strategy = {name: {"strategy": name, **share} for name in strategies}
    add("Pareto front (final stage)", text, "final", per_strategy, scatter)

    line = {"kind": "line", "title": "Validation Dice per epoch, by strategy"}
    line |= {"x": "history:epoch", "y": "history:val_dice", "groupby": "config:strategy"}
    text = "Mean over seeds per strategy, the band from the lowest to the highest seed."
    add("Validation Dice per epoch", text, "final", {"final runs": share}, line)

    table = {"kind": "table", "title": "Ranking", "table": RANKING_TABLE}
    text = f"The report's ranking by {metric} (`--wandb online|offline` logs its run)."
    add("Ranking", text, WANDB_JOB_TYPE, {"report run": {"metric": metric}}, table)

    columns = [
        key for key in _tune_columns(found["tune"]) if keys["tune"] and keys["tune"].has(key)
    ]
    parallel = {"kind": "parallel", "title": "Tune stage: recipe -> validation Dice"}
    parallel |= {"columns": [*columns, val_dice], "log": ["config:lr"]}
    text = "Each line a tune trial: its strategy, its recipe and its best validation Dice."
    add("Tune stage", text, "tune", {"tune runs": {}}, parallel)

    front = {"kind": "scatter", "title": "Explore: val_dice vs trainable parameters"}
    front |= {"x": "config:trainable_params", "y": val_dice, "log_x": True}
    text = "Each point an explore trial (encoder, freeze mask, recipe); the front is upper left."
    add("Explore front", text, "explore", {"explore runs": {}}, front)

    return {
        "format": FORMAT,
        "entity": entity,
        "project": project,
        "group": group,
        "title": f"FreezeFrame: {group}"[:128],  # W&B's limit on a report title
        "description": f"Experiment {experiment.uri}, ranked by {metric}.",
        "sections": sections,
        "skipped": skipped,
    }


def write_definition(report: dict, out_dir: Path) -> Path:
    """Write the definition to `out_dir/wandb_report.json` (whole or not at all)."""
    path = Path(out_dir) / REPORT_JSON
    with atomic_output(path, "w") as out:
        out.write(json.dumps(report, indent=2) + "\n")
    return path


def read_definition(location: str | Path) -> dict:
    """A definition written by `write_definition`: its file, or the folder holding it."""
    path = Path(location)
    path = path / REPORT_JSON if path.is_dir() else path
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: not a readable W&B Report definition ({err})") from err
    if not isinstance(report, dict) or report.get("format") != FORMAT:
        raise UserError(f"{path}: 'format' is not {FORMAT!r}")
    for key in ("project", "group", "title", "sections"):
        if not report.get(key):
            raise UserError(f"{path}: the key {key!r} is missing or empty")
    return report
