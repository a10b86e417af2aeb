"""A private PostgreSQL server for tests: its own cluster in a temporary folder, on a free
loopback port, stopped and deleted on every outcome.

It uses Debian's ``postgresql`` package (``make test`` installs it when missing). ``initdb``
refuses to run as root, so as root the cluster belongs to the ``postgres`` system user, as it
would on a Debian host. The superuser role is ``cephtune`` with trust authentication on
loopback only.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

ROLE = "cephtune"


def server_binaries() -> Path | None:
    """The folder of ``initdb`` and ``pg_ctl`` (the newest installed PostgreSQL), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _version(path: str) -> int:
    part = Path(path).parts[-3]
    return int(part) if part.isdigit() else 0


def why_unavailable() -> str | None:
    """Why a private server cannot run here, or None when it can."""
    if server_binaries() is None:
        return "PostgreSQL is not installed (Debian: apt-get install postgresql; make test does)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root without a postgres user to own the cluster"
        if shutil.which("runuser") is None:
            return "running as root without runuser to start the cluster as postgres"
    return None


class PostgresServer:
    """``start()`` a cluster on ``port``; ``stop()`` it and delete its folder.

    ``listen``: the addresses it listens on (loopback by default); ``clients``: a network
    besides loopback whose clients it trusts, such as a test cluster's private subnet
    (``10.231.7.0/24``).
    """

    def __init__(
        self, port: int, listen: Sequence[str] = ("127.0.0.1",), clients: str | None = None
    ) -> None:
        self.port = port
        self.listen, self.clients = tuple(listen), clients
        self.bin = server_binaries()
        self.folder: Path | None = None

    @property
    def env(self) -> dict[str, str]:
        """libpq's variables: ``createdb`` and a ``postgresql:///DB`` URL find the server."""
        return {"PGHOST": "127.0.0.1", "PGPORT": str(self.port), "PGUSER": ROLE}

    def url(self, database: str, driver: str = "postgresql", host: str | None = None) -> str:
        """The URL of ``database`` at ``host``, one of ``listen`` (the first by default)."""
        return f"{driver}://{ROLE}@{host or self.listen[0]}:{self.port}/{database}"

    def _as_owner(self, *cmd: str) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else list(cmd)

    def start(self) -> None:
        # /tmp, not pytest's folder: the postgres user must be able to enter it.
        self.folder = Path(tempfile.mkdtemp(prefix="cephtune-pg-", dir="/tmp"))
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres")
        data = self.folder / "data"
        subprocess.run(
            self._as_owner(
                str(self.bin / "initdb"), "-D", str(data), "-U", ROLE, "--auth=trust",
                "-E", "UTF8", "--no-sync",
            ),
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        if self.clients:
            with open(data / "pg_hba.conf", "a") as hba:
                hba.write(f"host all all {self.clients} trust\n")
        self._pg_ctl("start")

    def _pg_ctl(self, action: str) -> None:
        """``pg_ctl start`` or ``restart``, waiting until the server accepts connections."""
        data, log = self.folder / "data", self.folder / "server.log"
        options = (
            f"-p {self.port} -k {self.folder} -c listen_addresses={','.join(self.listen)} "
            "-c fsync=off -c max_connections=200"
        )
        result = subprocess.run(
            self._as_owner(
                str(self.bin / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log),
                "-m", "immediate", "-w", "-t", "60", action,
            ),
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if result.returncode != 0:
            text = log.read_text() if log.exists() else result.stderr
            raise RuntimeError(f"PostgreSQL did not {action}:\n{text[-2000:]}")

    def down(self) -> None:
        """Stop the server at once (every connection dropped), keeping its data; ``up()``
        starts it again."""
        self._pg_ctl("stop")

    def up(self) -> None:
        self._pg_ctl("start")

    def restart(self) -> None:
        """Stop the server at once (every connection dropped, as in a crash) and start it."""
        self._pg_ctl("restart")

    def createdb(self, name: str) -> str:
        subprocess.run(["createdb", name], env={**os.environ, **self.env}, check=True, timeout=60)
        return name

    def stop(self) -> None:
        if self.folder is None:
            return
        subprocess.run(
            self._as_owner(
                str(self.bin / "pg_ctl"), "-D", str(self.folder / "data"), "-m", "immediate",
                "-w", "stop",
            ),
            capture_output=True, timeout=60,
        )  # fmt: skip
        pid_file = self.folder / "data" / "postmaster.pid"
        if pid_file.exists():  # pg_ctl could not stop it: end it anyway
            try:
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
            except (ProcessLookupError, ValueError, IndexError):
                pass
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder = None
