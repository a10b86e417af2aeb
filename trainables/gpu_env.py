"""The GPUs of this machine as the driver sees them, and what a GPU trial needs from Ray
(torch-free).

Each trial must see only the GPU Ray gave it: ``trainables.device`` takes ``cuda`` and index 0 to
be that GPU, which holds while Ray sets ``CUDA_VISIBLE_DEVICES`` per actor. ``nvidia_gpus`` reads
``nvidia-smi`` (for ``init``, and to say why torch cannot use a GPU the driver lists: an old
driver for torch's CUDA, or a card older than its kernels).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass

from trainables.errors import ConfigError

# With it set, Ray leaves CUDA_VISIBLE_DEVICES alone, so every trial would see all GPUs and train
# on (and cap) GPU 0, which is what "cuda" and index 0 mean here.
NOSET = "RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES"


def check_gpu_isolation(environ: Mapping[str, str], where: str) -> None:
    """Refuse GPU trials under ``NOSET``: each trial must see only the GPU Ray gave it."""
    value = environ.get(NOSET, "")
    if value not in ("", "0"):
        raise ConfigError(
            f"{where}: {NOSET}={value} is set, so Ray would not give each trial its own GPU "
            "and every trial would train on GPU 0; unset it to run GPU trials"
        )


# The oldest driver each CUDA major version runs on (NVIDIA's CUDA compatibility tables: CUDA
# 13.x needs 580, 12.x 525, 11.x 450), for the line that says why torch cannot use a GPU.
MIN_DRIVER = {13: 580, 12: 525, 11: 450}
QUERY = "--query-gpu=name,memory.total,driver_version,compute_cap"
CU126 = "pip install torch --index-url https://download.pytorch.org/whl/cu126"


@dataclass(frozen=True)
class Gpu:
    """One GPU as ``nvidia-smi`` lists it."""

    name: str
    memory_gb: float
    driver: str
    capability: tuple[int, int]


def nvidia_gpus() -> tuple[Gpu, ...]:
    """The GPUs ``nvidia-smi`` lists (respecting ``CUDA_VISIBLE_DEVICES`` is torch's job, not
    its); none without ``nvidia-smi`` or when it fails."""
    if not shutil.which("nvidia-smi"):
        return ()
    try:
        done = subprocess.run(
            ["nvidia-smi", QUERY, "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return ()
    if done.returncode != 0:
        return ()
    gpus = []
    for line in done.stdout.splitlines():
        parts = [p.strip() for p in line.split(",")]
        try:
            name, memory, driver, cap = parts
            major, minor = (int(v) for v in cap.split("."))
            gpus.append(Gpu(name, float(memory) / 1024, driver, (major, minor)))
        except ValueError:
            continue
    return tuple(gpus)


def unusable_reason(
    gpus: tuple[Gpu, ...], torch_version: str, cuda_version: str | None, arch_list: list[str]
) -> str:
    """Why a torch build (``torch.version.cuda``, ``torch.cuda.get_arch_list()``) cannot use
    the listed ``gpus``, and which build would: one line."""
    gpu = gpus[0]
    seen = (
        f"nvidia-smi lists {len(gpus)} GPU(s) ({gpu.name}, driver {gpu.driver}, compute "
        f"capability {gpu.capability[0]}.{gpu.capability[1]}) but torch {torch_version} cannot "
        "use them"
    )
    if cuda_version is None:
        return f"{seen}: it is built without CUDA; install a CUDA build of torch"
    major = int(cuda_version.split(".")[0])
    driver_major = int(gpu.driver.split(".")[0]) if gpu.driver.split(".")[0].isdigit() else 0
    needs = MIN_DRIVER.get(major)
    if needs and driver_major < needs:
        fix = (
            f"install torch built for CUDA 12.6 ({CU126})"
            if major > 12 and driver_major >= MIN_DRIVER[12]
            else f"update the driver to {needs} or later"
        )
        return f"{seen}: its CUDA {cuda_version} needs driver {needs} or later; {fix}"
    arches = [a for a in arch_list if a.startswith("sm_")]
    cap = gpu.capability[0] * 10 + gpu.capability[1]
    if arches and cap < min(int(a[3:]) for a in arches):
        return (
            f"{seen}: it has kernels for {', '.join(arches)} only; install torch built for "
            f"CUDA 12.6 ({CU126}), which still has kernels for older GPUs"
        )
    return f"{seen} (torch.cuda.is_available() is False; check the driver with nvidia-smi)"
