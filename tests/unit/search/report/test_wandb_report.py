"""The W&B Report of a study (`search.report.wandb_report`), built offline from an experiment's
results files: panels for the stages that ran, naming the study's group and keys its runs hold
(checked against offline W&B runs logged the way a trial logs them), JSON that loads back, and
no network touched on the way.
"""

from __future__ import annotations

import json
import re
import shutil
import socket

import pandas as pd
import pytest
from helpers import DATA

from search.experiment.folder import Experiment
from search.report import wandb_report
from search.report.__main__ import main as report_main
from search.report.wandb_report_push import to_report
from search.shared.spec import summary_metrics
from trainables.core.config import TrialConfig
from trainables.core.errors import UserError

GROUP = "study-a"
LOCAL = ("127.0.0.1", "localhost", "::1")
HISTORY = ("epoch", "lr", "train_loss", "val_dice", "val_iou", "epoch_s")


def trial_result(stage: str, strategy: str, seed: int, fraction=1.0, suffix="", **recipe) -> dict:
    """A finished trial's stored result, shaped as `run_trial` and the trainable write it
    (`suffix`: a tune trial's recipe digest in its name)."""
    cfg = TrialConfig(strategy=strategy, seed=seed, train_fraction=fraction, epochs=2, **recipe)
    val = {"dice": 0.9 + seed / 100, "iou": 0.8}
    test = {"dice": 0.88 + seed / 100, "iou": 0.79} if stage == "final" else {}
    history = [
        dict(zip(HISTORY, (e, 1e-3, 0.5 / e, 0.8 + e / 20, 0.7, 3.0), strict=True)) for e in (1, 2)
    ]
    return {
        "strategy": strategy,
        "seed": seed,
        "run_name": cfg.run_name,
        "trainable_params": 1000 * (seed + 1),
        "total_params": 50000,
        "epochs": 2,
        "best_epoch": 2,
        "device": "cpu",
        "precision": "fp32",
        "train_fraction": fraction,
        "train_images": int(100 * fraction),
        "wall_s": 12.0,
        "history": history,
        "val": val,
        "test": test,
        "config": cfg.model_dump(mode="json"),
        "trial_name": cfg.run_name + suffix,
        "stage": stage,
        "recipe": "paper",
        "encoder_source": "ImageNet",
    }


def make_experiment(root, stages=("tune", "final"), config=None) -> Experiment:
    """A study of two strategies x two seeds in the final stage (and at a 0.5 share for the
    learning curves), and three tune trials (exponential and step schedules)."""
    experiment = Experiment(str(root), GROUP)
    experiment.write_config(config or {"search": {"wandb_project": "ff-proj"}})
    results = []
    if "final" in stages:
        for strategy in ("decoder", "baseline"):
            results += [("final", trial_result("final", strategy, s)) for s in (0, 1)]
        results.append(("final", trial_result("final", "decoder", 0, fraction=0.5)))
    if "tune" in stages:
        results.append(("tune", trial_result("tune", "decoder", 0, suffix="__a1", lr=3e-4)))
        results.append(
            ("tune", trial_result("tune", "decoder", 0, suffix="__b2", lr_schedule="step"))
        )
        results.append(("tune", trial_result("tune", "baseline", 0, suffix="__c3", lr_gamma=0.8)))
    if "explore" in stages:
        results.append(("explore", trial_result("explore", "resnet18:enc4+dec3+head", 0)))
    for stage, result in results:
        experiment.write_result(stage, result["trial_name"], result)
    return experiment


def panel_refs(report: dict) -> dict[str, set[str]]:
    """Every key a panel or its run sets' filters name, by the W&B job type of its runs."""
    found: dict[str, set[str]] = {}
    for section in report["sections"]:
        keys = found.setdefault(section["job_type"], set())
        for panel in section["panels"]:
            keys.update(wandb_report.panel_keys(panel))
        for runset in section["runsets"]:
            keys.update(
                f"config:{key}" for key in re.findall(r"Config\('(\w+)'\)", runset["filters"])
            )
    return found


@pytest.fixture
def no_network(monkeypatch):
    """Connections from this process anywhere but this machine fail the test (W&B's offline
    service talks to its own process over a local socket)."""
    real_connect = socket.socket.connect

    def connect(sock, address):
        if not isinstance(address, (str, bytes)) and address[0] not in LOCAL:
            raise AssertionError(f"network access attempted: {address}")
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")


def names(items) -> set[str]:
    """The top-level keys of config or history items."""
    return {item.key or item.nested_key[0] for item in items}


