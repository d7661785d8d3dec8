"""The experiment folder `<storage>/<name>/`, on a local path or an s3:// / gs:// URI.

Ray Tune's own state lives in stage subfolders; FreezeFrame adds small files beside it
(config.yaml, split.csv, trials.csv, best_recipes.yaml, results/<stage>/<trial>.json).
pyarrow's filesystems (which Ray uses for the same storage) read and write them.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pyarrow.fs as pafs


def is_uri(path: str) -> bool:
    return "://" in str(path)


class ExperimentStore:
    """Small-file access to one experiment folder, local or remote."""

    def __init__(self, storage: str, name: str):
        self.storage = (
            str(storage) if is_uri(storage) else str(Path(storage).expanduser().resolve())
        )
        self.name = name
        if is_uri(self.storage):
            self.fs, root = pafs.FileSystem.from_uri(self.storage)
        else:
            self.fs, root = pafs.LocalFileSystem(), self.storage
        self.root = f"{root.rstrip('/')}/{name}"

    @property
    def uri(self) -> str:
        """The experiment folder as the user names it (path or URI)."""
        return f"{self.storage.rstrip('/')}/{self.name}"

    def location(self, rel: str) -> str:
        """`rel` as a user or a trial names it: a local path, or a URI for remote storage."""
        return f"{self.uri}/{rel}" if is_uri(self.storage) else self.path(rel)

    def path(self, rel: str) -> str:
        return f"{self.root}/{rel}" if rel else self.root

    def exists(self, rel: str = "") -> bool:
        return self.fs.get_file_info(self.path(rel)).type != pafs.FileType.NotFound

    def write_bytes(self, rel: str, data: bytes) -> None:
        target = self.path(rel)
        self.fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
        if isinstance(self.fs, pafs.LocalFileSystem):  # atomic: readers never see half a file
            tmp = f"{target}.{uuid.uuid4().hex}.tmp"
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, target)
        else:  # object stores replace whole objects atomically
            with self.fs.open_output_stream(target) as f:
                f.write(data)

    def write_text(self, rel: str, text: str) -> None:
        self.write_bytes(rel, text.encode())

    def read_text(self, rel: str) -> str:
        with self.fs.open_input_stream(self.path(rel)) as f:
            return f.read().decode()

    def list(self, rel: str) -> list[str]:
        """Names of the files directly inside `rel` (empty when it does not exist)."""
        if not self.exists(rel):
            return []
        selector = pafs.FileSelector(self.path(rel), recursive=False)
        return sorted(
            info.base_name
            for info in self.fs.get_file_info(selector)
            if info.type == pafs.FileType.File
        )

    def delete(self, rel: str) -> None:
        if self.exists(rel):
            self.fs.delete_file(self.path(rel))

    def upload(self, local_path: str | Path, rel: str) -> None:
        self.write_bytes(rel, Path(local_path).read_bytes())

    def download(self, rel: str, local_path: str | Path) -> Path:
        local_path = Path(local_path)
        local_path.parent.mkdir(parents=True, exist_ok=True)
        with self.fs.open_input_stream(self.path(rel)) as f:
            local_path.write_bytes(f.read())
        return local_path
