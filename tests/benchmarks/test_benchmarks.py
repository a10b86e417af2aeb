"""Every benchmark runs in its smallest mode and ends with its RATIO line (or SKIP): the figures
it promises, each in its range.

That the scripts keep working and measure what they name is checked here; the values of
timings are never asserted.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys

import pytest
import torch

from tests.helpers import REPO, stand_in_nvidia_smi

pytestmark = pytest.mark.bench
BENCHMARKS = [
    "orchestration",
    "data_pipeline",
    "trainable_efficiency",
    "search_efficiency",
    "search_tabular",
    "gpu",
    "frontier",
    "memory_estimate",
    "compile",
    "loader_vs_step",
]
FIGURE = re.compile(r"^([a-z0-9_]+)=(\S+)$")
SEARCH = {"epochs_to_match_frac", "best_mre_ratio", "vs_ray_optunasearch", "vs_optuna_native"}
SEARCH |= {"seeds", "wilcoxon_p", "seeds_met_frac"}
# Each benchmark's figures; ratios and times are > 0, these few have ranges of their own.
FIGURES = {
    "orchestration": {"overhead_s_per_trial", "startup_s", "a_over_b"},
    "data_pipeline": {
        "worker_aug_512",
        "worker_aug_1024",
        "cpu_epoch_host_vs_device",
        "cache_speedup",
        "loader_speedup",
        "data_wait_frac",
        "workers_speedup",
        "verify_vs_checksums",
    },
    "trainable_efficiency": {"trainable_vs_minimal"},
    "search_efficiency": SEARCH,
    "search_tabular": SEARCH | {"wilcoxon_p_vs_ray", "wilcoxon_p_vs_optuna"},
    "gpu": {"amp_vs_fp32", "quarter_gpu_throughput_vs_whole", "quarter_trials_per_s_vs_whole"},
    "memory_estimate": {"worst_error", "worst_error_returned", "worst_error_allocator", "cases"},
    "compile": {"compiled_vs_eager", "compile_s"},
    # its smoke sizes: 256 and 512 px on a GPU, 64 px on a CPU
    "loader_vs_step": {f"loader_vs_step_{px}" for px in (256, 512)}
    if torch.cuda.is_available()
    else {"loader_vs_step_64"},
    "frontier": {
        "stride2_vs_stride4",
        "tta_vs_plain",
        "ensemble_vs_best_single",
        "progressive_time_to_match",
    },
}
FRACTIONS = {"data_wait_frac", "seeds_met_frac", "wilcoxon_p", "wilcoxon_p_vs_ray"}
FRACTIONS |= {"wilcoxon_p_vs_optuna"}
SMOKE_SEEDS = {"search_efficiency": 1, "search_tabular": 2}  # --smoke's seeds: 0, and 0,1


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
        # Only the GPU benchmarks may skip, with a reason (compile's default device is CUDA).
        assert name in ("gpu", "compile") and rest, last
        return
    assert kind == "RATIO", last
    matches = [FIGURE.match(part) for part in rest.split()]
    assert matches and all(matches), last
    figures = {m.group(1): float(m.group(2)) for m in matches}
    assert set(figures) == FIGURES[name], last
    assert all(math.isfinite(v) for v in figures.values()), last
    for key, value in figures.items():
        if key in FRACTIONS:
            assert 0 <= value <= 1, (key, last)
        elif key == "seeds":
            assert value == SMOKE_SEEDS[name], last
        else:  # a ratio or a time: an epochs_to_match_frac of 0 would say A matched for free
            assert value > 0, (key, last)
    if name == "memory_estimate":  # issue 25's target, on the tensors' bytes the CPU allocator held
        assert figures["worst_error_allocator"] <= 0.25, last


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


def test_gpu_check_fails_when_the_driver_lists_a_gpu_torch_cannot_use(tmp_path):
    """A V100 on driver 535 beside torch built for CUDA 13 (driver 580, sm_75 and later)."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is here: `make gpu-check` runs the real thing")
    env = {**os.environ, "PATH": f"{stand_in_nvidia_smi(tmp_path)}:{os.environ['PATH']}"}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_check.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout[-3000:]
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("FAILED nvidia-smi lists 1 GPU(s) (Tesla V100-SXM2-16GB, driver 535")
    assert f"torch {torch.__version__} cannot use them" in last


def test_a_gpu_check_part_shows_its_figures_as_they_come_and_keeps_them_when_cut(capsys):
    """A part over its cap is killed with what it started, and every line it printed before
    is already on the terminal and in its output (a machine's limit may cut the run)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    script = "import time\nprint('RATIO first=1', flush=True)\ntime.sleep(60)\nprint('late')"
    caps = {**gpu_check.CAPS_S, "tests": 3}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(gpu_check, "CAPS_S", caps)
        ok, out, seconds = gpu_check.run_part(
            "tests", [sys.executable, "-c", script], deadline=math.inf
        )
    assert not ok and seconds < 30
    assert "RATIO first=1" in out and "late" not in out and "stopped after its 3 s cap" in out
    assert "  | RATIO first=1" in capsys.readouterr().out


def test_the_tables_signal_is_the_figures_the_readme_quotes():
    """``search_tabular.py --signal-only`` on the shipped tables: the Spearman rho per epoch the
    README quotes (a table's rows are fixed, so these are exact to the digits quoted)."""
    readme = (REPO / "README.md").read_text()
    quotes = {"curves-quickstart.json": (1, 2, 3, 4, 5), "curves-small.json": (1, 3, 5)}
    for table, epochs in quotes.items():
        done = subprocess.run(
            [sys.executable, str(REPO / "benchmarks" / "search_tabular.py"), "--signal-only"]
            + ["--table", str(REPO / "benchmarks" / "tables" / table)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        last = done.stdout.strip().splitlines()[-1]
        rho = {
            int(k[len("rho_e") :]): float(v) for k, v in (p.split("=") for p in last.split()[1:])
        }
        quoted = " / ".join(f"{rho[e]:.2f}" for e in epochs)
        assert quoted in " ".join(readme.split()), (table, quoted)
