"""`python -m search.report EXPERIMENT_DIR`: the ranked, honest summary of one experiment.

Reads only saved results (the experiment's trials table, config, split and per-image test
tables), so it works on a finished, a running or a copied experiment, at a local path or a
storage URI (s3://, gs://, file://). Writes report.md, report.html (self-contained),
strategies.csv, pareto.png/.svg, boxplot.png and, from the final trials' per-image tables,
bland_altman.png and worst_images.png to --out (default: the experiment's report folder, or
./report_<name>/ for a URI), prints the table and the notes, and with --wandb logs the table and
plots to the experiment's W&B group. With --wandb-report it also builds a W&B Report of the
study's runs (`search.report.wandb_report`): wandb_report.json in the output folder, saved to W&B
as well with --wandb online; `--push-wandb-report FOLDER` saves a written one later.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from search.experiment.folder import REPORT_DIR, Experiment
from search.report import wandb_report
from search.report.build import build_report
from search.report.wandb_report_push import push
from search.shared.metrics import METRICS
from trainables.core.errors import ConfigError, UserError


def main(argv: list[str] | None = None) -> int:
    """Run the report CLI. Returns 0, or 2 (with `error: ...` on stderr) on a bad input."""
    parser = argparse.ArgumentParser(
        prog="python -m search.report", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "experiment", nargs="?", help="experiment folder: a path, or s3:// gs:// file:// URI"
    )
    parser.add_argument(
        "--metric",
        default="test_dice",
        help=f"test column to rank by, e.g. {', '.join(METRICS)}",
    )
    parser.add_argument(
        "--out",
        default=None,
        help=f"output folder (default EXP/{REPORT_DIR}, or ./report_<name> for a URI)",
    )
    parser.add_argument(
        "--hc-fail-mm",
        type=float,
        default=None,
        help="HC error (mm) above which a measurement fails; empty predictions always fail "
        "(default: the experiment's search.report.hc_fail_mm, else 10)",
    )
    parser.add_argument(
        "--data",
        default=None,
        help="folder holding the test images for the worst-images figure "
        "(default: the experiment's trial.data_dir)",
    )
    parser.add_argument("--wandb", choices=["online", "offline", "disabled"], default="disabled")
    parser.add_argument("--wandb-project", default=None, help="default: the config's project")
    parser.add_argument(
        "--wandb-timeout-s",
        type=float,
        default=None,
        help="seconds W&B may take to start and to finish before the report gives it up "
        "(default: the experiment's search.wandb_timeout_s, else 60)",
    )
    parser.add_argument(
        "--wandb-report",
        action="store_true",
        help=f"also build a W&B Report of the study's runs: {wandb_report.REPORT_JSON} in the "
        "output folder, saved to W&B too with --wandb online (a login needed; if saving fails "
        "the file stays, for --push-wandb-report). Its ranking table needs the report run "
        "(--wandb online|offline). Without an entity (--wandb-entity, search.wandb.entity) the "
        "file holds entity null: the login's default entity when pushed",
    )
    parser.add_argument(
        "--wandb-entity", default=None, help="W&B entity (team) of the report (default: config's)"
    )
    parser.add_argument(
        "--push-wandb-report",
        metavar="FOLDER",
        default=None,
        help=f"save the {wandb_report.REPORT_JSON} in FOLDER (or that file) to W&B, and exit",
    )
    args = parser.parse_args(argv)
    if (args.experiment is None) == (args.push_wandb_report is None):
        parser.error("give an experiment folder, or --push-wandb-report FOLDER (not both)")
    try:
        if args.push_wandb_report is not None:
            report = wandb_report.read_definition(args.push_wandb_report)
            where = Path(args.push_wandb_report)
            folder = where if where.is_dir() else where.parent
            print(f"W&B Report saved: {push(report, args.wandb_entity, folder)}")
            return 0
        if args.wandb_timeout_s is not None and not args.wandb_timeout_s > 0:
            raise ConfigError(f"--wandb-timeout-s must be > 0, got {args.wandb_timeout_s}")
        if args.hc_fail_mm is not None and not args.hc_fail_mm > 0:
            raise ConfigError(f"--hc-fail-mm must be > 0, got {args.hc_fail_mm}")
        result = build_report(
            args.experiment,
            args.metric,
            args.out,
            args.wandb,
            args.wandb_project,
            hc_fail_mm=args.hc_fail_mm,
            data_dir=args.data,
            wandb_timeout_s=args.wandb_timeout_s,
        )
        if args.wandb_report:
            result.text += "\n" + _wandb_report(args, result)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(result.text)
    return 0


def _wandb_report(args, result) -> str:
    """Write the W&B Report's definition beside the report; save it when W&B is online."""
    report = wandb_report.definition(
        Experiment.at(args.experiment),
        args.metric,
        args.wandb_project,
        args.wandb_entity,
        args.wandb != "disabled",
    )
    path = wandb_report.write_definition(report, result.out_dir)
    left_out = "".join(f"\n  left out: {reason}" for reason in report["skipped"])
    later = f"`python -m search.report --push-wandb-report {result.out_dir}` saves it"
    if args.wandb != "online":
        return f"W&B Report: its definition is in {path}; {later} (a W&B login needed).{left_out}"
    try:
        return f"W&B Report saved: {push(report, args.wandb_entity, result.out_dir)}{left_out}"
    except Exception as err:  # no login, no entity, no network: the definition stays
        reason = str(err).splitlines()[0][:300] if str(err) else ""
        return f"W&B Report not saved ({type(err).__name__}: {reason}); {later} later.{left_out}"


if __name__ == "__main__":
    sys.exit(main())
