"""Files in one folder `<storage>/<name>/`, on a local path or an s3:// / gs:// / file:// URI.

A generic small-file API (pyarrow's filesystems, which Ray uses for the same storage); what the
files are and where they go is `search.experiment.folder`'s business.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pyarrow.fs as pafs

from trainables.core.atomic import atomic_output


def is_uri(path: str) -> bool:
    return "://" in str(path)


class ExperimentStore:
    """Small-file access to one folder, local or remote; every `rel` is relative to it.

    Names: `uri` is the folder as the user names it (a path or a URI), `uri_of(rel)` a file in
    it named the same way (what a trial on another node is handed), `local_path(rel)` the file
    on this machine's disk when the storage is local (None otherwise).
    """

    def __init__(self, storage: str, name: str):
        self.storage = (
            str(storage) if is_uri(storage) else str(Path(storage).expanduser().resolve())
        )
        self.name = name
        if is_uri(self.storage):
            self.fs, root = pafs.FileSystem.from_uri(self.storage)
        else:
            self.fs, root = pafs.LocalFileSystem(), self.storage
        self._root = f"{root.rstrip('/')}/{name}"

    @property
    def uri(self) -> str:
        return f"{self.storage.rstrip('/')}/{self.name}"

    @property
    def is_remote(self) -> bool:
        return is_uri(self.storage)

    def uri_of(self, rel: str) -> str:
        return f"{self.uri}/{rel}" if rel else self.uri

    def local_path(self, rel: str = "") -> Path | None:
        return None if self.is_remote else Path(self._fs_path(rel))

    def _fs_path(self, rel: str) -> str:
        return f"{self._root}/{rel}" if rel else self._root

    def exists(self, rel: str = "") -> bool:
        return self.fs.get_file_info(self._fs_path(rel)).type != pafs.FileType.NotFound

    def version(self, rel: str) -> tuple[int, int | None]:
        """(size, mtime in ns) of a file: changes when the file is rewritten."""
        info = self.fs.get_file_info(self._fs_path(rel))
        return info.size, info.mtime_ns

    def write_bytes(self, rel: str, data: bytes) -> None:
        """Readers never see half a file: a rename on a local disk (a path or a file:// URI),
        a whole-object PUT on an object store."""
        target = self._fs_path(rel)
        if isinstance(self.fs, pafs.LocalFileSystem):
            with atomic_output(target) as f:
                f.write(data)
            return
        self.fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
        with self.fs.open_output_stream(target) as f:
            f.write(data)

    def write_text(self, rel: str, text: str) -> None:
        self.write_bytes(rel, text.encode())

    def append_bytes(self, rel: str, data: bytes, sync: bool = True) -> bool:
        """Append `data` to a file on a local disk (a path or a file:// URI) in one write,
        flushed to the disk when `sync`; False, writing nothing, on an object store (which
        cannot append)."""
        if not isinstance(self.fs, pafs.LocalFileSystem):
            return False
        path = Path(self._fs_path(rel))
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            view = memoryview(data)
            while view:  # a write to a regular file is whole unless the disk fills or a kill lands
                view = view[os.write(fd, view) :]
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        return True

    def read_bytes(self, rel: str) -> bytes:
        with self.fs.open_input_stream(self._fs_path(rel)) as f:
            return f.read()

    def read_text(self, rel: str) -> str:
        return self.read_bytes(rel).decode()

    def list(self, rel: str) -> list[str]:
        """Names of the files directly inside `rel` (empty when it does not exist)."""
        return self._entries(rel, pafs.FileType.File)

    def list_dirs(self, rel: str) -> list[str]:
        """Names of the folders directly inside `rel` (empty when it does not exist)."""
        return self._entries(rel, pafs.FileType.Directory)

    def _entries(self, rel: str, kind: pafs.FileType) -> list[str]:
        if not self.exists(rel):
            return []
        selector = pafs.FileSelector(self._fs_path(rel), recursive=False)
        return sorted(i.base_name for i in self.fs.get_file_info(selector) if i.type == kind)

    def delete(self, rel: str) -> None:
        if self.exists(rel):
            self.fs.delete_file(self._fs_path(rel))

    def upload(self, local_path: str | Path, rel: str) -> None:
        self.write_bytes(rel, Path(local_path).read_bytes())

    def download(self, rel: str, local_path: str | Path) -> Path:
        with atomic_output(local_path) as f:
            f.write(self.read_bytes(rel))
        return Path(local_path)


def folder_digest(folder: str | Path) -> str:
    """16 hex digits of every file's name and content under a folder."""
    h = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        h.update(str(path.relative_to(folder)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]
