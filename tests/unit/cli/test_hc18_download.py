"""`python -m trainables.hc18_download` against a fake Zenodo on 127.0.0.1 (no network needed).

The fake serves a record in the shape of Zenodo's records API and a small HC18-layout data set
(synthetic images with outline annotations, as the official download has), honours Range
requests, and can drop a connection part-way or ignore Range, as real servers do.
"""

from __future__ import annotations

import hashlib
import io
import json
import socket
import subprocess
import sys
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from helpers import REPO

from trainables.data import http_fetch
from trainables.data.arrays import load_arrays
from trainables.data.download import DOI, RECORD_ID, parse_record
from trainables.data.synthetic import generate_dataset
from trainables.hc18_download import main

CSVS = ("training_set_pixel_size_and_HC.csv", "test_set_pixel_size.csv")


def _zip(folder: Path, prefix: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for path in sorted(folder.iterdir()):
            zf.write(path, prefix + path.name)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def hc18_files(tmp_path_factory) -> dict[str, bytes]:
    """The record's four files: 3 annotated + 2 test images (200 x 136 px)."""
    src = generate_dataset(
        tmp_path_factory.mktemp("hc18_src"), 3, outline=True, with_test_set=2, size=(200, 136)
    )
    return {
        # The official training_set.zip holds a top folder; test_set.zip here does not, so both
        # layouts are unpacked.
        "training_set.zip": _zip(src / "training_set", "training_set/"),
        "test_set.zip": _zip(src / "test_set", ""),
        **{name: (src / name).read_bytes() for name in CSVS},
    }


class FakeZenodo:
    """Zenodo's `GET /api/records/ID` and `.../files/NAME/content`, with faults on demand."""

    def __init__(self, files: dict[str, bytes]):
        self.files = dict(files)
        self.listed_md5 = {name: hashlib.md5(data).hexdigest() for name, data in files.items()}
        self.listed_size: dict[str, int] = {}  # name -> the size the record lists, if not len
        self.drops: dict[str, list[int]] = {}  # name -> bytes to send before each dropped GET
        self.honour_range = True
        self.requests: list[tuple[str, str | None, int]] = []  # (file name, Range, status)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        serve = lambda: self.server.serve_forever(poll_interval=0.02)  # noqa: E731
        threading.Thread(target=serve, daemon=True).start()

    def record(self) -> dict:
        """The current shape of https://zenodo.org/api/records/1327317 (files part)."""
        return {
            "id": int(RECORD_ID),
            "doi": DOI,
            "metadata": {"title": "HC18", "license": {"id": "cc-by-4.0"}},
            "files": [
                {
                    "id": f"0000-{i}",
                    "key": name,
                    "size": self.listed_size.get(name, len(data)),
                    "checksum": f"md5:{self.listed_md5[name]}",
                    "links": {"self": f"{self.url}/api/records/{RECORD_ID}/files/{name}/content"},
                }
                for i, (name, data) in enumerate(self.files.items())
            ],
        }

    def file_requests(self, name: str) -> list[tuple[str | None, int]]:
        return [(range_, status) for n, range_, status in self.requests if n == name]

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest's output clean
                pass

            def do_GET(self):
                parts = self.path.strip("/").split("/")
                if parts == ["api", "records", RECORD_ID]:
                    return self._send(200, json.dumps(fake.record()).encode(), {})
                if len(parts) == 6 and parts[:4] == ["api", "records", RECORD_ID, "files"]:
                    return self._file(parts[4])
                self._send(404, b"{}", {})

            def _file(self, name: str):
                data, range_ = fake.files[name], self.headers.get("Range")
                start = int(range_.removeprefix("bytes=").rstrip("-")) if range_ else 0
                if not fake.honour_range:
                    start = 0
                status = 206 if start else 200
                fake.requests.append((name, range_, status))
                headers = {"Accept-Ranges": "bytes"}
                if start:
                    headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
                drops = fake.drops.get(name)
                if drops:  # announce the whole body, send part of it, hang up
                    self._send(
                        status, data[start : start + drops.pop(0)], headers, len(data) - start
                    )
                    self.close_connection = True
                    return
                self._send(status, data[start:], headers)

            def _send(self, status, body, headers, length=None):
                self.send_response(status)
                self.send_header("Content-Length", str(len(body) if length is None else length))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)
                self.wfile.flush()

        return Handler


@pytest.fixture
def zenodo(hc18_files, monkeypatch):
    monkeypatch.setattr(http_fetch, "RETRY_WAIT_S", 0.0)
    fake = FakeZenodo(hc18_files)
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def _download(zenodo: FakeZenodo, out: Path, *extra: str) -> int:
    return main(["--out", str(out), "--base-url", zenodo.url, *extra])


