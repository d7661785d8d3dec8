"""An installation without the checkout: the embedded default config, the paper's split and the
efficiency benchmark's table ship inside the wheel (configs/ as the package
`freezeframe_configs`), and a study runs from it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from helpers import REPO, RUN_PY, TINY


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with FreezeFrame installed from a built wheel (not editable). Its other
    dependencies come from this test's environment through a .pth line, so nothing is
    downloaded; that path comes after the venv's own site-packages, so the wheel's copy wins."""
    root = tmp_path_factory.mktemp("installed")
    wheels = root / "wheels"
    # Build from a copy: setuptools writes build/ and *.egg-info/ into the source folder.
    source = root / "source"
    clutter = (".venv*", ".git", "runs", "wandb", "build", ".whl", ".hc18", "*.egg-info")
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(*clutter, "__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
        + ["-w", str(wheels), str(source)],
        check=True,
        capture_output=True,
        cwd=root,
    )
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next(venv.glob("lib/python*/site-packages"))
    outer = next(p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir())
    (site / "outer_environment.pth").write_text(outer + "\n")
    wheel = next(wheels.glob("freezeframe-*.whl"))
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install"]
        + ["-q", "--no-deps", str(wheel)],
        check=True,
        capture_output=True,
    )
    return venv


def run_installed(venv: Path, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env |= {"RAY_ADDRESS": "local", "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    return subprocess.run(
        [str(venv / "bin" / "python"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_a_wheel_install_finds_the_default_config_and_the_paper_split(installed, tmp_path):
    probe = run_installed(
        installed,
        [
            "-c",
            "import search.driver.config as c, trainables.data.splits as s; "
            "import search.bench.efficiency as e, pandas as pd; "
            "print(c.DEFAULT_CONFIG); print(s.PAPER_SPLIT_CSV); "
            "print(len(s.read_split_csv(s.PAPER_SPLIT_CSV))); "
            "print(e.TABLE); print(len(pd.read_csv(e.TABLE)))",
        ],
        tmp_path,
    )
    assert probe.returncode == 0, probe.stderr
    default, split, count, table, rows = probe.stdout.split()
    assert Path(default).is_relative_to(installed) and Path(default).name == "demo.yaml"
    assert Path(split).is_relative_to(installed) and count == "999"
    # The efficiency benchmark's default table of real trials ships too.
    assert Path(table).is_relative_to(installed) and int(rows) > 0

    shutil.copy(RUN_PY, tmp_path / "run.py")  # as `ray submit` ships it: the script alone
    shown = run_installed(installed, ["run.py", "--help"], tmp_path)
    assert shown.returncode == 0 and "configs/demo.yaml" in shown.stdout, shown.stderr

    args = ["run.py", "--storage", "runs", "--name", "wheel", "--stages", "final"]
    args += ["--set", "search.strategies=[decoder]", "--set", "search.seeds=[0]"]
    args += ["--set", "trial.epochs=1", *TINY]
    done = run_installed(installed, args, tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    trials = pd.read_csv(tmp_path / "runs" / "wheel" / "trials.csv")
    assert list(trials.status) == ["ok"]
    assert "FreezeFrame report: wheel" in done.stdout
