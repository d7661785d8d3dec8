"""Score trained checkpoints again with other post-processing and test-time augmentation
settings.

    python -m trainables.evaluate --checkpoint runs/x/best.pt --data HC18_DIR \
        --postprocess none largest ellipse --tta off on --out evaluation.csv

The CLI rebuilds the checkpoint's split from its trial config (seeded, so the same test images),
runs the network once per TTA setting and post-processing, and writes one row per setting: the
same model measured every way, no retraining. Each row holds the metrics of the post-processed
masks and (as `raw_*`) of the raw ones.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from trainables.core.errors import UserError
from trainables.data.trial_data import load_trial_data
from trainables.evaluation.evaluate import SUMMARY_COLUMNS, evaluate_dataset
from trainables.evaluation.hc_errors import HC_FAIL_MM
from trainables.geometry.postprocess import POSTPROCESS
from trainables.training.checkpoints import load_checkpoint_model


def evaluate_checkpoint(
    checkpoint: str | Path,
    data_dir: str | None = None,
    side: str = "test",
    postprocess: list[str] | None = None,
    tta: list[bool] | None = None,
    device: str = "cpu",
    hc_fail_mm: float = HC_FAIL_MM,
    per_image_dir: Path | None = None,
) -> pd.DataFrame:
    """Score one checkpoint on its own split, once per (TTA, post-processing) setting.

    Args:
        checkpoint: a trial's best.pt (its trial config rebuilds the network and the split).
        data_dir: the data folder (default: the trial config's).
        side: train, val or test.
        postprocess, tta: the settings to try (default: the trial's own).
        per_image_dir: also write each setting's per-image rows there as CSV.
    Returns:
        One row per setting: checkpoint, strategy, seed, side, tta, postprocess, n_images,
        eval_s, `SUMMARY_COLUMNS` and their `raw_*` twins.
    """
    model, cfg = load_checkpoint_model(checkpoint, torch.device(device))
    if data_dir is not None:
        cfg = cfg.model_copy(update={"data_dir": str(data_dir)})
    data = getattr(load_trial_data(cfg), side)
    rows = []
    for flip in tta if tta is not None else [cfg.tta]:
        for mode in postprocess or [cfg.postprocess]:
            setting = cfg.model_copy(update={"tta": flip, "postprocess": mode})
            started = time.perf_counter()
            result = evaluate_dataset(model, data, setting, torch.device(device), True, hc_fail_mm)
            row = {"checkpoint": str(checkpoint), "strategy": cfg.strategy, "seed": cfg.seed}
            row |= {"side": side, "tta": flip, "postprocess": mode}
            row |= {"n_images": result["n_images"], "eval_s": time.perf_counter() - started}
            for key in SUMMARY_COLUMNS:
                row |= {key: result[key], f"raw_{key}": result[f"raw_{key}"]}
            rows.append(row)
            if per_image_dir is not None:
                per_image_dir.mkdir(parents=True, exist_ok=True)
                name = f"{cfg.run_name}__{side}__tta{'on' if flip else 'off'}__{mode}.csv"
                pd.DataFrame(result["per_image"]).to_csv(per_image_dir / name, index=False)
    return pd.DataFrame(rows)


def _on_off(text: str) -> bool:
    if text not in ("on", "off"):
        raise argparse.ArgumentTypeError(f"expected on or off, got {text!r}")
    return text == "on"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trainables.evaluate",
        description="Score trained checkpoints on their own split with each post-processing and "
        "test-time augmentation setting (one row per checkpoint and setting).",
    )
    parser.add_argument("--checkpoint", nargs="+", required=True, help="trials' best.pt files")
    parser.add_argument("--data", help="HC18-layout folder (default: each checkpoint's own)")
    parser.add_argument(
        "--side",
        choices=["train", "val", "test"],
        default="test",
        help="which side of the checkpoint's split to score (default %(default)s)",
    )
    parser.add_argument(
        "--postprocess",
        nargs="+",
        choices=POSTPROCESS,
        help="post-processing settings to try (default: the checkpoint's own)",
    )
    parser.add_argument(
        "--tta",
        nargs="+",
        type=_on_off,
        metavar="{on,off}",
        help="flip test-time augmentation settings to try (default: the checkpoint's own)",
    )
    parser.add_argument(
        "--hc-fail-mm",
        type=float,
        default=HC_FAIL_MM,
        help="HC error counted as a failed measurement (default %(default)s mm)",
    )
    parser.add_argument("--out", required=True, type=Path, help="CSV of the summary rows")
    parser.add_argument("--per-image", type=Path, help="folder for each setting's per-image CSV")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    frames = []
    try:
        for checkpoint in args.checkpoint:
            frames.append(
                evaluate_checkpoint(
                    checkpoint,
                    args.data,
                    args.side,
                    args.postprocess,
                    args.tta,
                    args.device,
                    args.hc_fail_mm,
                    args.per_image,
                )
            )
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    table = pd.concat(frames, ignore_index=True)
    table.to_csv(args.out, index=False)
    shown = ["strategy", "tta", "postprocess", "dice", "dice_median", "hc_abs_diff_mm"]
    shown += ["hc_abs_diff_mm_median", "hc_fail_rate", "eval_s"]
    print(table[shown].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
