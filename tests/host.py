"""One host of tests/netns.py, and the commands on a network namespace both use.

A command runs in host N as ``ip netns exec NS unshare --mount --uts --propagation private sh
-c SCRIPT``. SCRIPT names the host (``hostname NS``), binds ``ROOT/etc/hosts`` (every host's
name) and a ``resolv.conf`` without a name server over /etc's (a lookup fails at once rather
than waiting on a DNS server out of reach), binds ``ROOT/shared`` inside ``ROOT/hN`` and binds
``ROOT/hN`` over ``/tmp``, so every host sees (``ROOT`` is ``/tmp/cephtune-hosts-ID``)::

    /tmp                 its own (ROOT/hN outside), Ray's default /tmp/ray included
    ROOT/home            $HOME: ~/.cache/cephtune, the preprocessing and synthetic-data cache
    ROOT/project         the project folder a driver runs in (studies/, mlruns/)
    ROOT/shared          the same folder on every host and outside

The paths are the same on every host, as a lab's machines share a layout; ``Host.outside``
gives where a host's path is seen from the test. ``/root`` is not masked (the venv's Python
lives under /root/.pyenv); a host's ``$HOME`` is set in its environment instead. ``/dev/shm``
stays the machine's: its users (Ray's object store, DataLoader workers) name their files
uniquely, and a tmpfs mounted per command would not be per host.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tests.helpers import REPO

if TYPE_CHECKING:
    from tests.netns import Hosts

# Not passed into a host: a host's environment is what its own login would give.
_PRIVATE_ENV = re.compile(r"^(RAY_|CEPHTUNE_|MLFLOW_|PG|XDG_|PYTEST_)|^(HOME|TMPDIR|PYTHONPATH)$")


def run_ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks, or None when it is gone: a pid with the
    start time it had names one process, even after the pid is reused."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[19]
    except (OSError, IndexError):
        return None


def netns_pids(netns: str) -> list[int]:
    result = run_ip("netns", "pids", netns, check=False)
    return [int(p) for p in result.stdout.split()]


def kill_netns(netns: str, timeout: float = 30) -> int:
    """SIGKILL every process in ``netns`` until none is left; how many were killed."""
    killed: set[int] = set()
    deadline = time.monotonic() + timeout
    while pids := netns_pids(netns):
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except ProcessLookupError:
                pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes {pids} of {netns} outlived SIGKILL")
        time.sleep(0.05)
    return len(killed)


def _code_paths() -> list[Path]:
    """The repository and the venv the tests run from (the venv once if it is inside)."""
    repo, venv = REPO.resolve(), Path(sys.prefix).resolve()
    return [repo] if venv == repo or repo in venv.parents else [repo, venv]


class Host:
    """One host: ``run``/``popen`` a command in it; faults: ``kill_all`` its processes (a
    crash), ``unplug`` it (a hang or a partition)."""

    def __init__(self, hosts: Hosts, index: int, ip: str) -> None:
        self.index, self.ip = index, ip
        self.name = f"h{index}"
        self.netns = self.hostname = f"cephtune-{hosts.id}-{self.name}"
        self._switch = hosts.switch
        self.root = hosts.root  # the same path inside every host
        self.home, self.project = hosts.root / "home", hosts.root / "project"
        self.shared = hosts.shared
        self._tmp = hosts.root / self.name  # this host's /tmp, seen from outside
        self._logs = hosts.logs
        self._procs: list[subprocess.Popen] = []
        self._mountpoint = self._tmp / self.shared.relative_to("/tmp")  # where shared is bound
        # The code under test and its venv stay visible where a checkout under /tmp (a fresh
        # clone there) would be hidden by the host's own /tmp: bound at the same path.
        self._code = [p for p in _code_paths() if Path("/tmp") in p.parents]
        for path in (self.outside(self.home), self.outside(self.project), self._mountpoint):
            path.mkdir(parents=True)
        for path in self._code:
            (self._tmp / path.relative_to("/tmp")).mkdir(parents=True)
        os.chmod(self._tmp, 0o1777)

    def __repr__(self) -> str:
        return f"Host({self.name}, {self.ip})"

    def outside(self, path: str | Path) -> Path:
        """Where ``path`` of this host is seen from the test (the shared folder is itself)."""
        path = Path(path)
        if path == self.shared or self.shared in path.parents:
            return path
        return self._tmp / path.relative_to("/tmp")

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The test's environment without its private settings, plus this host's own."""
        env = {k: v for k, v in os.environ.items() if not _PRIVATE_ENV.search(k)}
        env.update(
            HOME=str(self.home),
            TMPDIR="/tmp",
            PYTHONPATH=str(REPO),  # every node runs the code under test
            RAY_AUTH_MODE="disabled",  # a private subnet nobody else reaches: no token
        )
        env.update(extra or {})
        return env

    def command(self, cmd: Sequence[str], cwd: str | Path | None = None) -> list[str]:
        """The argv that runs ``cmd`` in this host, from ``cwd`` (default: the project)."""
        q = shlex.quote
        etc = self.root / "etc"
        script = (
            f"set -e; hostname {self.hostname}; "
            f"mount --bind {q(str(etc / 'hosts'))} /etc/hosts; "
            f"mount --bind {q(str(etc / 'resolv.conf'))} /etc/resolv.conf; "
            f"mount --bind {q(str(self.shared))} {q(str(self._mountpoint))}; "
            + "".join(
                f"mount --bind {q(str(p))} {q(str(self._tmp / p.relative_to('/tmp')))}; "
                for p in self._code
            )
            + f"mount --rbind {q(str(self._tmp))} /tmp; "
            'cd "$1"; shift; exec "$@"'
        )
        where = str(cwd or self.project)
        enter = ["ip", "netns", "exec", self.netns, "unshare", "--mount", "--uts", "--propagation",
                 "private"]  # fmt: skip
        return [*enter, "sh", "-c", script, "sh", where, *map(str, cmd)]

    def run(
        self,
        cmd: Sequence[str],
        env: dict[str, str] | None = None,
        cwd: str | Path | None = None,
        timeout: float = 120,
        check: bool = True,
    ) -> subprocess.CompletedProcess:
        """Run ``cmd`` in this host to its end; its output as text. ``check``: fail with its
        stderr when it exits non-zero."""
        result = subprocess.run(
            self.command(cmd, cwd), env=self.env(env), capture_output=True, text=True,
            timeout=timeout, start_new_session=True,
        )  # fmt: skip
        if check and result.returncode != 0:
            raise AssertionError(
                f"{self.name}: {shlex.join(map(str, cmd))} exited {result.returncode}:\n"
                f"{result.stderr[-3000:]}"
            )
        return result

    def popen(
        self,
        cmd: Sequence[str],
        log: str,
        env: dict[str, str] | None = None,
        cwd: str | Path | None = None,
    ) -> subprocess.Popen:
        """Start ``cmd`` in this host in its own session; stdout and stderr go to
        ``self.log(log)``, emptied first."""
        with open(self.log(log), "wb") as out:
            proc = subprocess.Popen(
                self.command(cmd, cwd), env=self.env(env), stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self._procs.append(proc)
        proc.log_file = self.log(log)  # what a failing test shows of it
        return proc

    def log(self, name: str) -> Path:
        """The file ``popen(..., log=name)`` writes to (outside the hosts)."""
        return self._logs / f"{self.name}-{name}.log"

    def unplug(self) -> None:
        """Cut this host off the network (its port on the switch goes down): its processes
        live on but nothing reaches them, as when a machine hangs or its cable is pulled."""
        run_ip("-n", self._switch, "link", "set", self.name, "down")

    def plug(self) -> None:
        """Connect this host again after ``unplug``."""
        run_ip("-n", self._switch, "link", "set", self.name, "up")

    def pids(self) -> list[int]:
        """Every process of this host (in its network namespace)."""
        return netns_pids(self.netns)

    def kill_all(self) -> int:
        """SIGKILL every process of this host, as a host that dies; how many there were."""
        killed = kill_netns(self.netns)
        for proc in self._procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:  # cannot be: it was SIGKILLed with the rest
                raise RuntimeError(f"{proc.args} outlived SIGKILL") from None
        self._procs.clear()
        return killed
