"""What runs on the hosts of tests/netns.py: a Ray head and workers, PostgreSQL and an MLflow
server every host reaches, and the command line of a cephtune driver.

The servers run in the root namespace on the gateway address, out of every host: a test can
kill a host without killing them, and reach them itself. The Ray nodes run with
``RAY_AUTH_MODE=disabled`` (``Host.env``): the subnet is private to the test.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from tests.helpers import REPO
from tests.netns import Host, Hosts, Unavailable
from tests.postgres import PostgresServer
from tests.postgres import why_unavailable as no_postgres

RAY_PORT = 6379  # each host has its own ports: no clash with anything outside


def search_py(*args: str) -> list[str]:
    """``python search.py ARGS`` of the repository under test, for ``Host.run``/``popen``."""
    return [sys.executable, str(REPO / "search.py"), *args]


def start_ray(
    hosts: Sequence[Host],
    num_cpus: int = 1,
    object_store_mb: int = 200,
    timeout: float = 120,
    cwd: Path | None = None,
) -> str:
    """A Ray head on ``hosts[0]`` and a worker on each other host (``ray start --block``, log
    ``ray``), started in ``cwd`` (default: the project folder; its workers inherit it); the
    head's ``IP:PORT`` once every node says it started. ``Host.kill_all`` ends a host's node."""
    head = hosts[0]
    address = f"{head.ip}:{RAY_PORT}"
    ray = Path(sys.executable).parent / "ray"
    common = ["--block", f"--num-cpus={num_cpus}", "--num-gpus=0",
              f"--object-store-memory={object_store_mb * 1024 * 1024}"]  # fmt: skip
    head_args = ["--head", f"--port={RAY_PORT}", "--include-dashboard=false"]
    started = []
    for host in hosts:
        role = head_args if host is head else [f"--address={address}"]
        cmd = [str(ray), "start", *role, f"--node-ip-address={host.ip}", *common]
        started.append((host, host.popen(cmd, log="ray", cwd=cwd)))
        if host is head and not _listens(head.ip, RAY_PORT, timeout):
            raise RuntimeError(f"the Ray head did not listen in {timeout} s:\n{_tail(head)}")
    deadline = time.monotonic() + timeout
    for host, proc in started:
        while "Ray runtime started" not in host.log("ray").read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Ray did not start on {host.name}:\n{_tail(host)}")
            time.sleep(0.2)
    return address


def start_postgres(hosts: Hosts) -> PostgresServer:
    """A PostgreSQL server (tests/postgres.py) on the gateway and loopback, trusting the
    hosts' subnet: ``url(db)`` works from every host and from the test; ``restart()`` drops
    every connection. Stopped by ``hosts.close()``; Unavailable where it cannot run."""
    reason = no_postgres()
    if reason:
        raise Unavailable(reason)
    server = PostgresServer(_free_port(), (hosts.gateway, "127.0.0.1"), clients=str(hosts.subnet))
    hosts.on_close(server.stop)
    server.start()
    postmaster = int((server.folder / "data" / "postmaster.pid").read_text().split()[0])
    hosts.note_process(postmaster)
    return server


def start_mlflow(hosts: Hosts, backend_uri: str, timeout: float = 90) -> str:
    """An MLflow tracking server on the gateway, its runs in ``backend_uri``, its artifacts
    served from ``ROOT/mlartifacts``; its URL once it answers. Stopped by ``hosts.close()``."""
    port = _free_port()
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_uri,
           "--artifacts-destination", str(hosts.root / "mlartifacts"),
           "--host", hosts.gateway, "--port", str(port), "--workers", "1"]  # fmt: skip
    # Without its job runner (unused here) the server starts in half the time.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    log = hosts.logs / "mlflow.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=hosts.root, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    hosts.on_close(lambda: _end(proc))
    hosts.note_process(proc.pid)
    url = f"http://{hosts.gateway}:{port}"
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/health", timeout=5) as response:
                if response.status == 200:
                    return url
        except OSError:
            time.sleep(0.25)
    raise RuntimeError(f"the MLflow server did not answer on {url}:\n{log.read_text()[-3000:]}")


def _end(proc: subprocess.Popen) -> None:
    """SIGKILL a server and its process group (uvicorn's workers)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def _free_port() -> int:
    """A TCP port free on every address (a server listens on the gateway and loopback)."""
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def _listens(ip: str, port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(1)
            if s.connect_ex((ip, port)) == 0:
                return True
        time.sleep(0.2)
    return False


def _tail(host: Host, log: str = "ray", chars: int = 3000) -> str:
    path = host.log(log)
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"