def test_download_unpacks_into_the_layout_data_reads(zenodo, tmp_path, capsys):
    out = tmp_path / "hc18"
    assert _download(zenodo, out) == 0
    train = load_arrays(out, 32, cache_dir=tmp_path / "cache")
    test = load_arrays(out, 32, subset="test_set", cache_dir=tmp_path / "cache")
    assert (len(train), len(test)) == (3, 2)
    assert train.masks.any(axis=(1, 2)).all()  # outlines were filled
    printed = capsys.readouterr().out
    for text in ("van den Heuvel", "PLoS ONE 13(8): e0200412", DOI, "CC BY 4.0"):
        assert text in printed
        assert text in (out / "README.md").read_text()
    left = sorted(p.name for p in out.iterdir())
    assert left == ["README.md", "test_set", "test_set_pixel_size.csv", "training_set"] + [
        "training_set_pixel_size_and_HC.csv"
    ]

    # Everything present and verified: a second run only reads the record.
    count = len(zenodo.requests)
    assert _download(zenodo, out) == 0
    assert len(zenodo.requests) == count
    err = capsys.readouterr().err
    assert "already unpacked into training_set/, verified" in err
    assert "training_set: 3 images, each listed in training_set_pixel_size_and_HC.csv" in err


def test_corrupted_download_is_refused_naming_the_file(zenodo, tmp_path, capsys):
    data = bytearray(zenodo.files["training_set.zip"])
    data[100] ^= 0xFF  # same size, one byte wrong: only the checksum can tell
    zenodo.files["training_set.zip"] = bytes(data)
    out = tmp_path / "hc18"
    assert _download(zenodo, out) == 1
    err = capsys.readouterr().err
    assert "training_set.zip: checksum mismatch" in err
    assert zenodo.listed_md5["training_set.zip"] in err
    assert list(out.iterdir()) == []  # no archive, no .part, no training_set/


def test_interrupted_download_is_resumed_with_a_range_request(zenodo, tmp_path, capsys):
    zenodo.drops["training_set.zip"] = [1000]  # the first GET hangs up after 1000 bytes
    out = tmp_path / "hc18"
    assert _download(zenodo, out) == 0
    assert zenodo.file_requests("training_set.zip") == [(None, 200), ("bytes=1000-", 206)]
    assert "retrying from byte 1000" in capsys.readouterr().err
    assert len(load_arrays(out, 32, cache_dir=tmp_path / "cache")) == 3


def test_a_part_left_by_a_failed_run_is_resumed_by_the_next(zenodo, tmp_path, capsys):
    zenodo.drops["training_set.zip"] = [1000, 1000, 1000]  # every attempt of the first run
    out = tmp_path / "hc18"
    assert _download(zenodo, out) == 2
    err = capsys.readouterr().err
    assert "3000 of" in err and "run the same command again to resume" in err
    assert (out / "training_set.zip.part").stat().st_size == 3000

    assert _download(zenodo, out) == 0
    assert zenodo.file_requests("training_set.zip")[-1] == ("bytes=3000-", 206)
    assert not (out / "training_set.zip.part").exists()
    assert len(load_arrays(out, 32, cache_dir=tmp_path / "cache")) == 3


def test_a_server_that_ignores_range_gets_a_fresh_start(zenodo, tmp_path):
    out = tmp_path / "hc18"
    out.mkdir()
    (out / "training_set.zip.part").write_bytes(zenodo.files["training_set.zip"][:700])
    zenodo.honour_range = False
    assert _download(zenodo, out) == 0
    assert zenodo.file_requests("training_set.zip") == [("bytes=700-", 200)]
    assert len(load_arrays(out, 32, cache_dir=tmp_path / "cache")) == 3


def test_unsafe_archive_member_is_refused_before_anything_is_written(zenodo, tmp_path, capsys):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("training_set/000_HC.png", b"x")
        zf.writestr("training_set/../../escaped.png", b"x")
    zenodo.files["training_set.zip"] = buffer.getvalue()
    zenodo.listed_md5["training_set.zip"] = hashlib.md5(buffer.getvalue()).hexdigest()
    out = tmp_path / "hc18"
    assert _download(zenodo, out) == 1
    assert "training_set/../../escaped.png" in capsys.readouterr().err
    assert not (tmp_path / "escaped.png").exists()
    assert not (out / "training_set").exists()


