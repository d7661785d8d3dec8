"""`python -m trainables.bench.pretraining --data HC18`: which offline pretraining helps
decoder-only fine-tuning most, and at what cost (how the pretrain stage's defaults were chosen).

For every source it pretrains an encoder (on the target's training split only for the
self-supervised ones), then fine-tunes the paper's `decoder` strategy from it with the given
config's recipe, on the same split and seeds, and tests it once; `none` starts from random
weights. It prints (and writes with --json) test Dice per source and seed, and the pretraining
wall time. A measurement, not a product path: the search service's pretrain stage does the
same through `search.pretrain`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from trainables.core.errors import UserError
from trainables.data.synthetic import generate_dataset
from trainables.data.trial_data import load_trial_data
from trainables.nets.resolve import load_trial_config
from trainables.training.pretext import run_pretext
from trainables.training.run import run_trial

# name: (kind, settings)
SOURCES = {
    "none": ("none", {}),
    "synthetic_80x4": ("synthetic", {"images": 80, "epochs": 4}),
    "synthetic_400x10": ("synthetic", {"images": 400, "epochs": 10}),
    "synthetic_800x12": ("synthetic", {"images": 800, "epochs": 12}),
    "masked_20": ("pretext", {"method": "masked", "epochs": 20}),
    "denoise_20": ("pretext", {"method": "denoise", "epochs": 20}),
}


def pretrain(name: str, base, data, work: Path) -> str:
    """An encoder checkpoint for source `name` ('none' for random weights)."""
    kind, settings = SOURCES[name]
    if kind == "none":
        return "none"
    pre = base.model_copy(update={"strategy": "all", "lr": 1e-3, "epochs": settings["epochs"]})
    if kind == "synthetic":
        source = generate_dataset(work / f"synthetic_{settings['images']}", settings["images"])
        pre = pre.model_copy(
            update={"data_dir": str(source), "max_images": None, "hc_mask_outset_px": 0.0}
        )
        run_trial(pre, work / name, evaluate_test=False, verbose=False)
    else:
        run_pretext(pre, work / name, data.train.images, settings["method"], verbose=False)
    return str(work / name / "best.pt")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trainables.bench.pretraining", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--data", required=True, help="HC18-layout folder (the target)")
    parser.add_argument("--config", default="configs/hc18_cpu.yaml", help="trial recipe")
    parser.add_argument("--sources", default=",".join(SOURCES), help="comma-separated")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    sets = ["encoder_weights=none", f"num_threads={args.threads}", "split=grouped"]
    sets += ["max_images=null"]  # every image of --data
    try:
        base = load_trial_config(args.config, sets, data_dir=args.data)
        data = load_trial_data(base)
        figures: dict = {"config": args.config, "image_size": base.image_size, "sources": {}}
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            for name in args.sources.split(","):
                started = time.perf_counter()
                weights = pretrain(name, base, data, work)
                row = {"pretrain_s": round(time.perf_counter() - started, 1), "test_dice": {}}
                for seed in map(int, args.seeds.split(",")):
                    cfg = base.model_copy(
                        update={"strategy": "decoder", "seed": seed, "encoder_weights": weights}
                    )
                    metrics = run_trial(cfg, work / f"ft_{name}_{seed}", data=data, verbose=False)
                    row["test_dice"][seed] = round(metrics["test"]["dice"], 4)
                figures["sources"][name] = row
                print(name, json.dumps(row), flush=True)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
