"""Save a W&B Report definition (`search.report.wandb_report`) to W&B with wandb-workspaces.

`to_report` builds the `wandb_workspaces` Report (objects only, no network); `push` saves it (a
login and the network needed). A push records what W&B saved beside the definition
(`wandb_report.saved.json`: entity, project, the report's id and URL), and the next push of that
folder to the same entity and project updates that report instead of saving a second one.
"""

from __future__ import annotations

import json
from pathlib import Path

from search.report.wandb_report import LAYOUT, WandbReportError
from trainables.core.atomic import atomic_output
from trainables.core.errors import UserError

SAVED_JSON = "wandb_report.saved.json"


def _workspaces():
    """wandb-workspaces' Report API, imported only to build or save a report: it imports wandb
    (about 3 s here), which the definition and the rest of the report do without."""
    import wandb_workspaces.reports.v2 as wr

    return wr


def _metric(ref: str):
    """'config:NAME' / 'summary:NAME' / 'history:NAME' -> wandb-workspaces' metric."""
    wr = _workspaces()
    section, _, name = ref.partition(":")
    return {"config": wr.Config, "summary": wr.SummaryMetric}.get(section, wr.Metric)(name)


def _panel(spec: dict):
    wr = _workspaces()
    width, height = LAYOUT[spec["kind"]]
    layout = wr.Layout(w=width, h=height)
    if spec["kind"] == "scatter":
        x, y = _metric(spec["x"]), _metric(spec["y"])
        return wr.ScatterPlot(title=spec["title"], x=x, y=y, log_x=spec["log_x"], layout=layout)
    if spec["kind"] == "line":
        return wr.LinePlot(
            title=spec["title"],
            x=spec["x"].partition(":")[2],  # logged keys, as a line plot names them
            y=[spec["y"].partition(":")[2]],
            groupby=_metric(spec["groupby"]),
            groupby_aggfunc="mean",
            groupby_rangefunc="minmax",
            layout=layout,
        )
    if spec["kind"] == "parallel":
        columns = [
            wr.ParallelCoordinatesPlotColumn(metric=_metric(ref), log=ref in spec["log"] or None)
            for ref in spec["columns"]
        ]
        return wr.ParallelCoordinatesPlot(title=spec["title"], columns=columns, layout=layout)
    if spec["kind"] == "table":
        return wr.WeavePanelSummaryTable(table_name=spec["table"], layout=layout)
    raise UserError(f"W&B Report definition: unknown panel kind {spec['kind']!r}")


def to_report(report: dict, entity: str):
    """The `wandb_workspaces` Report of a definition. Builds objects only, no network: the
    entity is given (wandb-workspaces would ask the server for the default one)."""
    wr = _workspaces()
    blocks = []
    for section in report["sections"]:
        runsets = [
            wr.Runset(
                entity=entity, project=report["project"], name=rs["name"], filters=rs["filters"]
            )
            for rs in section["runsets"]
        ]
        panels = [_panel(spec) for spec in section["panels"]]
        blocks += [wr.H2(section["title"]), wr.P(section["text"])]
        blocks.append(wr.PanelGrid(runsets=runsets, panels=panels))
    return wr.Report(
        project=report["project"],
        entity=entity,
        title=report["title"],
        description=report["description"],
        blocks=blocks,
    )


def push(report: dict, entity: str | None = None, folder: str | Path | None = None) -> str:
    """Save the report in W&B (a login needed) and return its URL. Entity: the argument, the
    definition's, else the login's default entity. With `folder` (the definition's): update the
    report an earlier push from there saved to the same entity and project, and record this one."""
    import wandb  # here: only a push asks W&B for the default entity

    entity = entity or report.get("entity")
    if not entity:
        try:
            entity = wandb.Api().default_entity
        except Exception as err:  # no login: say what to do
            raise WandbReportError(f"W&B: no entity given and none from a login ({err})") from err
    if not entity:
        raise WandbReportError("W&B: no entity; pass --wandb-entity or set search.wandb.entity")
    target = to_report(report, entity)
    earlier = saved(folder, entity, report["project"]) if folder is not None else None
    if earlier:
        target.id = earlier  # W&B's upsert: the same report, its panels replaced
    try:
        url = target.save().url
    except Exception as err:  # no login, no network, a project the login cannot write to
        reason = str(err).splitlines()[0][:300] if str(err) else ""
        update = (
            f"; it updates the report an earlier push saved (delete {Path(folder) / SAVED_JSON} "
            "to save a new one)"
            if earlier
            else ""
        )
        raise WandbReportError(
            f"W&B did not save the report ({type(err).__name__}: {reason}); check `wandb "
            f"login`, the network and the entity {entity!r}{update}"
        ) from err
    if folder is not None:
        record = {"entity": entity, "project": report["project"], "id": target.id, "url": url}
        with atomic_output(Path(folder) / SAVED_JSON, "w") as out:
            out.write(json.dumps(record, indent=2) + "\n")
    return url


def saved(folder: str | Path, entity: str, project: str) -> str | None:
    """The id of the report the last push from `folder` saved to `entity`/`project`, if any."""
    path = Path(folder) / SAVED_JSON
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: not readable ({err}); delete it to save a new report") from err
    if record.get("entity") == entity and record.get("project") == project:
        return record.get("id") or None
    return None