def summary_names(items) -> set[str]:
    """Summary keys as W&B's panels address them: `test_dice`; `val_dice.max` for the
    aggregate `define_metric` keeps (`val_dice: {max: ...}`); `strategies` for a logged table
    (written part by part: `strategies._type`, `strategies.path`, ...)."""
    found = set()
    for item in items:
        path = ".".join([item.key] if item.key else item.nested_key)
        value = json.loads(item.value_json) if item.value_json else None
        if isinstance(value, dict):
            found |= {f"{path}.{key}" for key in value}
        elif path.endswith("._type"):
            found.add(path.removesuffix("._type"))
        else:
            found.add(path)
    return found


def logged_keys(run_file) -> dict:
    """What one offline run's .wandb file holds: its group, job type and config, summary and
    per-epoch keys. The file is W&B's 7-byte header, then a LevelDB log (32 KiB blocks of
    7-byte-headed fragments) of protobuf `Record`s."""
    from wandb.proto import wandb_internal_pb2 as pb

    block, header = 32768, 7
    data, pos, chunk = run_file.read_bytes(), 7, b""
    found = {"config": set(), "summary": set(), "history": set()}
    while pos + header <= len(data):
        if block - pos % block < header:  # a block's tail too short for a header: padding
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        chunk += data[pos + header : pos + header + length]
        pos += header + length
        if kind not in (1, 4):  # not a whole record (FULL) nor the LAST fragment of one
            continue
        record = pb.Record()
        record.ParseFromString(chunk)
        chunk = b""
        which = record.WhichOneof("record_type")
        if which == "run":
            found |= {"group": record.run.run_group, "job_type": record.run.job_type}
            found["config"] |= names(record.run.config.update)
        elif which == "config":
            found["config"] |= names(record.config.update)
        elif which == "summary":
            found["summary"] |= summary_names(record.summary.update)
        elif which == "history":
            found["history"] |= names(record.history.item)
    return found


def log_like_a_trial(settings, result: dict, scratch, defined: bool) -> None:
    """One offline run logged as `search.worker.trainable.train_ray_trial` logs a trial, with
    its functions; `defined=False`: as trials logged before `define_epoch_metrics` existed."""
    from search.worker import wandb_link

    labels = {key: result[key] for key in ("trial_name", "stage", "recipe", "encoder_source")}
    config = {**result["config"], **labels}
    run = wandb_link.start_run(settings, result["stage"], result["trial_name"], config, scratch)
    if defined:
        wandb_link.define_epoch_metrics(run)
    for record in result["history"]:
        wandb_link.log_epoch(run, record)
    counts = {key: result[key] for key in ("trainable_params", "total_params")}
    if defined:
        wandb_link.log_summary(run, summary_metrics(result), counts)
    else:
        run.summary.update(summary_metrics(result))
        run.config.update(counts, allow_val_change=True)
    wandb_link.finish_run(run, None)


def test_panels_follow_the_stages_that_ran_and_name_the_group(tmp_path, no_network):
    experiment = make_experiment(tmp_path, stages=("tune", "final"))
    report = wandb_report.definition(experiment, ranking_table=True)
    assert (report["group"], report["project"], report["entity"]) == (GROUP, "ff-proj", None)
    titles = [section["title"] for section in report["sections"]]
    assert titles == [
        "Pareto front (final stage)",
        "Validation Dice per epoch",
        "Ranking",
        "Tune stage",
    ]
    assert any("Explore" in reason for reason in report["skipped"])  # no explore stage ran
    for section in report["sections"]:
        for runset in section["runsets"]:
            assert f"Metric('Group') = '{GROUP}'" in runset["filters"]
            assert f"Metric('JobType') = '{section['job_type']}'" in runset["filters"]
    pareto = report["sections"][0]
    # One run set per strategy; the 0.5 share's run (a learning-curve point) is filtered out.
    assert [rs["name"] for rs in pareto["runsets"]] == ["baseline", "decoder"]
    assert all("Config('train_fraction') = 1.0" in rs["filters"] for rs in pareto["runsets"])
    assert panel_refs(report) == {
        "final": {
            "config:trainable_params",
            "summary:test_dice",
            "history:epoch",
            "history:val_dice",
            "config:strategy",
            "config:train_fraction",
        },
        "report": {"summary:strategies", "config:metric"},
        # Decay keys of the schedules tried: exponential (lr_gamma), step (+ lr_step_size).
        "tune": {
            "config:strategy",
            "config:lr",
            "config:lr_schedule",
            "config:lr_gamma",
            "config:lr_step_size",
            "summary:val_dice.max",  # the best epoch's, as the trial runs define it
        },
    }


def test_a_stage_or_metric_the_runs_lack_leaves_its_panel_out(tmp_path, no_network):
    experiment = make_experiment(tmp_path, stages=("final", "explore"))
    # Ranked by a metric the final runs never logged (their test dict holds dice and iou).
    report = wandb_report.definition(experiment, metric="test_hd_mm")
    titles = [section["title"] for section in report["sections"]]
    assert titles == ["Validation Dice per epoch", "Explore front"]
    assert any("test_hd_mm" in reason for reason in report["skipped"])
    assert any("Tune" in reason for reason in report["skipped"])
    assert any("Ranking" in reason for reason in report["skipped"])  # no report run logged


