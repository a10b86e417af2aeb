"""What every benchmark shares: the machine line, interleaved timing, the RATIO line, data.

Machines here are shared and noisy, so a benchmark never reports an absolute time alone: it times
the two things it compares in the same run, alternating them (a, b, a, b, ...) so that a burst of
load hits both, and reports the median of each and their ratio. The last line a benchmark prints
is ``RATIO name=value [name=value ...]`` (primary figure first), or ``SKIP reason`` when it
cannot run on this machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from trainables.data.synth import SynthSpec, write_dataset


def parser(description: str) -> argparse.ArgumentParser:
    """The shared command line: ``--smoke`` is the smallest mode, which the test suite runs."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument(
        "--smoke", action="store_true", help="smallest mode: checks the benchmark runs, not speed"
    )
    p.add_argument("--repeats", type=int, default=None, help="interleaved repeats per variant")
    p.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a temp)")
    return p


def machine() -> str:
    """One line naming the machine: CPU, cores, GPU, library versions and the date."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{cpu}, {len(os.sched_getaffinity(0))} cores, {gpu}; python {platform.python_version()}, "
        f"torch {torch.__version__}; {dt.date.today().isoformat()}"
    )


def header(title: str) -> None:
    print(f"# {title}")
    print(f"machine: {machine()}")
    sys.stdout.flush()


def interleaved(variants: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Run each variant ``repeats`` times, alternating; each call returns its own measurement."""
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            samples[name].append(fn())
    return samples


def timed(fn: Callable[[], object]) -> Callable[[], float]:
    """Wrap ``fn`` so that calling it returns its wall time in seconds."""

    def run() -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    return run


def median(values: list[float]) -> float:
    return statistics.median(values)


def spread(values: list[float]) -> str:
    """``median [min-max]`` of a sample, for the printed table."""
    return f"{median(values):.3f} [{min(values):.3f}-{max(values):.3f}]"


def ratio_line(**figures: float) -> str:
    """The parseable last line; the first figure is the benchmark's headline."""
    parts = " ".join(f"{name}={value:.4g}" for name, value in figures.items())
    return f"RATIO {parts}"


def finish(**figures: float) -> None:
    print(ratio_line(**figures), flush=True)


def skip(reason: str) -> None:
    print(f"SKIP {reason}", flush=True)


def synthetic(root: Path, n: int, width: int, height: int, seed: int = 0) -> Path:
    """A synthetic Aariz-layout dataset under ``root`` (reused when it is already there)."""
    spec = SynthSpec(n=n, width=width, height=height, seed=seed)
    folder = Path(root) / f"synthetic-{spec.key()}"
    if not folder.is_dir():
        write_dataset(spec, folder)
    return folder
