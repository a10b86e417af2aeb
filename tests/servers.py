"""What the server tests drive: a server process in its own process group until it answers,
and the system Chromium (Debian package ``chromium``) through Playwright, which never
downloads a browser."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
READY_S = 60  # how long a server may take to answer (a loaded 2-core machine is slow)


class Server:
    """A server process in its own process group, its output in files under ``logs``."""

    def __init__(self, name: str, cmd: list[str], cwd: Path, port: int, ready: str, env=None):
        self.name, self.port = name, port
        self.url = f"http://127.0.0.1:{port}"
        self.ready = ready
        logs = cwd / "logs"
        logs.mkdir(exist_ok=True)
        self.out_path, self.err_path = logs / f"{name}.out", logs / f"{name}.err"
        with self.out_path.open("wb") as out, self.err_path.open("wb") as err:
            self.proc = subprocess.Popen(
                cmd, cwd=cwd, env=env, stdout=out, stderr=err, start_new_session=True
            )

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def wait_ready(self) -> None:
        """Poll ``ready`` until it answers 200; fail with the server's stderr otherwise."""
        deadline = time.monotonic() + READY_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(
                    f"{self.name} exited with {self.proc.returncode} before it answered; "
                    f"stderr:\n{self.stderr()}"
                )
            try:
                with urllib.request.urlopen(self.url + self.ready, timeout=5) as response:
                    if response.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.25)
        pytest.fail(
            f"{self.name} did not answer on {self.url} in {READY_S} s; stderr:\n{self.stderr()}"
        )

    def stop(self) -> None:
        """SIGTERM to the whole group (MLflow's uvicorn worker included), SIGKILL after 10 s,
        then SIGKILL to whatever of the group outlived its leader."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(10)
                break
            except subprocess.TimeoutExpired:
                continue
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def browser():
    """Playwright driving the system Chromium, or a skip that says what is missing."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (Debian: apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as e:
        pytest.skip(f"import playwright failed: {e} (pip install -e '.[test]')")
    return sync_playwright()


def artifacts_dir(tmp_path: Path) -> Path:
    where = Path(os.environ.get("CEPHTUNE_ARTIFACTS") or tmp_path)
    where.mkdir(parents=True, exist_ok=True)
    return where


def shown_tolerance(text: str) -> float:
    """Half a unit in the last place of a number as the page writes it (``68.8016``, ``1e-7``)."""
    mantissa, _, exponent = text.lower().partition("e")
    decimals = len(mantissa.partition(".")[2])
    return 0.5 * 10.0 ** (int(exponent or 0) - decimals)


@contextmanager
def chromium_page(playwright, tmp_path: Path, timeout_ms: int):
    """A page of the system Chromium, headless, in a fresh profile under ``tmp_path``, with
    ``timeout_ms`` for every wait; the browser is closed after."""
    context = playwright.chromium.launch_persistent_context(
        str(tmp_path / "chromium-profile"),
        executable_path=CHROMIUM,
        headless=True,
        args=CHROMIUM_ARGS,
        viewport={"width": 1400, "height": 900},
    )
    try:
        page = context.new_page()
        page.set_default_timeout(timeout_ms)
        yield page
    finally:
        context.close()


def rest(server: Server, path: str, query: dict | None = None, body: dict | None = None):
    """A call to the MLflow REST API: GET with ``query``, or POST ``body`` as JSON."""
    url = server.url + path + ("?" + urllib.parse.urlencode(query) if query else "")
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)
