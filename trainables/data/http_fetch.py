"""One file over HTTP(S), resumable and verified: `NAME.part` -> size + MD5 -> `NAME`.

The standard library only (urllib), plus tqdm for a progress bar on a terminal when it is
installed (it comes with Ray). A dropped connection is retried from the bytes already on disk
with `Range: bytes=N-`; a server that ignores Range (200) gets a fresh start; a part that stays
behind after the last attempt is resumed by the next call.
"""

from __future__ import annotations

import hashlib
import http.client
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

TIMEOUT_S = 60  # per socket operation, not per file
CHUNK_BYTES = 1 << 20
ATTEMPTS = 3  # per file; each retry resumes from the bytes already on disk
RETRY_WAIT_S = 1.0
PROGRESS_MIN_BYTES = 8 << 20  # smaller files get one line, not a progress bar
# Connection lost mid-body: resumable. URLError wraps DNS failures and refused connections.
TRANSIENT_ERRORS = (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError)


class DownloadError(Exception):
    """A download that cannot succeed as it stands: wrong size or checksum, an HTTP error."""


class NetworkError(DownloadError):
    """The server could not be reached (DNS, refused, timed out) or stopped answering."""


@dataclass(frozen=True)
class RemoteFile:
    """A file as its source lists it: the size and MD5 it must have, where to GET it."""

    name: str
    size: int
    md5: str
    url: str


def open_url(url: str, headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    """GET url (http or https only); raises DownloadError for another scheme, urllib's
    HTTPError (a status >= 400) or a TRANSIENT_ERRORS member."""
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise DownloadError(f"{url}: only http(s) addresses are fetched, not {scheme or 'no'}:")
    request = urllib.request.Request(url, headers={"User-Agent": "freezeframe", **(headers or {})})
    return urllib.request.urlopen(request, timeout=TIMEOUT_S)


def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def verified(path: Path, remote: RemoteFile) -> bool:
    """The file exists with the size and MD5 its source lists."""
    return path.is_file() and path.stat().st_size == remote.size and md5_of(path) == remote.md5


class Progress:
    """A tqdm bar on a terminal; on a pipe or in a log, one line per 10% for large files."""

    def __init__(self, remote: RemoteFile, done: int):
        self.name, self.total, self.done = remote.name, remote.size, done
        self.bar, self.last_decile = None, done * 10 // max(remote.size, 1)
        megabytes = f"{remote.size / 1e6:.1f} MB"
        resumed = f", resuming at {done / 1e6:.1f} MB" if done else ""
        if sys.stderr.isatty() and remote.size >= PROGRESS_MIN_BYTES:
            try:
                from tqdm import tqdm  # installed with Ray; the plain lines below otherwise
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(
                    total=remote.size, initial=done, unit="B", unit_scale=True, desc=remote.name
                )
                return
        print(f"{remote.name}: downloading {megabytes}{resumed}", file=sys.stderr, flush=True)

    def update(self, count: int) -> None:
        self.done += count
        if self.bar is not None:
            self.bar.update(count)
            return
        decile = self.done * 10 // max(self.total, 1)
        if self.total >= PROGRESS_MIN_BYTES and decile > self.last_decile:
            self.last_decile = decile
            print(f"{self.name}: {decile * 10}%", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _fetch_once(remote: RemoteFile, part: Path) -> None:
    """One GET of what `part` still lacks (Range from its size); appends to it."""
    offset = part.stat().st_size if part.exists() else 0
    if offset > remote.size:  # not a prefix of this file
        part.unlink()
        offset = 0
    if offset == remote.size:
        return
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    try:
        response = open_url(remote.url, headers)
    except urllib.error.HTTPError as err:
        if err.code == 416:  # the part is no prefix the server recognises: start again
            part.unlink(missing_ok=True)
            raise ConnectionError("range not satisfiable; restarting") from err
        raise DownloadError(
            f"{remote.name}: HTTP {err.code} {err.reason} from {remote.url}"
        ) from err
    with response:
        if offset and response.status != 206:  # the server ignored Range: the body is whole
            offset = 0
        elif offset and _range_start(response) != offset:
            part.unlink()
            got = response.headers.get("Content-Range")
            raise ConnectionError(f"asked for bytes {offset}-, got {got!r}; restarting")
        expected = offset + int(response.headers.get("Content-Length") or remote.size - offset)
        expected = min(expected, remote.size)  # never more than the source lists
        progress = Progress(remote, offset)
        try:
            with open(part, "r+b" if offset else "wb") as out:
                out.seek(offset)
                out.truncate()
                # Reading stops at the listed size: an endless or oversized body cannot fill
                # the disk (what was read is then checked against the MD5).
                while (left := remote.size - out.tell()) > 0 and (
                    chunk := response.read(min(CHUNK_BYTES, left))
                ):
                    out.write(chunk)
                    progress.update(len(chunk))
        finally:
            progress.close()
    # http.client returns a short body without an error when the connection drops.
    received = part.stat().st_size
    if received < expected:
        raise ConnectionError(f"connection closed after {received} of {expected} bytes")


def _range_start(response: http.client.HTTPResponse) -> int | None:
    """Where a 206 response's body starts (`Content-Range: bytes START-END/TOTAL`)."""
    unit_range = (response.headers.get("Content-Range") or "").partition(" ")[2]
    start = unit_range.partition("-")[0]
    return int(start) if start.isdigit() else None


def download(remote: RemoteFile, out_dir: Path, attempts: int = ATTEMPTS) -> Path:
    """Download one file into out_dir (resuming `NAME.part`), verify it, rename it into place.

    Raises:
        DownloadError: wrong size or MD5 (the part is deleted), or an HTTP error.
        NetworkError: still unreachable after `attempts` tries (the part is kept to resume).
    """
    final, part = out_dir / remote.name, out_dir / f"{remote.name}.part"
    if verified(final, remote):
        print(f"{remote.name}: already present, verified", file=sys.stderr)
        return final
    for attempt in range(1, attempts + 1):
        try:
            _fetch_once(remote, part)
            break
        except TRANSIENT_ERRORS as err:
            have = part.stat().st_size if part.exists() else 0
            if attempt == attempts:
                raise NetworkError(
                    f"{remote.url}: {getattr(err, 'reason', err)} ({have} of {remote.size} "
                    f"bytes kept in {part}; run the same command again to resume)"
                ) from err
            print(f"{remote.name}: {err!r}; retrying from byte {have}", file=sys.stderr)
            time.sleep(RETRY_WAIT_S * attempt)
    got_size = part.stat().st_size
    got_md5 = md5_of(part) if got_size == remote.size else None
    if got_md5 != remote.md5:
        part.unlink()
        found = f"MD5 {got_md5}" if got_md5 else f"{got_size} bytes"
        raise DownloadError(
            f"{remote.name}: checksum mismatch: downloaded {found}, but its source lists "
            f"{remote.size} bytes with MD5 {remote.md5}; the download was deleted"
        )
    part.replace(final)
    return final
