"""The node-local scratch folder: private to the user, never another user's link."""

from __future__ import annotations

import os
import tempfile

import pytest

from search.worker.files import scratch_dir


@pytest.fixture
def tmp_root(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path))
    return tmp_path


def test_the_scratch_folder_is_created_private(tmp_root):
    folder = scratch_dir()
    assert folder == tmp_root / f"freezeframe-{os.getuid()}"
    assert folder.stat().st_mode & 0o777 == 0o700


def test_a_folder_others_can_read_is_refused(tmp_root):
    (tmp_root / f"freezeframe-{os.getuid()}").mkdir(mode=0o755)
    os.chmod(tmp_root / f"freezeframe-{os.getuid()}", 0o755)
    with pytest.raises(PermissionError, match="not a folder private to this user"):
        scratch_dir()


def test_a_planted_link_is_refused_even_to_a_private_folder(tmp_root):
    target = tmp_root / "elsewhere"
    target.mkdir(mode=0o700)
    (tmp_root / f"freezeframe-{os.getuid()}").symlink_to(target)
    with pytest.raises(PermissionError, match="remove it"):
        scratch_dir()
