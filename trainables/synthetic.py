"""[from synthetic.py]
HC18-like synthetic ultrasound with a known head ellipse, in the official HC18 layout.

Each image: a fan-shaped field of view on black, Rayleigh speckle, a bright skull ring whose outer
edge is the annotated ellipse (as in HC18), acoustic shadows behind the skull, dark fluid and
textured tissue, and brightness falling with depth. The CSV's head circumference is the ellipse's
Ramanujan perimeter times the pixel size, so metrics can be checked against exact answers.
`<subset>_ellipses.csv` holds the true ellipses (pixels) for such checks.

CLI: python -m trainables.synthetic --out DIR --n 100 [--seed 0] [--outline] [--test-set N]
"""

from __future__ import annotations

import argparse

from trainables.data.synthetic import generate_dataset


def main(argv: list[str] | None = None) -> None:
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
    out = generate_dataset(
        args.out,
        args.n,
        seed=args.seed,
        size=(args.width, args.height),
        outline=args.outline,
        with_test_set=args.test_set,
    )
    print(f"wrote {args.n} training images (+{args.test_set} test) to {out}")


if __name__ == "__main__":
    main()

