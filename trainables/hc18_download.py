"""Download the official HC18 data set from Zenodo into the layout `--data` expects.

    python -m trainables.hc18_download --out HC18_DIR

How (Zenodo's records API, resumable downloads checked for size and MD5, archives unpacked
safely, the attribution kept beside the data) is `trainables.data.download`'s. Exit status: 0
done; 2 Zenodo cannot be reached (run the command again to resume); 1 any other failure (a file
fails its check, an unsafe archive, a folder in the way, files not in the HC18 layout).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from trainables.data.download import (
    ATTRIBUTION,
    BASE_URL,
    DEFAULT_FILES,
    DOI,
    LICENCE,
    RECORD_ID,
    fetch_hc18,
)
from trainables.data.http_fetch import DownloadError, NetworkError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trainables.hc18_download",
        description=(
            f"Download the HC18 data set from Zenodo (record {RECORD_ID}, doi:{DOI}),\n"
            f"licence {LICENCE}.\n"
            "Every file is checked against the size and MD5 that Zenodo's record lists;\n"
            "an interrupted download resumes; the archives are unpacked into the layout\n"
            "that --data expects (training_set/, test_set/, the two CSVs)."
        ),
        epilog=ATTRIBUTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", required=True, type=Path, help="folder to fill (HC18 layout)")
    parser.add_argument("--record", default=RECORD_ID, help="Zenodo record id (default: HC18's)")
    parser.add_argument("--base-url", default=BASE_URL, help=f"Zenodo's address ({BASE_URL})")
    parser.add_argument(
        "--files",
        nargs="+",
        default=list(DEFAULT_FILES),
        metavar="NAME",
        help="which of the record's files (default: all four)",
    )
    parser.add_argument("--keep-archives", action="store_true", help="keep the zips")
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace existing training_set/ or test_set/ folders in --out (else refused)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        fetch_hc18(
            args.out,
            record_id=args.record,
            base_url=args.base_url,
            names=args.files,
            keep_archives=args.keep_archives,
            force=args.force,
        )
    except NetworkError as err:
        print(
            f"error: cannot download: {err}. Check the network, or download the files by hand "
            f"from https://doi.org/{DOI} and unpack them into {args.out} (training_set/, "
            "test_set/ and the two CSVs).",
            file=sys.stderr,
        )
        return 2
    except (DownloadError, OSError, ValueError) as err:  # DataError (a ValueError) too: exit 1
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"HC18 is ready in {args.out} (use --data {args.out}).\n\n{ATTRIBUTION}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
