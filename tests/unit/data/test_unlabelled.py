"""A folder of unlabelled images for pretraining: every image loaded, the unreadable named."""

from __future__ import annotations

import numpy as np
import pytest

from trainables.data.unlabelled import load_unlabelled


def test_an_image_folder_loads_every_image_and_names_the_unreadable(tmp_path, sample_dir):
    import shutil

    for png in sorted((sample_dir / "training_set").glob("*HC.png"))[:3]:
        shutil.copy(png, tmp_path / png.name)
    (tmp_path / "sub").mkdir()
    shutil.copy(png, tmp_path / "sub" / "x.png")
    images, names = load_unlabelled(tmp_path, 32)
    assert images.shape == (4, 32, 32) and images.dtype == np.uint8
    assert "sub/x.png" in names
    (tmp_path / "broken.png").write_bytes(b"not a png")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(Exception, match=r"broken\.png: unreadable[\s\S]*empty\.jpg: unreadable"):
        load_unlabelled(tmp_path, 32)
