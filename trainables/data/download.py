"""Download the official HC18 data set from Zenodo into the layout `--data` expects (the CLI:
`python -m trainables.hc18_download --out HC18_DIR`).

Source: Zenodo record 1327317 (doi:10.5281/zenodo.1327317), licence CC BY 4.0. The file list,
sizes and MD5 checksums are read at run time from Zenodo's records API
(`GET {base}/api/records/{id}`: `files[]` with `key`, `size`, `checksum` = "md5:<hex>" and
`links.self`, the download URL). Each file is downloaded to `NAME.part`, resumed with an HTTP
Range request after an interruption (in the same run, or by running the command again), checked
for size and MD5, and only then renamed into place; a file already present and verified is
skipped. The archives are unpacked into `training_set/` and `test_set/` beside the two CSVs, and
the attribution is printed and written to `HC18_DIR/README.md`.
"""

from __future__ import annotations

import json
import shutil
import sys
import urllib.error
import urllib.parse
import zipfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from trainables.core.atomic import atomic_output
from trainables.data.hc18_files import SUBSET_CSV, scan_dataset
from trainables.data.http_fetch import (
    CHUNK_BYTES,
    TRANSIENT_ERRORS,
    DownloadError,
    NetworkError,
    RemoteFile,
    download,
    open_url,
)

RECORD_ID = "1327317"
DOI = "10.5281/zenodo.1327317"
BASE_URL = "https://zenodo.org"
LICENCE = "CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/)"
ARCHIVES = tuple(f"{subset}.zip" for subset in SUBSET_CSV)  # training_set.zip, test_set.zip
DEFAULT_FILES = ARCHIVES + tuple(SUBSET_CSV.values())
ATTRIBUTION = f"""\
HC18 data set: van den Heuvel, de Bruijn, de Korte, van Ginneken (2018), "Automated measurement
of fetal head circumference using 2D ultrasound images", PLoS ONE 13(8): e0200412.
Data: Zenodo record {RECORD_ID}, doi:{DOI} (https://doi.org/{DOI}).
Licence: {LICENCE}. Keep this attribution beside any copy."""

UNPACKED_STAMP = ".hc18_download.md5"  # in an unpacked folder: the MD5 of its archive
# An archive may unpack to at most this many times its own size (HC18's zips of PNGs unpack to
# about 1x: the PNGs are compressed already); a zip bomb is refused before or while unpacking.
MAX_UNPACK_RATIO = 20


def parse_record(record: dict, base_url: str, record_id: str) -> dict[str, RemoteFile]:
    """Zenodo record JSON -> {file name: RemoteFile}. Raises DownloadError if malformed."""
    files = {}
    for entry in record.get("files") or []:
        try:
            name = entry["key"]
            # "md5:<hex>"; a bare hex digest (Zenodo served those for a while in 2023) is MD5 too
            algorithm, _, digest = entry["checksum"].rpartition(":")
            size = int(entry["size"])
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise DownloadError(f"record {record_id}: unexpected file entry {entry!r}") from err
        if algorithm not in ("", "md5") or len(digest) != 32:
            raise DownloadError(f"record {record_id}: {name}: not an MD5 checksum: {digest!r}")
        # A plain file name: no folder, and not hidden (so no archive stem '.' or '..', whose
        # unpacked folder would be --out's parent or --out itself).
        if PurePosixPath(name).name != name or name.startswith(".") or not name.strip():
            raise DownloadError(f"record {record_id}: refusing file name {name!r}")
        default_url = f"{base_url}/api/records/{record_id}/files/{name}/content"
        url = (entry.get("links") or {}).get("self") or default_url
        # Zenodo's links keep a name's spaces as they are; http.client refuses them unquoted.
        url = urllib.parse.quote(url, safe=":/?&=%#@+,;~")
        files[name] = RemoteFile(name, size, digest.lower(), url)
    if not files:
        raise DownloadError(f"record {record_id}: the record lists no files")
    return files


def fetch_record(base_url: str, record_id: str) -> dict[str, RemoteFile]:
    """The record's files, from `{base_url}/api/records/{record_id}`."""
    url = f"{base_url.rstrip('/')}/api/records/{record_id}"
    try:
        with open_url(url, {"Accept": "application/json"}) as response:
            record = json.load(response)
    except urllib.error.HTTPError as err:
        raise NetworkError(f"{url}: HTTP {err.code} {err.reason}") from err
    except TRANSIENT_ERRORS as err:
        raise NetworkError(f"{url}: {getattr(err, 'reason', err)}") from err
    except ValueError as err:
        raise DownloadError(f"{url}: not a Zenodo record (invalid JSON: {err})") from err
    return parse_record(record, base_url.rstrip("/"), record_id)


def _member_path(name: str) -> PurePosixPath | None:
    """A zip member's relative path, or None when it could escape the target (zip-slip)."""
    path = PurePosixPath(name.replace("\\", "/"))
    if not path.parts or path.is_absolute() or ".." in path.parts or ":" in path.parts[0]:
        return None
    return path


