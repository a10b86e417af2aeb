"""`start --address`: a study on an existing Ray cluster (a `ray start --head` on loopback)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest

from tests.helpers import REPO, free_port, optuna_url, tiny_study

pytestmark = pytest.mark.cluster


@pytest.fixture
def head():
    """A Ray head node on 127.0.0.1 in its own process group, torn down after the test."""
    ray = Path(sys.executable).parent / "ray"
    if not ray.exists() and shutil.which("ray") is None:
        pytest.skip("the ray command is not installed beside this Python")
    port = free_port()
    # A short temp dir: Ray's unix sockets live under it and must fit in 107 characters.
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    proc = subprocess.Popen(
        [str(ray), "start", "--head", "--block", f"--port={port}", "--node-ip-address=127.0.0.1",
         "--num-cpus=2", "--num-gpus=0", "--include-dashboard=false",
         f"--temp-dir={temp}", f"--ray-client-server-port={free_port()}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "RAY_AUTH_MODE": "disabled"},  # loopback only: no token needed
    )  # fmt: skip
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.5)
    else:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("the Ray head did not open its port within 60 s")
    yield address
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    shutil.rmtree(temp, ignore_errors=True)


def test_study_runs_on_an_existing_cluster(project, cache_dir, head):
    study_file = tiny_study(project, name="remote", num_samples=2, max_epochs=1, grace=1)
    env = {**os.environ, "CEPHTUNE_CACHE_DIR": str(cache_dir), "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    result = subprocess.run(
        [sys.executable, str(REPO / "search.py"), "start", str(study_file), "--address", head],
        cwd=project, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    study = optuna.load_study(study_name="remote", storage=optuna_url(project))
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    assert "Best trial" in result.stdout


def test_unreachable_cluster_is_one_line(project, cache_dir):
    study_file = tiny_study(project, name="nowhere", num_samples=1, max_epochs=1, grace=1)
    env = {**os.environ, "CEPHTUNE_CACHE_DIR": str(cache_dir)}
    env.pop("RAY_ADDRESS", None)
    address = f"127.0.0.1:{free_port()}"
    result = subprocess.run(
        [sys.executable, str(REPO / "search.py"), "start", str(study_file), "--address", address],
        cwd=project, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2
    assert f"cannot connect to the Ray cluster at {address}" in result.stderr
    assert "Traceback" not in result.stderr