@pytest.mark.parametrize("defined", [True, False], ids=["define_metric", "before_it"])
def test_every_panel_key_is_logged_by_offline_trial_runs(tmp_path, no_network, defined):
    """The runs a trial logs offline (W&B's own files) hold every key the panels name, in the
    group and job type the panels filter on: runs whose `define_metric` keeps validation Dice's
    best epoch (`val_dice.max`), and runs logged before it (each summary the last value)."""
    import wandb

    from search.shared.spec import WandbSettings

    experiment = make_experiment(tmp_path / "exp", stages=("tune", "final", "explore"))
    aggregates = wandb_report.TRIAL_SUMMARIES if defined else wandb_report.LAST
    report = wandb_report.definition(experiment, aggregates=aggregates)
    wanted = panel_refs(report)
    assert set(wanted) == {"final", "tune", "explore"}
    assert f"summary:val_dice{'.max' if defined else ''}" in wanted["tune"]
    settings = WandbSettings(mode="offline", project="ff-proj", group=GROUP, dir=str(tmp_path))
    try:
        for stage in wanted:
            log_like_a_trial(settings, experiment.results(stage)[0], tmp_path, defined)
    finally:
        wandb.teardown()
    runs = [logged_keys(path) for path in tmp_path.glob("wandb/offline-run-*/run-*.wandb")]
    assert {run["job_type"] for run in runs} == set(wanted)
    for run in runs:
        assert run["group"] == report["group"]
        for ref in wanted[run["job_type"]]:
            section, _, name = ref.partition(":")
            assert name in run[section], (run["job_type"], ref)


def test_the_definition_loads_back_and_builds_the_report_offline(tmp_path, no_network, monkeypatch):
    experiment = make_experiment(tmp_path, stages=("tune", "final"))
    report = wandb_report.definition(experiment, entity="my-team", ranking_table=True)
    path = wandb_report.write_definition(report, tmp_path)
    assert path.name == wandb_report.REPORT_JSON
    assert wandb_report.read_definition(tmp_path) == report
    built = to_report(report, "my-team")
    assert (built.entity, built.project, built.title) == (
        "my-team",
        "ff-proj",
        f"FreezeFrame: {GROUP}",
    )
    grids = [block for block in built.blocks if type(block).__name__ == "PanelGrid"]
    assert [len(grid.runsets) for grid in grids] == [2, 1, 1, 1]
    # What `save()` would send, with the one server question (the project's id) answered here.
    import wandb_workspaces.reports.v2.interface as interface

    class Server:  # the wandb SDK's GraphQL transport, old (`client.execute`) and new
        def execute(self, query, variable_values=None):
            return self.execute_graphql(query, variable_values)

        def execute_graphql(self, query, variables=None):
            assert variables["entityName"] == "my-team"
            return {"project": {"internalId": "p-1"}}

    api = type("Api", (), {})()
    api.client = api._service_api = Server()
    monkeypatch.setattr(interface, "_get_api", lambda: api)
    spec = built._to_model().spec.model_dump_json(by_alias=True, exclude_none=True)
    for text in (
        GROUP,
        "config:trainable_params.value",
        "summary:test_dice",
        "val_dice",
        "config:lr_gamma.value",
        "strategies",
    ):
        assert text in spec, text


class FakeWandb:
    """W&B's side of wandb-workspaces' `Report.save()`: a run set's project id, and the GraphQL
    upsert of a report view, which keeps the id it is sent or makes a new one, as the server
    does."""

    def __init__(self, monkeypatch):
        import wandb_workspaces.reports.v2.interface as interface

        self.sent_ids: list[str | None] = []
        api = type("Api", (), {"projects": lambda _, entity: [type("P", (), {"name": "ff-proj"})]})
        monkeypatch.setattr(interface, "_get_api", api)
        monkeypatch.setattr(interface, "execute_graphql", self.execute_graphql)
        monkeypatch.setattr(interface, "get_app_url", lambda _: "https://wandb.test")

    def execute_graphql(self, api, query, variables):
        if "spec" not in variables:  # a run set asks for its project's id
            return {"project": {"internalId": "p-1"}}
        self.sent_ids.append(variables["id"])
        view = {
            "id": variables["id"] or f"view-{len(self.sent_ids)}",
            "name": variables["name"],
            "displayName": variables["displayName"],
            "description": variables["description"],
            "project": {"name": variables["projectName"], "entityName": variables["entityName"]},
            "spec": json.loads(variables["spec"]),
        }
        return {"upsertView": {"view": view}}


