"""`python -m search.report EXPERIMENT_DIR`: the ranked, honest summary of one experiment.

Reads only saved results (the experiment's trials table, config, split and per-image test
tables), so it works on a finished, a running or a copied experiment, at a local path or a
storage URI (s3://, gs://, file://). Writes report.md, report.html (self-contained),
strategies.csv, pareto.png/.svg, boxplot.png and, from the final trials' per-image tables,
bland_altman.png and worst_images.png to --out (default: the experiment's report folder, or
./report_<name>/ for a URI), prints the table and the notes, and with --wandb logs the table and
plots to the experiment's W&B group.
"""

from __future__ import annotations

import argparse
import sys

from search.experiment.folder import REPORT_DIR
from search.report.build import build_report
from search.shared.metrics import METRICS
from trainables.core.errors import ConfigError, UserError


def main(argv: list[str] | None = None) -> int:
    """Run the report CLI. Returns 0, or 2 (with `error: ...` on stderr) on a bad input."""
    parser = argparse.ArgumentParser(
        prog="python -m search.report", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("experiment", help="experiment folder: a path, or s3:// gs:// file:// URI")
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
    args = parser.parse_args(argv)
    try:
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
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(result.text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
