"""A new user's terminal in a fresh copy of the repository, for tests/test_readme.py.

The blocks of README.md (``readme_blocks``: each shell block with its section and the
``readme-test`` directive above it) run in a fresh copy of the repository (the files a clone
has), one ``bash`` per block, in one simulated terminal: the current directory is the copy's
root and stays there, and the environment a block leaves (``. .venv/bin/activate``,
``export ...``) is the next block's, as in a user's shell. The copy's ``.venv`` is the suite's
own environment, linked, with its install stamps fresh, so ``make quickstart`` runs the study
without reinstalling. A block can also run in the background: until a URL answers (a server),
or until a study has a finished trial and then SIGKILLed with its process group (a crash).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy

from tests.helpers import REPO

SHELLS = ("bash", "sh", "shell")
DIRECTIVE = re.compile(r"<!--\s*readme-test:\s*(.*?)\s*-->", re.S)
BLOCK_TIMEOUT_S = 900
WAIT_S = 240


@dataclass(frozen=True)
class Block:
    section: str
    line: int  # of the opening fence, 1-based
    code: str
    directive: str  # "" when the block just runs


def readme_blocks(text: str) -> list[Block]:
    """The shell blocks of the README, each with its section and its directive."""
    found, section, lines = [], "", text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("## "):
            section = line[3:].strip()
        fence = re.match(r"^```(\w*)\s*$", line)
        if fence:
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            if fence[1] in SHELLS:
                before = "\n".join(lines[max(0, i - 3) : i])
                match = DIRECTIVE.findall(before)
                directive = " ".join(match[-1].split()) if match else ""
                found.append(Block(section, i + 1, "\n".join(lines[i + 1 : end]), directive))
            i = end
        i += 1
    return found


def fresh_copy(target: Path) -> Path:
    """The files a clone of this checkout has (tracked, plus new files not ignored), and a
    ``.venv`` that is the suite's own environment behind links, its stamps newer than
    ``pyproject.toml`` so that ``make`` finds it installed."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    venv = REPO / ".venv"
    (target / ".venv").mkdir()
    for part in ("bin", "lib", "lib64", "include", "pyvenv.cfg"):
        if (venv / part).exists():
            (target / ".venv" / part).symlink_to(venv / part)
    later = time.time() + 60
    for stamp in (".installed", ".installed-test"):
        (target / ".venv" / stamp).touch()
        os.utime(target / ".venv" / stamp, (later, later))
    return target


@dataclass
class Terminal:
    """One user's shell in the copy: its environment carries over from block to block."""

    root: Path
    env: dict[str, str]
    background: list[subprocess.Popen] = field(default_factory=list)
    outputs: dict[int, str] = field(default_factory=dict)  # stdout of each block, by line
    errors: dict[int, str] = field(default_factory=dict)  # and its stderr
    failed: str | None = None

    def script(self, block: Block, keep_env: Path | None = None) -> list[str]:
        tail = f'\nenv -0 > "{keep_env}"\n' if keep_env else "\n"
        return ["bash", "-c", f"set -e -o pipefail\n{block.code}{tail}"]

    def run(self, block: Block) -> None:
        env_file = self.root.parent / "env.bin"
        result = subprocess.run(
            self.script(block, env_file), cwd=self.root, env=self.env,
            capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S,
        )  # fmt: skip
        self.outputs[block.line] = result.stdout
        self.errors[block.line] = result.stderr
        if result.returncode != 0:
            raise AssertionError(
                f"README.md:{block.line} exited with {result.returncode}:\n{block.code}\n"
                f"--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-3000:]}"
            )
        pairs = env_file.read_bytes().decode().split("\0")
        self.env = dict(p.split("=", 1) for p in pairs if "=" in p)

    def start(self, block: Block) -> subprocess.Popen:
        logs = self.root.parent / "logs"
        logs.mkdir(exist_ok=True)
        out_path, err_path = logs / f"{block.line}.out", logs / f"{block.line}.err"
        with open(out_path, "w") as out, open(err_path, "w") as err:
            proc = subprocess.Popen(
                self.script(block), cwd=self.root, env=self.env, stdout=out, stderr=err,
                start_new_session=True,
            )  # fmt: skip
        self.background.append(proc)
        return proc

    def log(self, block: Block) -> str:
        logs = self.root.parent / "logs"
        return "\n".join(
            (logs / f"{block.line}.{kind}").read_text()[-2000:] for kind in ("out", "err")
        )

    def kill_after_a_finished_trial(self, block: Block, study: str, url: str) -> None:
        proc = self.start(block)
        deadline = time.monotonic() + WAIT_S
        while finished_trials(self.resolve(url), study, self.env) < 1:
            if proc.poll() is not None:
                raise AssertionError(
                    f"README.md:{block.line} ended before it could be killed:\n{self.log(block)}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"README.md:{block.line}: no finished trial in {WAIT_S} s")
            time.sleep(0.5)
        assert proc.poll() is None, f"README.md:{block.line} finished before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def serve(self, block: Block, url: str) -> None:
        port = int(re.match(r"https?://[^/:]+:(\d+)", url)[1])
        if not port_free(port):
            pytest.skip(f"port {port} is in use on this machine; README.md:{block.line} binds it")
        proc = self.start(block)
        deadline = time.monotonic() + WAIT_S
        while not answers(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"README.md:{block.line} did not answer on {url}:\n{self.log(block)}"
                )
            time.sleep(0.5)

    def resolve(self, url: str) -> str:
        """A relative sqlite URL as the commands in the copy's root read it."""
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/"):
            return prefix + str(self.root / url[len(prefix) :])
        return url

    def stop(self) -> None:
        for proc in self.background:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(timeout=15)
                    break
                except subprocess.TimeoutExpired:
                    continue
            try:  # whatever of the group outlived its leader
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


def finished_trials(url: str, study: str, env: dict[str, str]) -> int:
    """Finished trials of ``study``, read with plain SQL (0 before Optuna's tables exist): the
    harness must not create the storage's tables itself, racing the driver."""
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///") :])
        if not path.exists():
            return 0
        url = f"sqlite:///file:{path}?mode=ro&uri=true"
    saved = {k: os.environ.get(k) for k in env if k.startswith("PG")}
    os.environ.update({k: v for k, v in env.items() if k.startswith("PG")})  # libpq reads them
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as con:
            return con.execute(
                sqlalchemy.text(
                    "SELECT COUNT(*) FROM trials JOIN studies USING (study_id) WHERE "
                    "study_name = :name AND state IN ('COMPLETE', 'PRUNED', 'FAIL')"
                ),
                {"name": study},
            ).scalar_one()
    except sqlalchemy.exc.DBAPIError:  # no tables or no study yet
        return 0
    finally:
        engine.dispose()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
