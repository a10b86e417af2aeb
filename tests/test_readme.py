"""The README is executable: every shell block in README.md runs here, verbatim, in order.

The blocks run in a fresh copy of the repository (the files a clone has), one ``bash`` per
block, in one simulated terminal: the current directory is the copy's root and stays there, and
the environment a block leaves (``. .venv/bin/activate``, ``export ...``) is the next block's,
as in a user's shell. The terminal starts as a new user's would: a home folder of its own (so
the cache is ``~/.cache/cephtune``), no cephtune or MLflow variables, the project's ``.venv``
not on the PATH. The copy's ``.venv`` is the suite's own environment, linked, with its install
stamps fresh, so ``make quickstart`` runs the study without reinstalling.

An HTML comment right above a block tells this harness what else to do with it:

- ``<!-- readme-test: skip: REASON -->``: not run (needs a GPU, the real Aariz, several
  machines, or is this suite itself); the reason is the test's skip message.
- ``<!-- readme-test: kill -9 when study NAME in URL has a finished trial -->``: run in the
  background and SIGKILLed (its whole process group: the driver and its Ray) once the study
  has a finished trial, as a crash or a reboot would.
- ``<!-- readme-test: serve URL -->``: a server; run in the background until URL answers, and
  stopped when the module ends.

Each ``## `` section with runnable blocks is one test, in README order; a section's checks
(below) look at what its commands left, the way a user would, through Optuna and MLflow. A
change to a README block changes what runs here.
"""

from __future__ import annotations

import json
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

from tests.helpers import REPO, check_records, mlflow_url, optuna_url, trial_runs

pytestmark = pytest.mark.slow

README = REPO / "README.md"
SHELLS = ("bash", "sh", "shell")
DIRECTIVE = re.compile(r"<!--\s*readme-test:\s*(.*?)\s*-->", re.S)
KILL = re.compile(r"kill -9 when study (\S+) in (\S+) has a finished trial")
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


BLOCKS = readme_blocks(README.read_text())
SECTIONS = list(dict.fromkeys(b.section for b in BLOCKS))


def test_every_shell_block_runs_or_says_why_not():
    assert BLOCKS, "no shell blocks found in README.md"
    for block in BLOCKS:
        d = block.directive
        known = d == "" or d.startswith(("skip: ", "serve http")) or KILL.fullmatch(d)
        assert known, f"README.md:{block.line}: unknown readme-test directive {d!r}"
        if d.startswith("skip: "):
            assert len(d) > len("skip: ") + 10, f"README.md:{block.line}: say why it is skipped"


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


@pytest.fixture(scope="module")
def terminal(tmp_path_factory):
    if not (REPO / ".git").exists() or shutil.which("git") is None:
        pytest.skip("the README harness copies a git checkout's files; this is not one")
    if not (REPO / ".venv" / "bin" / "python").exists():
        pytest.skip("the README's commands use the project's .venv (make test creates it)")
    base = tmp_path_factory.mktemp("readme")
    root = fresh_copy(Path(base / "cephtune"))
    (base / "home").mkdir()
    venv_bin = str(REPO / ".venv" / "bin")
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p != venv_bin)
    env = {"PATH": path, "HOME": str(base / "home"), "LANG": "C.UTF-8", "USER": "cephtune"}
    shell = Terminal(root, env)
    yield shell
    shell.stop()


def run_section(terminal: Terminal, section: str) -> None:
    if terminal.failed:
        pytest.fail(f"an earlier README section failed ({terminal.failed}); this one builds on it")
    skipped = []
    try:
        for block in (b for b in BLOCKS if b.section == section):
            d = block.directive
            if d.startswith("skip: "):
                skipped.append(f"README.md:{block.line}: {d[len('skip: ') :]}")
            elif d.startswith("serve "):
                terminal.serve(block, d.split()[1])
            elif KILL.fullmatch(d):
                study, url = KILL.fullmatch(d).groups()
                terminal.kill_after_a_finished_trial(block, study, url)
            else:
                terminal.run(block)
        CHECKS.get(section, lambda t: None)(terminal)
    except BaseException:
        terminal.failed = section
        raise
    if skipped and all(b.directive.startswith("skip: ") for b in BLOCKS if b.section == section):
        pytest.skip("; ".join(skipped))


def stdout_of(terminal: Terminal, section: str, command: str) -> str:
    """What the block of ``section`` containing ``command`` printed."""
    (block,) = [b for b in BLOCKS if b.section == section and command in b.code]
    return terminal.outputs[block.line]


# --- what each section's commands must leave, looked at as a user would ----------------------


def check_walkthrough(terminal: Terminal) -> None:
    import optuna
    from mlflow.tracking import MlflowClient

    root = terminal.root
    study = optuna.load_study(study_name="quickstart", storage=optuna_url(root))
    check_records(study, trial_runs(root, "quickstart"), 8, mlflow_url(root))
    assert study.metric_names == ["mre_mm"]
    resumed = stdout_of(terminal, SECTION_WALK, "resume quickstart")
    assert "Study 'quickstart': 8 trials finished" in resumed
    best = json.loads(stdout_of(terminal, SECTION_WALK, "best quickstart --json").splitlines()[-1])
    assert best["trial"] in [t.number for t in study.trials if t.state.name == "COMPLETE"]
    client = MlflowClient(mlflow_url(root))
    champion = client.get_model_version_by_alias("quickstart", "champion")
    assert champion.run_id
    assert (root / "studies/quickstart/report/report.html").stat().st_size > 10_000
    images = sorted((root / "my_cephs/test/Cephalograms").iterdir())
    assert images and all((root / "preds" / f"{p.stem}.json").is_file() for p in images)
    assert all((root / "preds" / f"{p.stem}.png").is_file() for p in images)
    scored = stdout_of(terminal, SECTION_WALK, "evaluate --pred preds")
    assert re.search(rf"{len(images)} images of test: MRE \d+\.\d+ ± \d+\.\d+ mm", scored)
    assert answers("http://127.0.0.1:8080/api/studies")


def check_scaling_out(terminal: Terminal) -> None:
    import optuna

    storage_url = "postgresql:///cephtune_optuna"
    server = terminal.env["MLFLOW_TRACKING_URI"]
    saved = {k: os.environ.get(k) for k in ("PGHOST", "PGPORT", "PGUSER")}
    os.environ.update({k: terminal.env[k] for k in saved})
    try:
        study = optuna.load_study(study_name="postgres-demo", storage=storage_url)
        check_records(study, trial_runs(terminal.root, "postgres-demo", server), 4, server)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    resumed = stdout_of(terminal, SECTION_SCALING, "resume postgres-demo")
    assert "Study 'postgres-demo': 4 trials finished" in resumed
    assert f"MLflow UI:        {server} (the MLflow tracking server)" in resumed


SECTION_WALK = "Walkthrough: from a study to predictions"
SECTION_SCALING = "Scaling out"
CHECKS = {SECTION_WALK: check_walkthrough, SECTION_SCALING: check_scaling_out}


def test_the_checked_sections_exist():
    for section in CHECKS:
        assert section in SECTIONS, f"README.md has no section {section!r} with shell blocks"


@pytest.mark.parametrize("section", SECTIONS)
def test_readme_section(section, terminal, request):
    if section == SECTION_SCALING:  # needs a PostgreSQL server, as the section says
        server = request.getfixturevalue("postgres")
        terminal.env.update(server.env)
    run_section(terminal, section)