def test_no_server_is_one_clear_line_and_exit_2(tmp_path, capsys):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert main(["--out", str(tmp_path / "hc18"), "--base-url", f"http://127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "cannot download" in err and f"https://doi.org/{DOI}" in err
    assert "refused" in err.lower()


def test_unknown_file_names_list_the_record(zenodo, tmp_path, capsys):
    assert _download(zenodo, tmp_path / "hc18", "--files", "nope.zip") == 1
    assert "no file(s) ['nope.zip']; it lists ['test_set.zip'" in capsys.readouterr().err


def test_help_states_source_and_licence():
    result = subprocess.run(
        [sys.executable, "-m", "trainables.hc18_download", "--help"],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    )
    for text in ("Zenodo", f"doi:{DOI}", "CC BY 4.0", "--base-url", "--keep-archives"):
        assert text in result.stdout


# --- hostile or careless input (issue 21, item 4) -----------------------------------------------


def _serve(zenodo: FakeZenodo, name: str, data: bytes) -> None:
    zenodo.files[name] = data
    zenodo.listed_md5[name] = hashlib.md5(data).hexdigest()


@pytest.mark.parametrize("name", ["...zip", "..zip", ".hidden.zip"])
def test_a_record_file_named_like_a_parent_folder_deletes_nothing(name, zenodo, tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("mine")
    out = tmp_path / "hc18"
    out.mkdir()
    (out / "mine.txt").write_text("mine")
    _serve(zenodo, name, zenodo.files["training_set.zip"])
    assert _download(zenodo, out, "--files", name) == 1
    assert f"refusing file name {name!r}" in capsys.readouterr().err
    assert (tmp_path / "keep.txt").read_text() == "mine" and (out / "mine.txt").exists()


def test_an_existing_folder_is_refused_unless_forced(zenodo, tmp_path, capsys):
    out = tmp_path / "hc18"
    (out / "training_set").mkdir(parents=True)
    (out / "training_set" / "my_notes.txt").write_text("mine")
    assert _download(zenodo, out) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "training_set exists" in err and "--force" in err
    assert not list(out.glob("*.zip*"))  # refused before anything was downloaded
    assert (out / "training_set" / "my_notes.txt").read_text() == "mine"  # nothing deleted
    assert _download(zenodo, out, "--force") == 0
    assert not (out / "training_set" / "my_notes.txt").exists()
    assert load_arrays(out, 64, cache_dir=tmp_path / "cache").images.shape[0] == 3


def test_reading_stops_at_the_listed_size(zenodo, tmp_path):
    csv = CSVS[1]
    real = zenodo.files[csv]
    zenodo.files[csv] = real + b"x" * (32 << 20)  # the server sends 32 MB too many
    zenodo.listed_size[csv] = len(real)
    out = tmp_path / "hc18"
    assert _download(zenodo, out, "--files", csv) == 0
    assert (out / csv).read_bytes() == real


def test_an_archive_that_unpacks_far_beyond_its_size_is_refused(zenodo, tmp_path, capsys):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("training_set/000_HC.png", b"\0" * (50 << 20))  # 50 MB of zeros: ~50 kB
    _serve(zenodo, "training_set.zip", buffer.getvalue())
    out = tmp_path / "hc18"
    assert _download(zenodo, out, "--files", "training_set.zip") == 1
    (error,) = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert "unpacks to more than 20 times its" in error
    assert not (out / "training_set").exists() and not list(out.glob(".training_set*"))


def test_only_http_addresses_are_fetched(zenodo, tmp_path, capsys):
    assert main(["--out", str(tmp_path / "hc18"), "--base-url", f"file://{tmp_path}"]) == 1
    assert "only http(s) addresses are fetched, not file:" in capsys.readouterr().err
    record = zenodo.record()
    record["files"][0]["links"]["self"] = f"file://{tmp_path}/secret"
    files = parse_record(record, zenodo.url, RECORD_ID)
    with pytest.raises(http_fetch.DownloadError, match="only http"):
        http_fetch.download(files[record["files"][0]["key"]], tmp_path)


def test_an_encrypted_member_is_one_line_and_exit_1(zenodo, tmp_path, capsys):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("training_set/000_HC.png", b"x" * 100)
    data = bytearray(buffer.getvalue())
    # Mark the member encrypted (bit 0 of the general-purpose flags), in its local header and
    # in the central directory, as a password-protected zip is.
    for signature, flags_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        data[data.index(signature) + flags_at] |= 0x1
    _serve(zenodo, "training_set.zip", bytes(data))
    assert _download(zenodo, tmp_path / "hc18", "--files", "training_set.zip") == 1
    (error,) = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert "training_set.zip: cannot unpack" in error and "encrypted" in error
