"""The hosts cluster tests run on (tests/netns.py): separate filesystems, one shared folder, a
two-node Ray cluster across them, servers every host reaches, and nothing left afterwards."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests.cluster import search_py, start_mlflow, start_postgres
from tests.helpers import REPO, check_records, tiny_study, trial_runs
from tests.netns import PREFIX, Hosts, Unavailable, sweep

pytestmark = pytest.mark.cluster


def test_each_host_has_its_own_tmp_home_and_cache_and_shares_one_folder(hosts, tmp_path):
    h1, h2 = hosts
    for host in hosts:
        mine = ["/tmp/mine", "~/mine", f"{host.shared}/{host.name}"]
        host.run(["sh", "-c", "; ".join(f"echo {host.name} > {path}" for path in mine)])
    show = "from trainables.data.cache import resolve_cache_dir as d; print(d())"
    cache = f"{sys.executable} -c '{show}'"
    for host in hosts:
        out = host.run(["sh", "-c", f"hostname; cat /tmp/mine ~/mine; ls {host.shared}; "
                        f"test ! -e {tmp_path}; {cache}"]).stdout.split()  # fmt: skip
        # its own name, /tmp and home (the test's /tmp is not there); both hosts' files in the
        # shared folder; cephtune's cache inside its own home
        assert out == [host.hostname, host.name, host.name, "h1", "h2",
                       str(host.home / ".cache" / "cephtune")]  # fmt: skip
        assert (host.outside(host.home) / "mine").read_text() == f"{host.name}\n"
    assert h1.home == h2.home and h1.outside(h1.home) != h2.outside(h2.home)  # same path, apart
    assert not (Path("/tmp") / "mine").exists()
    assert sorted(p.name for p in hosts.shared.iterdir()) == ["h1", "h2"]  # the test sees it too


PROBE = """\
import json, os, socket, sys
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

ray.init(address=sys.argv[1], logging_level="WARNING")

@ray.remote(num_cpus=0)
def where(shared):
    home = os.environ["HOME"]
    return {"ip": ray.util.get_node_ip_address(), "hostname": socket.gethostname(),
            "home": sorted(os.listdir(home)),
            "shared": sorted(os.listdir(shared))}

found = []
for node in ray.nodes():
    if node["Alive"]:
        pin = NodeAffinitySchedulingStrategy(node_id=node["NodeID"], soft=False)
        task = where.options(scheduling_strategy=pin).remote(sys.argv[2])
        found.append({"node": node["NodeManagerAddress"], **ray.get(task)})
