"""The launcher path, everything real but the cloud: Ray's on-prem provider (`provider: {type:
local}`) over SSH to this machine, as a throwaway user made for the test. `ray up -y` runs the
file mounts and the setup commands (a venv from /usr/bin/python3, the committed lock installed
into it as cluster/cluster.yaml's setup commands install it, the project `--no-deps`), starts
Ray; `ray submit <yaml> search/run.py -- <a small study>` runs the study on the head as a user
would; `ray down -y` stops it. The throwaway user keeps `ray stop` (in the start commands) away
from every other Ray on the machine.

Needs root (to add the user) and openssh-server (`.ci/run` installs it); skipped, saying which,
otherwise. SSH reaches the test's own sshd on a free port through a ProxyCommand relay, so port
22 and any sshd already running are left alone.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers import REPO

pytestmark = pytest.mark.slow

RAY = Path(sys.executable).with_name("ray")
SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
RELAY = """import os, select, socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
while True:
    ready, _, _ = select.select([0, s], [], [])
    if 0 in ready:
        data = os.read(0, 65536)
        if not data:
            s.shutdown(socket.SHUT_WR)
            break
        s.sendall(data)
    if s in ready:
        data = s.recv(65536)
        if not data:
            break
        os.write(1, data)
while data := s.recv(65536):
    os.write(1, data)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(args, timeout, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kwargs)


