"""Separate hosts on one machine, for cluster tests: each host is a network namespace with its
own /tmp (so its own home, project folder and cache), all of them on one private subnet, and one
shared folder (what NFS is in a lab) at the same path on every host.

Topology (``X`` is a free 10.231.X.0/24; ``ID`` six random hex digits; veth pairs)::

    root namespace   ctID  10.231.X.1   ─── gw ─┐  (the gateway: PostgreSQL, MLflow, the test)
    cephtune-ID-h1   eth0  10.231.X.11  ─── h1 ─┼─ br0, in namespace cephtune-ID-sw
    cephtune-ID-h2   eth0  10.231.X.12  ─── h2 ─┘

The bridge lives in a namespace of its own, out of reach of the root namespace's firewall. The
root namespace gets one veth end with the gateway address, so servers the test starts there
and the test itself reach every host; it does not forward, so the hosts reach nothing beyond.
The hosts' default route points at the gateway only so that Ray finds each host's address.

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

Cleanup: ``Hosts.close()`` (also ``with Hosts(2) as hosts``) SIGKILLs every process in each
host's namespace (``ip netns pids``, so daemons that left their process group go too), deletes
the namespaces, the root leg and ``ROOT``; the mounts lived in the processes' own mount
namespaces and went with them. A run killed before its cleanup is swept by the next one
(``sweep``): folders whose owner process is gone, with their namespaces, links and servers.
What runs on the hosts (Ray, PostgreSQL, MLflow, a driver) is in tests/cluster.py.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import os
import random
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from tests.helpers import REPO

PREFIX = "/tmp/cephtune-hosts-"
# Not passed into a host: a host's environment is what its own login would give.
_PRIVATE_ENV = re.compile(r"^(RAY_|CEPHTUNE_|MLFLOW_|PG|XDG_|PYTEST_)|^(HOME|TMPDIR|PYTHONPATH)$")


class Unavailable(Exception):
    """Hosts cannot be made here (not root, a tool missing, namespaces refused)."""


def why_unavailable() -> str | None:
    """Why hosts cannot be made on this machine, or None when they can."""
    if sys.platform != "linux":
        return "network namespaces are Linux only"
    if os.geteuid() != 0:
        return "making network namespaces needs root"
    for tool, package in (("ip", "iproute2"), ("unshare", "util-linux"), ("mount", "mount")):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (Debian package {package})"
    return None


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks, or None when it is gone: a pid with the
    start time it had names one process, even after the pid is reused."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[19]
    except (OSError, IndexError):
        return None


def _netns_pids(netns: str) -> list[int]:
    result = _ip("netns", "pids", netns, check=False)
    return [int(p) for p in result.stdout.split()]


def _kill_netns(netns: str, timeout: float = 30) -> int:
    """SIGKILL every process in ``netns`` until none is left; how many were killed."""
    killed: set[int] = set()
    deadline = time.monotonic() + timeout
    while pids := _netns_pids(netns):
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


def _kill_group(pid: int) -> None:
    """SIGKILL ``pid`` and its process group (a server started in its own session)."""
    for kill in (os.kill, os.killpg):
        try:
            kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _remove(ident: str) -> None:
    """Delete what ``Hosts`` made under ``ident``: processes, namespaces, the root leg, ROOT."""
    names = _ip("netns", "list").stdout.split()
    ours = [n for n in names if n.startswith(f"cephtune-{ident}-")]
    for netns in ours:
        _kill_netns(netns)
    for netns in ours:
        _ip("netns", "del", netns, check=False)
    _ip("link", "del", f"ct{ident}", check=False)  # gone already with its peer, normally
    shutil.rmtree(PREFIX + ident, ignore_errors=True)


def sweep() -> list[str]:
    """Remove what earlier runs killed before their cleanup left behind: each ROOT whose
    ``owner`` process is gone. Returns the ids removed."""
    removed = []
    for owner in Path("/tmp").glob("cephtune-hosts-*/owner"):
        try:
            pid, started = owner.read_text().split()
        except (OSError, ValueError):
            continue
        if _start_time(int(pid)) != started:
            services = owner.parent / "services"
            for line in services.read_text().splitlines() if services.exists() else []:
                pid, started = line.split()
                if _start_time(int(pid)) == started:
                    _kill_group(int(pid))
            ident = owner.parent.name.removeprefix(PREFIX.rsplit("/", 1)[1])
            _remove(ident)
            removed.append(ident)
    return removed


def _free_subnet() -> ipaddress.IPv4Network:
    """A 10.231.X.0/24 that no address or route of the root namespace overlaps."""
    routes = json.loads(_ip("-4", "-j", "route", "show", "table", "all").stdout or "[]")
    used = [ipaddress.ip_network(r["dst"], strict=False) for r in routes if r["dst"] != "default"]
    candidates = [ipaddress.ip_network(f"10.231.{x}.0/24") for x in range(256)]
    free = [n for n in candidates if not any(n.overlaps(u) for u in used)]
    if not free:
        raise Unavailable("no free 10.231.X.0/24 subnet in the root namespace")
    return random.choice(free)


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
        return proc

    def log(self, name: str) -> Path:
        """The file ``popen(..., log=name)`` writes to (outside the hosts)."""
        return self._logs / f"{self.name}-{name}.log"

    def unplug(self) -> None:
        """Cut this host off the network (its port on the switch goes down): its processes
        live on but nothing reaches them, as when a machine hangs or its cable is pulled."""
        _ip("-n", self._switch, "link", "set", self.name, "down")

    def plug(self) -> None:
        """Connect this host again after ``unplug``."""
        _ip("-n", self._switch, "link", "set", self.name, "up")

    def pids(self) -> list[int]:
        """Every process of this host (in its network namespace)."""
        return _netns_pids(self.netns)

    def kill_all(self) -> int:
        """SIGKILL every process of this host, as a host that dies; how many there were."""
        killed = _kill_netns(self.netns)
        for proc in self._procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:  # cannot be: it was SIGKILLed with the rest
                raise RuntimeError(f"{proc.args} outlived SIGKILL") from None
        self._procs.clear()
        return killed


class Hosts:
    """``n`` hosts on a private subnet, with a shared folder; ``close()`` removes them all."""

    def __init__(self, n: int = 2) -> None:
        reason = why_unavailable()
        if reason:
            raise Unavailable(reason)
        sweep()
        self.id = secrets.token_hex(3)
        self.root = Path(PREFIX + self.id)
        self.shared = self.root / "shared"
        self.logs = self.root / "logs"
        self.switch = f"cephtune-{self.id}-sw"  # the namespace of the bridge
        self.hosts: list[Host] = []
        self._on_close: list[Callable[[], None]] = []
        self.root.mkdir()
        try:
            (self.root / "owner").write_text(f"{os.getpid()} {_start_time(os.getpid())}")
            self.shared.mkdir()
            self.logs.mkdir()
            os.chmod(self.shared, 0o1777)
            self._network(n)
        except BaseException:
            self.close()
            raise

    def _network(self, n: int) -> None:
        switch = self.switch
        try:
            _ip("netns", "add", switch)
        except RuntimeError as e:
            raise Unavailable(f"cannot make a network namespace: {e}") from None
        _ip("-n", switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", switch, "link", "set", "br0", "up")
        for _ in range(5):  # another run may take the same subnet at the same moment
            self.subnet = _free_subnet()
            self.gateway = str(self.subnet[1])
            leg = f"ct{self.id}"
            _ip("link", "add", leg, "type", "veth", "peer", "name", "gw", "netns", switch)
            _ip("addr", "add", f"{self.gateway}/{self.subnet.prefixlen}", "dev", leg)
            _ip("link", "set", leg, "up")  # its subnet's route appears now
            if len(_ip("-4", "route", "show", "exact", str(self.subnet)).stdout.splitlines()) == 1:
                break
            _ip("link", "del", leg)
        else:
            raise Unavailable("no free 10.231.X.0/24 subnet after 5 tries")
        _ip("-n", switch, "link", "set", "gw", "master", "br0", "up")
        for index in range(1, n + 1):
            ip = str(self.subnet[10 + index])
            host = Host(self, index, ip)
            _ip("netns", "add", host.netns)
            _ip("-n", switch, "link", "add", host.name, "type", "veth", "peer", "name", "eth0",
                "netns", host.netns)  # fmt: skip
            _ip("-n", switch, "link", "set", host.name, "master", "br0", "up")
            _ip("-n", host.netns, "link", "set", "lo", "up")
            _ip("-n", host.netns, "addr", "add", f"{ip}/{self.subnet.prefixlen}", "dev", "eth0")
            _ip("-n", host.netns, "link", "set", "eth0", "up")
            _ip("-n", host.netns, "route", "add", "default", "via", self.gateway)
            self.hosts.append(host)
        # What a lab's DNS would answer; no name server, so a lookup of any other name fails at
        # once instead of waiting for one the hosts cannot reach.
        etc = self.root / "etc"
        etc.mkdir()
        names = [("127.0.0.1", "localhost"), (self.gateway, f"cephtune-{self.id}-gw")]
        names += [(host.ip, host.hostname) for host in self.hosts]
        (etc / "hosts").write_text("".join(f"{ip} {name}\n" for ip, name in names))
        (etc / "resolv.conf").write_text("options timeout:1 attempts:1\n")

    def __getitem__(self, i: int) -> Host:
        return self.hosts[i]

    def __iter__(self):
        return iter(self.hosts)

    def __len__(self) -> int:
        return len(self.hosts)

    def __enter__(self) -> Hosts:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def kill_all(self) -> None:
        """Every process of every host (Ray, drivers): what a test leaves for the next one."""
        for host in self.hosts:
            host.kill_all()

    def on_close(self, stop: Callable[[], None]) -> None:
        """Call ``stop`` at ``close``, after the hosts' processes are killed (a server of the
        root namespace, tests/cluster.py); the last registered is called first."""
        self._on_close.append(stop)

    def note_process(self, pid: int) -> None:
        """A process of the root namespace for ``sweep`` to kill, should this run die before
        its ``close``."""
        with open(self.root / "services", "a") as f:
            f.write(f"{pid} {_start_time(pid)}\n")

    def close(self) -> None:
        """Remove every process, namespace, link, mount and folder these hosts made; every
        step runs even when one before it failed."""
        steps = [host.kill_all for host in self.hosts] + self._on_close[::-1]
        steps.append(functools.partial(_remove, self.id))
        self.hosts, self._on_close = [], []
        errors = []
        for step in steps:
            try:
                step()
            except Exception as e:  # noqa: BLE001 - raised below, after the other steps
                errors.append(e)
        if errors:
            raise errors[0]
