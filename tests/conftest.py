"""Shared fixtures: one local Ray for the session, a scratch project folder per test, a private
PostgreSQL server. Helpers that are not fixtures are in ``tests/helpers.py``."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.helpers import free_port, isolate

# Nothing in the suite downloads: timm's hub is offline and its cache an empty folder of the
# session's (set before the session's Ray starts, so its workers inherit it). Pretrained
# weights come from files the tests write (``pretrained_file``).
HF_HOME = tempfile.mkdtemp(prefix="cephtune-tests-hf-")
atexit.register(shutil.rmtree, HF_HOME, True)
os.environ.update({"HF_HUB_OFFLINE": "1", "HF_HOME": HF_HOME})
# torch.compile's kernels (``compile: true``) are cached in a folder of the session's too, not
# in the machine's /tmp/torchinductor_$USER: every run compiles from cold, as CI's does.
INDUCTOR_CACHE = tempfile.mkdtemp(prefix="cephtune-tests-inductor-")
atexit.register(shutil.rmtree, INDUCTOR_CACHE, True)
os.environ["TORCHINDUCTOR_CACHE_DIR"] = INDUCTOR_CACHE
# Its kernels compile in the compiling process, not a pool of workers each importing torch: the
# suite keeps both cores busy already (84 CPU-s for test_compile's module instead of 93).
os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")


@pytest.fixture(scope="session")
def ray_cluster():
    import ray

    # No GPU on any machine: the GPU refusals tested with it hold on a GPU box too (the GPU
    # paths run in tests/trainables/test_gpu.py, each with its own Ray).
    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, logging_level="WARNING")
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def postgres():
    """A private PostgreSQL server for the session (tests/postgres.py), or a skip that says
    why it cannot run here."""
    from tests.postgres import PostgresServer, why_unavailable

    reason = why_unavailable()
    if reason:
        pytest.skip(reason)
    server = PostgresServer(free_port())
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def hosts():
    """Two hosts on a private subnet, each its own network namespace, /tmp, home and cache,
    with a shared folder (tests/netns.py); removed after the module, or a skip that says why
    they cannot be made here."""
    from tests.netns import Hosts, Unavailable

    try:
        made = Hosts(2)
    except Unavailable as e:
        pytest.skip(f"cannot make hosts on this machine: {e}")
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def ray_hosts(hosts) -> str:
    """A Ray head on ``hosts[0]`` and a worker on ``hosts[1]``, one CPU each; the head's
    address. Every process of the hosts is killed after the test."""
    from tests.cluster import start_ray

    try:
        yield start_ray(hosts)
    finally:
        hosts.kill_all()


@pytest.fixture(scope="module")
def hosts_postgres(hosts):
    """A PostgreSQL server every host reaches (tests/cluster.py ``start_postgres``), or a skip
    that says why."""
    from tests.cluster import start_postgres
    from tests.netns import Unavailable

    try:
        return start_postgres(hosts)
    except Unavailable as e:
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cephtune-cache")


@pytest.fixture
def project(tmp_path, monkeypatch, cache_dir) -> Path:
    """A scratch project folder as the current directory: studies/ and mlruns/ land here."""
    return isolate(monkeypatch, tmp_path, cache_dir)


@pytest.fixture
def isolated(tmp_path, monkeypatch) -> Path:
    """A scratch folder as the current directory with its own cache, nothing else of the
    user's: a hostile-input case builds its project inside (tests/bad_input.py)."""
    isolate(monkeypatch, tmp_path, tmp_path / "cache")
    return tmp_path


@pytest.fixture(scope="session")
def bad_input_template(tmp_path_factory) -> dict:
    """A project folder another study left (tests/bad_input.py), and its stores' rows."""
    from tests.bad_input import build_template

    return build_template(tmp_path_factory)


@pytest.fixture(scope="session")
def pristine_datasets(tmp_path_factory) -> dict[str, Path]:
    """A valid Aariz and a valid ISBI dataset, which a hostile case copies and breaks."""
    from tests.bad_input import build_pristine

    return build_pristine(tmp_path_factory)


# The suite's tiers (pyproject.toml's markers); excluding all four is the quick loop (the README
# says how). A test that starts a Ray or a server is in one, so that such a selection holds.
TIERS = ("study", "cluster", "readme", "bench")
TIER_OF_FIXTURE = {"ray_cluster": "study", "postgres": "cluster"}


# ``make test`` runs the suite on two workers, a module to a worker (``--dist loadscope``, in
# collection order): the longest modules first, so that the last one to start is short. Measured
# on 2 cores, 2026-12-07: the README 9.7 min, test_hosts 2.4, the benchmarks' smoke runs 2.2.
LONGEST_FIRST = (
    "tests/test_readme.py",
    "tests/search/run/test_hosts.py",
    "tests/benchmarks/test_benchmarks.py",
    "tests/search/run/test_driver_faults.py",
    "tests/search/run/test_study_semantics.py",
    "tests/search/run/test_trial_faults.py",
    "tests/test_netns.py",
    "tests/search/app/test_promote.py",
    "tests/search/run/test_study_e2e.py",
)


def pytest_collection_modifyitems(config, items):
    def rank(item: pytest.Item) -> int:
        module = item.nodeid.split("::", 1)[0]
        return LONGEST_FIRST.index(module) if module in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: a module's tests keep their order
    for item in items:
        tiers = [t for t in TIERS if item.get_closest_marker(t)]
        for fixture, tier in TIER_OF_FIXTURE.items():
            if fixture in item.fixturenames and not tiers:
                raise pytest.UsageError(
                    f"{item.nodeid} uses the {fixture} fixture: mark it {tier} (or another tier)"
                )