def test_pushing_a_folder_again_updates_its_report_instead_of_saving_another(
    tmp_path, monkeypatch, capsys
):
    experiment = make_experiment(tmp_path / "exp", stages=("tune", "final"))
    wandb_report.write_definition(wandb_report.definition(experiment), tmp_path)
    server = FakeWandb(monkeypatch)
    push = ["--push-wandb-report", str(tmp_path), "--wandb-entity", "team"]
    assert report_main(push) == 0
    first = capsys.readouterr().out
    assert "W&B Report saved: https://wandb.test/team/ff-proj/reports/" in first
    saved = json.loads((tmp_path / "wandb_report.saved.json").read_text())
    assert saved == {"entity": "team", "project": "ff-proj", "id": "view-1", "url": saved["url"]}
    assert report_main(push) == 0  # the same report, updated
    assert report_main([*push[:-1], "other-team"]) == 0  # another entity: a report of its own
    assert server.sent_ids == [None, "view-1", None]
    (tmp_path / "wandb_report.saved.json").write_text("{not json")
    assert report_main(push) == 2
    assert "wandb_report.saved.json: not readable" in capsys.readouterr().err


def test_a_broken_definition_file_is_named(tmp_path):
    (tmp_path / wandb_report.REPORT_JSON).write_text(json.dumps({"format": "other"}))
    with pytest.raises(UserError, match="wandb_report.json.*format"):
        wandb_report.read_definition(tmp_path)
    assert report_main(["--push-wandb-report", str(tmp_path)]) == 2


def test_project_and_entity_come_from_the_config_or_the_flags():
    mapping = {"search": {"wandb": {"entity": "team", "project": "p2"}, "wandb_project": "old"}}
    assert wandb_report.wandb_target(mapping) == ("team", "p2")
    assert wandb_report.wandb_target({"search": {"wandb": "auto", "wandb_project": "p1"}}) == (
        None,
        "p1",
    )
    assert wandb_report.wandb_target({}, entity="me") == ("me", "freezeframe")
    assert wandb_report.wandb_target(mapping, "p3", "t3") == ("t3", "p3")


def test_cli_writes_the_definition_beside_the_report_and_the_report_run_holds_its_table(
    tmp_path, no_network, monkeypatch, capsys
):
    """`--wandb offline --wandb-report`: the report run (offline) holds the `strategies` table
    the ranking panel names; the definition is written, with the command that pushes it."""
    import wandb

    exp = tmp_path / "exp_small"
    shutil.copytree(DATA / "report" / "exp_small", exp)
    experiment = Experiment.at(exp)
    final = pd.read_csv(exp / "trials.csv").query("stage == 'final' and status == 'ok'")
    for row in final.itertuples():
        experiment.write_result(
            "final", row.trial_name, trial_result("final", row.strategy, row.seed)
        )
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    out = tmp_path / "out"
    try:
        code = report_main(
            [
                str(exp),
                "--out",
                str(out),
                "--wandb",
                "offline",
                "--wandb-report",
                "--wandb-entity",
                "my-team",
            ]
        )
    finally:
        wandb.teardown()
    assert code == 0
    assert f"--push-wandb-report {out}" in capsys.readouterr().out
    report = wandb_report.read_definition(out / wandb_report.REPORT_JSON)
    assert report["group"] == "exp_small"
    # The project from the experiment's config (search.wandb_project), the entity from the flag.
    assert (report["project"], report["entity"]) == ("freezeframe-tests", "my-team")
    (run_file,) = tmp_path.glob("wandb/offline-run-*/run-*.wandb")
    run = logged_keys(run_file)
    assert (run["group"], run["job_type"]) == ("exp_small", "report")
    assert panel_refs(report)["report"] == {"summary:strategies", "config:metric"}
    assert "strategies" in run["summary"] and "metric" in run["config"]


def test_cli_needs_an_experiment_or_a_folder_to_push():
    with pytest.raises(SystemExit) as exit_:
        report_main([])
    assert exit_.value.code == 2


def test_pushing_without_a_login_fails_with_what_to_do(tmp_path, no_network, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc: no W&B login
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb_config"))
    monkeypatch.setenv("WANDB_MODE", "online")
    experiment = make_experiment(tmp_path / "exp", stages=("final",))
    wandb_report.write_definition(wandb_report.definition(experiment), tmp_path)
    for entity in ([], ["--wandb-entity", "my-team"]):
        assert report_main(["--push-wandb-report", str(tmp_path), *entity]) == 2
        assert "wandb login" in capsys.readouterr().err.lower()


def test_the_aggregated_summaries_are_the_trial_runs_own():
    """The report names `val_dice.max` because the trial runs define it so: one table, in
    search.shared, read by both."""
    from search.worker import wandb_link

    assert wandb_report.TRIAL_SUMMARIES is wandb_link.EPOCH_SUMMARIES