def unpack(archive: Path, out_dir: Path, md5: str, force: bool = False) -> Path:
    """Unpack `SUBSET.zip` into `out_dir/SUBSET/` (whether or not it holds a top folder).

    Every member path is checked before anything is written (no absolute paths, no `..`), the
    unpacked size is capped at `MAX_UNPACK_RATIO` times the archive's, and the folder appears
    whole or not at all (unpacked beside it, then swapped in); its stamp records the archive's
    MD5. An existing folder that this command did not unpack is replaced only with `force`.
    """
    target, staging = out_dir / archive.stem, out_dir / f".{archive.stem}.unpacking"
    _check_replaceable(target, force)
    shutil.rmtree(staging, ignore_errors=True)  # only ever this command's own staging folder
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [
                m for m in zf.infolist() if not m.is_dir() and not m.filename.startswith("__MACOSX")
            ]
            paths = {m.filename: _member_path(m.filename) for m in members}
            unsafe = sorted(name for name, path in paths.items() if path is None)
            if unsafe:
                raise DownloadError(f"{archive.name}: refusing unsafe member path(s) {unsafe}")
            budget = MAX_UNPACK_RATIO * archive.stat().st_size
            if sum(m.file_size for m in members) > budget:
                raise DownloadError(_too_large(archive))
            # training_set.zip holds training_set/NNN_HC.png: strip one folder all members share
            tops = {path.parts[0] for path in paths.values()}
            strip = len(tops) == 1 and all(len(path.parts) > 1 for path in paths.values())
            for member in members:
                dest = staging.joinpath(*paths[member.filename].parts[1 if strip else 0 :])
                dest.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(member) as src, open(dest, "wb") as dst:
                    # The sizes a zip declares can lie: count what is written as well.
                    while chunk := src.read(CHUNK_BYTES):
                        budget -= len(chunk)
                        if budget < 0:
                            raise DownloadError(_too_large(archive))
                        dst.write(chunk)
        staging.mkdir(exist_ok=True)
        (staging / UNPACKED_STAMP).write_text(md5 + "\n")
        shutil.rmtree(target, ignore_errors=True)  # an earlier unpack of ours, or --force
        staging.replace(target)
    except (zipfile.BadZipFile, zipfile.LargeZipFile) as err:
        raise DownloadError(f"{archive.name}: not a readable zip archive ({err})") from err
    except (RuntimeError, NotImplementedError) as err:  # encrypted, unknown compression
        raise DownloadError(f"{archive.name}: cannot unpack ({err})") from err
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _check_replaceable(folder: Path, force: bool) -> None:
    """Raise DownloadError for a non-empty folder (or a file) at an archive's target that no
    unpack of this command stamped, unless `force`: it is not ours to delete."""
    if force or not folder.exists():
        return
    if not folder.is_dir() or (any(folder.iterdir()) and not (folder / UNPACKED_STAMP).is_file()):
        raise DownloadError(
            f"{folder} exists and was not unpacked by this command; move it away, or pass "
            "--force to replace it"
        )


def _too_large(archive: Path) -> str:
    return (
        f"{archive.name}: unpacks to more than {MAX_UNPACK_RATIO} times its "
        f"{archive.stat().st_size} bytes; refused (not an HC18 archive)"
    )


def is_unpacked(archive_name: str, out_dir: Path, md5: str) -> bool:
    stamp = out_dir / Path(archive_name).stem / UNPACKED_STAMP
    return stamp.is_file() and stamp.read_text().strip() == md5


def fetch_hc18(
    out_dir: str | Path,
    *,
    record_id: str = RECORD_ID,
    base_url: str = BASE_URL,
    names: Sequence[str] = DEFAULT_FILES,
    keep_archives: bool = False,
    force: bool = False,
) -> Path:
    """Download, verify and unpack the named files of the record into out_dir.

    Args:
        out_dir: created if needed; becomes a folder in the HC18 layout.
        record_id: the Zenodo record (HC18's by default).
        base_url: Zenodo's address; tests point it at a local server.
        names: which of the record's files; archives (`*.zip`) are unpacked into a folder of
            their stem.
        keep_archives: keep the zip files after unpacking (else they are deleted).
        force: replace existing `training_set/` / `test_set/` folders this command did not
            unpack (else refused).

    Returns:
        out_dir as a Path.

    Raises:
        DownloadError: a file fails its check or an archive is unsafe or unreadable;
            NetworkError when the server cannot be reached.
        DataError: the unpacked files are not in the HC18 layout.
    """
    out_dir = Path(out_dir)
    remote_files = fetch_record(base_url, record_id)
    unknown = [n for n in names if n not in remote_files]
    if unknown:
        raise DownloadError(
            f"record {record_id} has no file(s) {unknown}; it lists {sorted(remote_files)}"
        )
    for name in names:  # before anything is downloaded
        if name.endswith(".zip"):
            _check_replaceable(out_dir / Path(name).stem, force)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        remote = remote_files[name]
        if name.endswith(".zip") and is_unpacked(name, out_dir, remote.md5):
            print(f"{name}: already unpacked into {Path(name).stem}/, verified", file=sys.stderr)
            continue
        path = download(remote, out_dir)
        if name.endswith(".zip"):
            target = unpack(path, out_dir, remote.md5, force)
            print(f"{name}: unpacked into {target}", file=sys.stderr)
            if not keep_archives:
                path.unlink()
    for subset, csv_name in SUBSET_CSV.items():  # the layout --data reads (cheap: no decoding)
        if (out_dir / subset).is_dir() and (out_dir / csv_name).is_file():
            count = len(scan_dataset(out_dir, subset))
            print(f"{subset}: {count} images, each listed in {csv_name}", file=sys.stderr)
    with atomic_output(out_dir / "README.md", "w") as readme:
        readme.write("# HC18\n\nDownloaded by `python -m trainables.hc18_download`.\n\n")
        readme.write(ATTRIBUTION + "\n")
    return out_dir
