"""Every benchmark runs in its smallest mode and ends with a parseable RATIO (or SKIP) line.

Only that the scripts keep working is checked here: timings are never asserted.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys

import pytest

from tests.helpers import REPO

pytestmark = pytest.mark.slow
BENCHMARKS = [
    "orchestration",
    "data_pipeline",
    "trainable_efficiency",
    "search_efficiency",
    "search_tabular",
    "gpu",
    "frontier",
]
FIGURE = re.compile(r"^([a-z0-9_]+)=(\S+)$")


@pytest.mark.parametrize("name", BENCHMARKS)
def test_benchmark_smoke_mode_prints_a_parseable_last_line(name, tmp_path):
    env = {**os.environ, "CEPHTUNE_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / f"{name}.py"), "--smoke"]
        + ["--workdir", str(tmp_path / "work")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    last = done.stdout.strip().splitlines()[-1]
    kind, _, rest = last.partition(" ")
    assert {p.name for p in tmp_path.iterdir()} <= {"work", "cache"}  # nothing outside its folders
    if kind == "SKIP":
        assert name == "gpu" and rest, last  # only the GPU benchmark may skip, with a reason
        return
    assert kind == "RATIO", last
    figures = [FIGURE.match(part) for part in rest.split()]
    assert figures and all(figures), last
    assert all(math.isfinite(float(m.group(2))) for m in figures), last


def test_gpu_check_says_why_it_does_nothing_without_cuda(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is here: `make gpu-check` runs the real thing")
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_check.py")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == (
        "SKIP CUDA is not available on this machine: make gpu-check needs a GPU"
    )