print(json.dumps(found))
"""


def test_ray_runs_one_node_per_host_and_a_task_sees_its_hosts_files(hosts, ray_hosts):
    h1, h2 = hosts
    for host in hosts:
        (host.outside(host.home) / f"only-on-{host.name}").write_text("")
    (h1.outside(h1.project) / "probe.py").write_text(PROBE)
    (hosts.shared / "everywhere").write_text("")
    out = h1.run([sys.executable, "probe.py", ray_hosts, str(hosts.shared)]).stdout
    found = sorted(json.loads(out.splitlines()[-1]), key=lambda n: n["node"])
    assert [n["node"] for n in found] == [h1.ip, h2.ip]  # two nodes alive, one per host
    for node, host in zip(found, hosts, strict=True):
        assert (node["ip"], node["hostname"]) == (host.ip, host.hostname)
        assert f"only-on-{host.name}" in node["home"]  # the task sees its own host's files
        assert f"only-on-{(h2 if host is h1 else h1).name}" not in node["home"]
        assert "everywhere" in node["shared"]


def test_postgres_and_mlflow_are_reachable_from_every_host_and_postgres_restarts(
    hosts, hosts_postgres
):
    pg = hosts_postgres
    pg.createdb("reach")
    pg.createdb("reach_mlflow")
    url = pg.url("reach")
    sql = textwrap.dedent(f"""\
        import sys, psycopg
        with psycopg.connect({url!r}) as c:
            c.execute("CREATE TABLE IF NOT EXISTS seen (host text)")
            c.execute("INSERT INTO seen VALUES (%s)", (sys.argv[1],))
            print(c.execute("SELECT string_agg(host, ',' ORDER BY host) FROM seen").fetchone()[0])
        """)
    h1, h2 = hosts
    assert h1.run([sys.executable, "-c", sql, "h1"]).stdout.strip() == "h1"
    assert h2.run([sys.executable, "-c", sql, "h2"]).stdout.strip() == "h1,h2"
    pg.restart()  # the fault a test injects: every connection dropped, the data kept
    assert h2.run([sys.executable, "-c", sql, "h2"]).stdout.strip() == "h1,h2,h2"

    mlflow = start_mlflow(hosts, pg.url("reach_mlflow"))
    api = textwrap.dedent(f"""\
        import json, sys, urllib.request
        def call(path, body=None):
            data = json.dumps(body).encode() if body is not None else None
            request = urllib.request.Request({mlflow!r} + "/api/2.0/mlflow/" + path, data,
                                             {{"Content-Type": "application/json"}})
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.load(response)
        if sys.argv[1] == "create":
            print(call("experiments/create", {{"name": "from-h1"}})["experiment_id"])
        else:
            print(call("experiments/get-by-name?experiment_name=from-h1")["experiment"]["experiment_id"])
        """)  # fmt: skip
    made = h1.run([sys.executable, "-c", api, "create"]).stdout.strip()
    assert h2.run([sys.executable, "-c", api, "get"]).stdout.strip() == made


def test_an_unplugged_host_is_silent_and_comes_back(hosts):
    h1, h2 = hosts
    server = h2.popen([sys.executable, "-m", "http.server", "8000"], log="http")
    try:
        assert _answers(h2.ip, 8000, within=30)
        h2.unplug()
        assert not _answers(h2.ip, 8000, within=1)  # no refusal either: silence
        assert server.poll() is None  # its processes live on
        h2.plug()
        assert _answers(h2.ip, 8000, within=30)
    finally:
        h2.plug()
        h2.kill_all()


def _answers(ip: str, port: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while True:
        try:
            socket.create_connection((ip, port), timeout=0.5).close()
            return True
        except OSError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)


def test_a_study_spreads_over_both_hosts_from_a_shared_project_folder(
    hosts, ray_hosts, hosts_postgres
):
    """``search.py start --address`` in host 1, run from a project folder on the shared
    storage, with an MLflow server: Ray keeps the experiment there (``studies/NAME/ray``, no
    ``experiment_path``), where a trial on host 2 can checkpoint too, and each node sees it.
    (From host 1's own project folder the start is refused: tests/search/run/test_hosts.py.)"""
    h1, h2 = hosts
    url = hosts_postgres.url(hosts_postgres.createdb("spread"))
    mlflow = start_mlflow(hosts, hosts_postgres.url(hosts_postgres.createdb("spread_mlflow")))
    project = hosts.shared / "project"
    study = tiny_study(project, "spread", num_samples=4, max_epochs=2, grace=2, concurrent=2)
    study.write_text(study.read_text() + f"storage: {url}\n")
    result = h1.run(search_py("start", study.name, "--address", ray_hosts), cwd=project,
                    env={"MLFLOW_TRACKING_URI": mlflow}, timeout=300, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    ran_on = set()
    for trial in (project / "studies" / "spread" / "ray").glob("trial_*"):
        reports = (trial / "result.json").read_text().splitlines()
        ran_on |= {json.loads(line)["node_ip"] for line in reports}
    assert ran_on == {h1.ip, h2.ip}  # one CPU per node, two trials at once: both hosts work
    study = optuna.load_study(study_name="spread", storage=url)
    check_records(study, trial_runs(project, "spread", mlflow), 4, mlflow)
    assert {t.state for t in study.trials} == {TrialState.COMPLETE}
    # each host made the synthetic dataset in its own cache, at the path the driver chose
    for host in hosts:
        assert list((host.outside(host.home) / ".cache/cephtune/synthetic").iterdir())


DAEMON = "sleep 300 & setsid sh -c 'sleep 301 &'; exec sleep 302"  # one escapes its session


def leftovers(ident: str, pids: list[tuple[int, str | None]]) -> list[str]:
    """What of hosts ``ident`` is still on the machine; ``pids``: its processes, each with
    its start time, so that a reused pid is not mistaken for one of them."""
    root = PREFIX + ident
    left = [n for n in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
            .stdout.split() if ident in n]  # fmt: skip
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout
    left += [line for line in links.splitlines() if f"ct{ident}" in line]
    for mountinfo in Path("/proc").glob("[0-9]*/mountinfo"):  # every mount namespace's mounts
        try:
            if root in mountinfo.read_text():
                left.append(f"a mount of {root} in {mountinfo}")
        except OSError:  # the process ended meanwhile
            pass
    left += [f"process {pid}" for pid, start in pids if start and _start(pid) == start]
    if Path(root).exists():
        left.append(root)
    return left


def _start(pid: int) -> str | None:
    """The start time of process ``pid``, or None once it ended (a zombie has ended: it
    holds nothing but its pid until init reaps it)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else fields[19]


def test_close_removes_everything_even_when_the_test_fails():
    try:
        hosts = Hosts(2)
    except Unavailable as e:
        pytest.skip(f"cannot make hosts on this machine: {e}")
    pids = []
    with pytest.raises(RuntimeError, match="a failing test"), hosts:
        try:
            postmaster = start_postgres(hosts).folder / "data" / "postmaster.pid"
            pids.append(int(postmaster.read_text().split()[0]))
        except Unavailable:
            pass
        for host in hosts:
            host.popen(["sh", "-c", DAEMON], log="daemon")
        deadline = time.monotonic() + 10
        while sum(len(h.pids()) for h in hosts) < 6 and time.monotonic() < deadline:
            time.sleep(0.05)
        pids += [pid for host in hosts for pid in host.pids()]
        assert len(pids) >= 6
        started = [(pid, _start(pid)) for pid in pids]
        raise RuntimeError("a failing test")
    assert leftovers(hosts.id, started) == []


def test_a_killed_run_is_swept_by_the_next():
    """A test process SIGKILLed with its hosts up leaves them; the next ``Hosts`` removes
    them (``sweep``), and only those whose owner is gone."""
    if os.geteuid() != 0:
        pytest.skip("making network namespaces needs root")
    code = textwrap.dedent("""\
        import sys, time
        from tests.netns import Hosts
        hosts = Hosts(1)
        hosts[0].popen(["sh", "-c", "exec sleep 300"], log="sleep")
        while not hosts[0].pids():
            time.sleep(0.05)
        print(hosts.id, *hosts[0].pids(), flush=True)
        time.sleep(300)
        """)
    run = subprocess.Popen(
        [sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE,
        text=True, start_new_session=True,
    )  # fmt: skip
    try:
        line = run.stdout.readline().split()
    finally:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
    if not line:
        pytest.skip("the child could not make hosts (its traceback is above)")
    ident, *pids = line
    started = [(int(pid), _start(int(pid))) for pid in pids]
    assert leftovers(ident, started) != []
    assert ident in sweep()
    assert leftovers(ident, started) == []
