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

How one host runs a command and what it sees: tests/host.py.

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
import secrets
import shutil
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from tests.host import Host, kill_netns, run_ip, start_time

PREFIX = "/tmp/cephtune-hosts-"


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


def _kill_group(pid: int) -> None:
    """SIGKILL ``pid`` and its process group (a server started in its own session)."""
    for kill in (os.kill, os.killpg):
        try:
            kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _remove(ident: str) -> None:
    """Delete what ``Hosts`` made under ``ident``: processes, namespaces, the root leg, ROOT."""
    names = run_ip("netns", "list").stdout.split()
    ours = [n for n in names if n.startswith(f"cephtune-{ident}-")]
    for netns in ours:
        kill_netns(netns)
    for netns in ours:
        run_ip("netns", "del", netns, check=False)
    run_ip("link", "del", f"ct{ident}", check=False)  # gone already with its peer, normally
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
        if start_time(int(pid)) != started:
            services = owner.parent / "services"
            for line in services.read_text().splitlines() if services.exists() else []:
                pid, started = line.split()
                if start_time(int(pid)) == started:
                    _kill_group(int(pid))
            ident = owner.parent.name.removeprefix(PREFIX.rsplit("/", 1)[1])
            _remove(ident)
            removed.append(ident)
    return removed


def _free_subnet() -> ipaddress.IPv4Network:
    """A 10.231.X.0/24 that no address or route of the root namespace overlaps."""
    routes = json.loads(run_ip("-4", "-j", "route", "show", "table", "all").stdout or "[]")
    used = [ipaddress.ip_network(r["dst"], strict=False) for r in routes if r["dst"] != "default"]
    candidates = [ipaddress.ip_network(f"10.231.{x}.0/24") for x in range(256)]
    free = [n for n in candidates if not any(n.overlaps(u) for u in used)]
    if not free:
        raise Unavailable("no free 10.231.X.0/24 subnet in the root namespace")
    return random.choice(free)


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
            (self.root / "owner").write_text(f"{os.getpid()} {start_time(os.getpid())}")
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
            run_ip("netns", "add", switch)
        except RuntimeError as e:
            raise Unavailable(f"cannot make a network namespace: {e}") from None
        run_ip("-n", switch, "link", "add", "br0", "type", "bridge")
        run_ip("-n", switch, "link", "set", "br0", "up")
        for _ in range(5):  # another run may take the same subnet at the same moment
            self.subnet = _free_subnet()
            self.gateway = str(self.subnet[1])
            leg = f"ct{self.id}"
            run_ip("link", "add", leg, "type", "veth", "peer", "name", "gw", "netns", switch)
            run_ip("addr", "add", f"{self.gateway}/{self.subnet.prefixlen}", "dev", leg)
            run_ip("link", "set", leg, "up")  # its subnet's route appears now
            if (
                len(run_ip("-4", "route", "show", "exact", str(self.subnet)).stdout.splitlines())
                == 1
            ):
                break
            run_ip("link", "del", leg)
        else:
            raise Unavailable("no free 10.231.X.0/24 subnet after 5 tries")
        run_ip("-n", switch, "link", "set", "gw", "master", "br0", "up")
        for index in range(1, n + 1):
            ip = str(self.subnet[10 + index])
            host = Host(self, index, ip)
            run_ip("netns", "add", host.netns)
            run_ip("-n", switch, "link", "add", host.name, "type", "veth", "peer", "name", "eth0",
                "netns", host.netns)  # fmt: skip
            run_ip("-n", switch, "link", "set", host.name, "master", "br0", "up")
            run_ip("-n", host.netns, "link", "set", "lo", "up")
            run_ip("-n", host.netns, "addr", "add", f"{ip}/{self.subnet.prefixlen}", "dev", "eth0")
            run_ip("-n", host.netns, "link", "set", "eth0", "up")
            run_ip("-n", host.netns, "route", "add", "default", "via", self.gateway)
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
            f.write(f"{pid} {start_time(pid)}\n")

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
