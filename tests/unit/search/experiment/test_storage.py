"""Files of the experiment folder get the mode open() would give them (0666 less the umask), not
mkstemp's 0600: a team sharing an experiment folder can read each other's results."""

from __future__ import annotations

import stat

from search.experiment.storage import ExperimentStore


def test_the_experiment_folders_files_are_group_readable_under_umask_022(tmp_path, umask):
    umask(0o022)
    store = ExperimentStore(str(tmp_path), "exp")
    store.write_text("trials.csv", "trial_name\n")
    store.write_bytes("results/final/decoder__seed0.json", b"{}")
    for rel in ("trials.csv", "results/final/decoder__seed0.json"):
        assert stat.S_IMODE((tmp_path / "exp" / rel).stat().st_mode) == 0o644, rel
