"""A trial's files on its node: the scratch folder private to the user, never another user's
link, and a pretraining folder checked against the driver's copy."""

from __future__ import annotations

import os
import tempfile

import pytest
from helpers import TINY

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


def test_a_node_whose_pretraining_folder_differs_from_the_drivers_fails_the_trial(
    tmp_path, sample_dir
):
    import shutil

    from search.driver.config import load_config
    from search.driver.stages.common import StageRunner
    from search.driver.stages.pretrain import pretrain_spec
    from search.experiment.folder import Experiment
    from search.worker.files import TrialFiles
    from trainables.core.errors import DataError

    folder = tmp_path / "images"
    folder.mkdir()
    for png in sorted((sample_dir / "training_set").glob("*HC.png"))[:2]:
        shutil.copy(png, folder / png.name)
    cfg = load_config(None, [f"search.pretrain.source={folder}", *TINY[3::2]])
    spec = pretrain_spec(
        StageRunner(cfg, Experiment(str(tmp_path), "x"), "disabled"), "mobilenet_v2"
    )
    assert spec.source_digest and spec.unlabelled_dir == str(folder)
    TrialFiles(spec).prepare()  # the same copy: no complaint
    (folder / png.name).write_bytes(b"another scan")  # this node's copy differs now
    with pytest.raises(DataError, match="pretraining folder differs from the driver's copy"):
        TrialFiles(spec).prepare()
