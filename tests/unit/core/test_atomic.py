"""Files written atomically get the mode open() would give them (0666 less the umask), not
mkstemp's 0600: a team sharing an experiment folder can read each other's results."""

from __future__ import annotations

import stat

import pytest

from trainables.core.atomic import atomic_output, current_umask


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_an_atomic_file_has_the_mode_open_would_give(tmp_path, umask, mask):
    umask(mask)
    assert current_umask() == mask
    with open(tmp_path / "plain.csv", "w") as f:
        f.write("a\n")
    with atomic_output(tmp_path / "atomic.csv", "w") as f:
        f.write("a\n")
    expected = stat.S_IMODE((tmp_path / "plain.csv").stat().st_mode)
    assert expected == 0o666 & ~mask
    assert stat.S_IMODE((tmp_path / "atomic.csv").stat().st_mode) == expected
