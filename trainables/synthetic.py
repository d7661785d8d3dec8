"""Write an HC18-like synthetic data set with known head ellipses, in the official HC18 layout.

    python -m trainables.synthetic --out DIR --n 100 [--seed 0] [--outline] [--test-set N]

The images and their exact answers (`<subset>_ellipses.csv`) are `trainables.data.synthetic`'s.
"""

from __future__ import annotations

import argparse
import sys

from trainables.core.errors import UserError
from trainables.data.synthetic import generate_dataset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trainables.synthetic", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--out", required=True, help="output folder (HC18 layout)")
    parser.add_argument("--n", type=int, default=100, help="annotated training images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--outline", action="store_true", help="outline annotations (official)")
    parser.add_argument("--test-set", type=int, default=0, help="unannotated test_set images")
    parser.add_argument("--width", type=int, default=800)
    parser.add_argument("--height", type=int, default=540)
    args = parser.parse_args(argv)
    try:
        out = generate_dataset(
            args.out,
            args.n,
            seed=args.seed,
            size=(args.width, args.height),
            outline=args.outline,
            with_test_set=args.test_set,
        )
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.n} training images (+{args.test_set} test) to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