@pytest.fixture
def ssh_user(tmp_path):
    """A throwaway user reachable over SSH at 127.0.0.1 with a key made here; removed after."""
    if os.geteuid() != 0:
        pytest.skip("the launcher test adds a throwaway user: it needs root")
    if not Path(SSHD).exists():
        pytest.skip(
            "no sshd: install openssh-server (.ci/run does: apt-get install openssh-server)"
        )
    user = f"ffl{secrets.token_hex(3)}"
    # "*": no password, yet not a locked account (sshd refuses those a key without PAM).
    assert run(["useradd", "-m", "-s", "/bin/bash", "-p", "*", user], 30).returncode == 0
    home = Path(pwd.getpwnam(user).pw_dir)
    folder = tmp_path / "ssh"
    folder.mkdir()
    key, host_key = folder / "key", folder / "host_key"
    for path in (key, host_key):
        assert (
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], 30).returncode
            == 0
        )
    dot_ssh = home / ".ssh"
    dot_ssh.mkdir(mode=0o700)
    (dot_ssh / "authorized_keys").write_text((folder / "key.pub").read_text())
    run(["chown", "-R", f"{user}:{user}", str(dot_ssh)], 30)
    port = free_port()
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation folder
    sshd = subprocess.Popen(
        [
            SSHD,
            "-D",
            "-e",
            "-p",
            str(port),
            "-h",
            str(host_key),
            "-o",
            "ListenAddress=127.0.0.1",
            "-o",
            f"PidFile={folder / 'sshd.pid'}",
            "-o",
            f"AllowUsers={user}",
            "-o",
            "PasswordAuthentication=no",
            "-o",
            "UsePAM=no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(folder / "sshd.log", "w"),  # noqa: SIM115 - closed with the process
    )
    time.sleep(1)
    if sshd.poll() is not None:
        pytest.skip(f"sshd did not start: {(folder / 'sshd.log').read_text()[-500:]}")
    relay = folder / "relay.py"
    relay.write_text(RELAY)
    try:
        yield {"user": user, "home": home, "key": key, "port": port, "relay": relay}
    finally:
        run(["pkill", "-KILL", "-u", user], 30)  # the user's Ray, if ray down left any
        sshd.kill()
        sshd.wait()
        time.sleep(1)
        run(["userdel", "-r", "-f", user], 60)


def cluster_config(ssh: dict, tmp_path: Path) -> Path:
    """The on-prem config, templated: its user, key, the relay, the lock's path."""
    ray_tmp = f"/tmp/{ssh['user']}"  # the user's own Ray folder (short: socket path limit)
    # This machine's pip settings (its index, find-links) reach the node's installs. PIP_COMPILE=0
    # leaves the lock's ~18,000 modules uncompiled at install time (about 35 s of one core here):
    # Python compiles each module the study imports when it first imports it, as it does for any
    # .py file without bytecode. What is installed, and checked against its hash, is the same.
    pip_vars = {k: v for k, v in os.environ.items() if k.startswith("PIP_")} | {"PIP_COMPILE": "0"}
    pip_env = " ".join(f"{k}={v}" for k, v in sorted(pip_vars.items()))
    config = {
        "cluster_name": ssh["user"],
        "provider": {"type": "local", "head_ip": "127.0.0.1", "worker_ips": []},
        "auth": {
            "ssh_user": ssh["user"],
            "ssh_private_key": str(ssh["key"]),
            "ssh_proxy_command": f"/usr/bin/python3 {ssh['relay']} 127.0.0.1 {ssh['port']}",
        },
        "max_workers": 0,
        "file_mounts": {"~/freezeframe": str(REPO)},
        "rsync_filter": [".gitignore"],
        "rsync_exclude": [".git"],
        "setup_commands": [
            "test -x ~/venv/bin/python || /usr/bin/python3 -m venv ~/venv",
            "grep -qx 'source ~/venv/bin/activate' ~/.bashrc "
            "|| echo 'source ~/venv/bin/activate' >> ~/.bashrc",
            f"grep -qx 'export RAY_TMPDIR={ray_tmp}' ~/.bashrc "
            f"|| echo 'export RAY_TMPDIR={ray_tmp}' >> ~/.bashrc",
            # As cluster/cluster.yaml: the lock exactly, then the project without dependencies.
            f"{pip_env} ~/venv/bin/pip install -q --require-hashes "
            "-r ~/freezeframe/requirements.txt",
            f"{pip_env} ~/venv/bin/pip install -q --no-deps --no-build-isolation -e ~/freezeframe",
        ],
        "head_setup_commands": [
            "grep -qx 'export RAY_ADDRESS=auto' ~/.bashrc "
            "|| echo 'export RAY_ADDRESS=auto' >> ~/.bashrc",
            "grep -qx 'export RAY_AUTH_MODE=disabled' ~/.bashrc "
            "|| echo 'export RAY_AUTH_MODE=disabled' >> ~/.bashrc",
        ],
        "head_start_ray_commands": [
            "ray stop",
            f"RAY_USAGE_STATS_ENABLED=0 ray start --head --port={free_port()} --num-cpus=2 "
            "--include-dashboard=false --autoscaling-config=~/ray_bootstrap_config.yaml",
        ],
        "worker_start_ray_commands": [],
    }
    path = tmp_path / "onprem.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_ray_up_submit_down_runs_a_study_on_an_ssh_launched_cluster(ssh_user, tmp_path):
    config = cluster_config(ssh_user, tmp_path)
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    timings = {}
    started = time.monotonic()
    up = run([str(RAY), "up", "-y", "--no-config-cache", str(config)], 600, env=env, cwd=REPO)
    timings["ray up"] = time.monotonic() - started
    try:
        assert up.returncode == 0, (up.stdout + up.stderr)[-4000:]
        study = ["--name", "launched", "--storage", "~/runs", "--stages", "final"]
        study += ["--set", "search.strategies=[decoder_4,decoder_2_3_4]"]
        study += ["--set", "search.seeds=[0,1]", "--set", "trial.epochs=2", "--wandb", "disabled"]
        study += ["--set", "trial.image_size=32", "--set", "trial.batch_size=4"]
        started = time.monotonic()
        submitted = run(
            [str(RAY), "submit", str(config), "search/run.py", "--", *study],
            600,
            env=env,
            cwd=REPO,
        )
        timings["ray submit"] = time.monotonic() - started
        assert submitted.returncode == 0, (submitted.stdout + submitted.stderr)[-4000:]
        assert "FreezeFrame: done" in submitted.stdout
        trials = pd.read_csv(ssh_user["home"] / "runs" / "launched" / "trials.csv")
        assert len(trials) == 4 and (trials.status == "ok").all(), trials[["trial_name", "status"]]
        assert trials.test_dice.between(0, 1).all()
        assert (ssh_user["home"] / "runs" / "launched" / "report" / "report.md").exists()
        # The head runs the locked versions: the venv's torch is the lock's.
        locked = next(
            line.split("==")[1].split()[0]
            for line in (REPO / "requirements.txt").read_text().splitlines()
            if line.startswith("torch==")
        )
        shown = run(
            [str(RAY), "exec", str(config), "python -c 'import torch; print(torch.__version__)'"],
            120,
            env=env,
            cwd=REPO,
        )
        assert locked in shown.stdout, shown.stdout[-1000:]
    finally:
        started = time.monotonic()
        down = run([str(RAY), "down", "-y", str(config)], 300, env=env, cwd=REPO)
        timings["ray down"] = time.monotonic() - started
        print("launcher timings: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
    assert down.returncode == 0, (down.stdout + down.stderr)[-2000:]
    time.sleep(2)
    left = run(["pgrep", "-u", ssh_user["user"], "-f", "raylet|gcs_server"], 30)
    assert not left.stdout.strip(), f"Ray still running after ray down: {left.stdout}"
