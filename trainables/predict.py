"""Predict head ellipses with a trained checkpoint and write HC18 submission rows.

    python -m trainables.predict --checkpoint runs/x/best.pt --data HC18_DIR --out submission.csv

Rows: `filename,center_x_mm,center_y_mm,semi_axes_a_mm,semi_axes_b_mm,angle_rad` (the HC18
challenge's submission format) plus `hc_mm`, from the ellipse fitted to the predicted mask after
the trial's test-time augmentation and post-processing (`tta`, `postprocess`; `--tta` and
`--postprocess` override them), as its evaluation measured it. The official `test_set/` is read
when present, else `training_set/` (`--subset` chooses). An image whose prediction is empty gets
an empty row and is counted on stderr, never dropped.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
import torch

from trainables.core.errors import UserError
from trainables.data.arrays import load_arrays
from trainables.data.augment import to_network_input
from trainables.geometry.ellipse import measure_mask
from trainables.geometry.postprocess import POSTPROCESS, head_masks, postprocess_batch
from trainables.training.checkpoints import load_checkpoint_model

COLUMNS = [
    "filename",
    "center_x_mm",
    "center_y_mm",
    "semi_axes_a_mm",
    "semi_axes_b_mm",
    "angle_rad",
    "hc_mm",
]


@torch.inference_mode()
def predict_rows(
    model,
    data,
    device: torch.device,
    mask_outset_px: float,
    batch_size: int = 16,
    postprocess: str = "none",
    tta: bool = False,
) -> list[dict]:
    """One submission row per image; `mask_outset_px`, `postprocess` and `tta` are the
    trial's settings of the same names."""
    rows, scale_xy = [], data.scale_xy
    for start in range(0, len(data), batch_size):
        stop = min(start + batch_size, len(data))
        images = to_network_input(torch.from_numpy(data.images[start:stop]).to(device))
        masks = postprocess_batch(head_masks(model, images, tta).cpu().numpy(), postprocess)
        for i, mask in enumerate(masks, start=start):
            # A network learns its training masks' outset beyond the ellipse (HC18's: 1.58 px).
            fit = measure_mask(mask, data.pixel_size_mm[i], scale_xy[i], mask_outset_px)
            row = {"filename": data.filenames[i]}
            if fit is not None:
                row |= {k: getattr(fit, k) for k in COLUMNS[1:]}
            rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trainables.predict",
        description="Write HC18 submission rows (+ hc_mm) from a trained checkpoint.",
    )
    parser.add_argument("--checkpoint", required=True, help="a trial's best.pt")
    parser.add_argument("--data", required=True, help="HC18-layout folder")
    parser.add_argument("--out", required=True, help="CSV to write")
    parser.add_argument(
        "--subset",
        choices=["auto", "test_set", "training_set"],
        default="auto",
        help="auto = test_set when the folder has one, else training_set",
    )
    parser.add_argument(
        "--postprocess", choices=POSTPROCESS, help="default: the checkpoint's trial setting"
    )
    parser.add_argument(
        "--tta", choices=["on", "off"], help="flip TTA; default: the checkpoint's trial setting"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    subset = args.subset
    if subset == "auto":
        subset = "test_set" if (Path(args.data) / "test_set").is_dir() else "training_set"
    try:
        model, cfg = load_checkpoint_model(args.checkpoint, device)
        data = load_arrays(args.data, cfg.image_size, subset=subset, cache_dir=cfg.cache_dir)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    postprocess = args.postprocess or cfg.postprocess
    tta = cfg.tta if args.tta is None else args.tta == "on"
    rows = predict_rows(
        model, data, device, cfg.hc_mask_outset_px, postprocess=postprocess, tta=tta
    )
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame.to_csv(args.out, index=False, float_format="%.6f")
    empty = int(frame["hc_mm"].isna().sum())
    settings = f"postprocess {postprocess}, tta {'on' if tta else 'off'}"
    print(f"{len(frame)} images -> {args.out} ({subset}, {settings}; {empty} without a head)")
    if empty:
        print(f"warning: {empty} images had an empty prediction (empty rows)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
