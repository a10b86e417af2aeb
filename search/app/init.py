"""``search.py init DATASET_DIR``: a study and a space for the user's own dataset on this machine.

It checks the dataset as ``data check`` does, reads its format, landmarks, image size, pixel
size and splits, and the machine's GPUs (``nvidia-smi``, or ``--gpus``/``--gpu-memory``), then
writes ``studies/NAME.yaml`` and ``spaces/NAME.yaml``: the guides' ranges (HRNet, lr 1e-4 to
5e-4 log, warmup, Adaptive Wing), ImageNet weights, batch limits per image size from the
training-memory estimate (``trainables.memory_estimate``) on the GPU's memory, one trial per
GPU, and a first rung after warmup. Nothing is written when a check fails, and an existing file
is never replaced.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from search.layout import Layout
from trainables.data.check import check_dataset
from trainables.data.formats import detect, get_format
from trainables.data.letterbox import upright_size
from trainables.data.records import SPLITS
from trainables.errors import ConfigError, DataError
from trainables.gpu_env import nvidia_gpus

# The sizes a GPU study searches: those of the guides' 256 to 768 px where a batch of the
# guides' smallest (8) fits, by the memory estimate of the largest backbone, up to their 32.
GPU_SIZES, GPU_BACKBONES = (256, 512, 768), ("hrnet_w18", "hrnet_w32")
MIN_BATCH, MAX_BATCH = 8, 32
CPU_SIZES, CPU_BATCH = (128, 256), 8  # a CPU trains the small end of the guides' sizes


@dataclass(frozen=True)
class Machine:
    gpus: int
    gpu_memory_gb: float  # of the smallest GPU; 0 without one
    cpus: int
    source: str  # where the figures came from, for the printout


def read_machine(gpus: int | None, gpu_memory_gb: float | None) -> Machine:
    """The GPUs to plan for: the arguments where given, else what ``nvidia-smi`` lists."""
    cpus = os.cpu_count() or 1
    listed = nvidia_gpus() if gpus is None or gpu_memory_gb is None else ()
    found = [gpu.memory_gb for gpu in listed]
    count = len(found) if gpus is None else gpus
    memory = (min(found) if found else 0.0) if gpu_memory_gb is None else gpu_memory_gb
    if count and not memory:
        raise ConfigError(f"--gpus {count}: give --gpu-memory GB too (nvidia-smi lists no GPU)")
    source = "nvidia-smi" if found and (gpus is None or gpu_memory_gb is None) else "arguments"
    return Machine(count, memory if count else 0.0, cpus, source if count else "no GPU found")


@functools.cache
def largest_line(num_landmarks: int):
    """The memory line (``trainables.memory_estimate.fit``) of the largest backbone at the
    largest size under AMP. It depends on the landmark count alone and takes seconds (three
    counted steps), so a process counts it once."""
    from trainables.config import TrainConfig
    from trainables.memory_estimate import fit

    largest = TrainConfig(data_dir="", model="hrnet", backbone=GPU_BACKBONES[-1],
                          loss="adaptive_wing", image_size=GPU_SIZES[-1])  # fmt: skip
    return fit(largest, num_landmarks, half=True)


def batch_limits(machine: Machine, num_landmarks: int) -> dict[int, int]:
    """Image size -> the largest batch (a multiple of 2, at most 32) a trial of the largest
    backbone fits on the smallest GPU, by ``trainables.memory_estimate`` under AMP; on CPU the
    small sizes at batches up to 8. Sizes where the guides' smallest batch does not fit are
    left out; a GPU that fits no batch of 2 at the smallest size is refused."""
    if not machine.gpus:
        return dict.fromkeys(CPU_SIZES, CPU_BATCH)
    from trainables.memory_estimate import usable_gpu_bytes

    line = largest_line(num_landmarks)
    budget = usable_gpu_bytes(machine.gpu_memory_gb)
    fits = {s: min(MAX_BATCH, line.largest_batch(budget, s * s, step=2)) for s in GPU_SIZES}
    first = GPU_SIZES[0]
    if fits[first] < 2:
        need = line.peak(2, first * first) / 2**30
        raise ConfigError(
            f"--gpu-memory {machine.gpu_memory_gb:g}: HRNet-W32 at {first} px needs about "
            f"{need:.1f} GB for a batch of 2 (estimated); init plans for GPUs of more"
        )
    return {s: b for s, b in fits.items() if s == first or b >= MIN_BATCH}


def grace_period(epochs: int) -> int:
    """The first rung a sixth of the schedule after each trial's warmup."""
    return max(1, epochs // 6)


def warmup_line(epochs: int) -> str:
    """The guides' 2 to 5 warmup epochs, cut so that the first rung fits after the longest."""
    high = min(5, epochs - grace_period(epochs))
    if high < 2:
        return f"  warmup_epochs: {max(0, high)}\n"  # fixed: a schedule too short to search it
    return f"  warmup_epochs: {{type: int, low: 2, high: {high}}}\n"


def space_text(machine: Machine, epochs: int, limits: dict[int, int]) -> str:
    sizes = list(limits)
    lower = [s for s in sizes[1:] if limits[s] != limits[sizes[0]]]
    cases = "".join(f"      - {{when: {{image_size: {s}}}, high: {limits[s]}}}\n" for s in lower)
    per_size = ", ".join(f"{b} at {s} px" for s, b in limits.items())
    return (
        "# yaml-language-server: $schema=space.schema.json\n"
        "# Written by `search.py init`: the guides' ranges for HRNet from ImageNet weights.\n"
        "params:\n"
        f"  backbone: {{type: categorical, choices: [{', '.join(GPU_BACKBONES)}]}}\n"
        "  lr: {type: float, low: 1.0e-4, high: 5.0e-4, log: true}\n"
        f"  image_size: {{type: categorical, choices: [{', '.join(map(str, sizes))}]}}\n"
        + (
            f"  # Batch limits for {machine.gpu_memory_gb:g} GB a GPU, estimated for HRNet-W32 "
            f"under AMP:\n  # {per_size}.\n"
            if machine.gpus
            else "  # On CPU: small batches at the small sizes.\n"
        )
        + "  batch_size:\n"
        f"    type: int\n    low: 2\n    high: {limits[sizes[0]]}\n    step: 2\n"
        + (f"    cases:\n{cases}" if cases else "")
        + (warmup_line(epochs) if "type" in warmup_line(epochs) else "")
        + "fixed:\n  model: hrnet\n  loss: adaptive_wing\n  pretrained: true\n"
        + ("" if "type" in warmup_line(epochs) else warmup_line(epochs))
    )


def study_text(name: str, fmt: str, root: Path, machine: Machine, trials: int, epochs: int) -> str:
    cpu = max(1, min(8, machine.cpus // max(1, machine.gpus)))
    at_once = machine.gpus or max(1, machine.cpus // cpu)
    grace = grace_period(epochs)
    return (
        "# yaml-language-server: $schema=study.schema.json\n"
        f"# Written by `search.py init` for {root}.\n"
        f"name: {name}\n"
        f"dataset: {{format: {fmt}, root: {root}, annotator: mean}}\n"
        f"space: ../spaces/{name}.yaml\n"
        "metric: mre_mm\nmode: min\n"
        f"num_samples: {trials}\nmax_epochs: {epochs}\n"
        "# The first rung a sixth of the schedule after each trial's warmup.\n"
        f"asha: {{grace_period: {grace}, reduction_factor: 3}}\n"
        f"resources: {{cpu: {cpu}, gpu: {1 if machine.gpus else 0}}}\n"
        f"max_concurrent_trials: {at_once}\n"
        "max_failures: 1\nseed: 0\n"
    )


def image_size(root: Path, fmt: str) -> tuple[int, int]:
    """The largest width and height among (up to 20 of) the train images."""
    images = [path for _, path in get_format(fmt).index(root, "train").images][:20]
    sizes = []
    for path in images:
        with Image.open(path) as image:
            sizes.append(upright_size(image))
    return max(w for w, _ in sizes), max(h for _, h in sizes)


def init(layout: Layout, root: Path, fmt: str, name: str | None, machine: Machine,
         trials: int, epochs: int) -> dict:  # fmt: skip
    """Check the dataset, then write the two files; what was found, for the printout."""
    from search.studyfiles.study import NAME_RE, load_study

    root = root.resolve()
    fmt = detect(root) if fmt == "auto" else fmt
    get_format(fmt)
    name = name or root.name
    if not NAME_RE.match(name):
        raise ConfigError(f"--name {name!r}: letters, digits, '_', '.', '-' (give --name)")
    report = check_dataset(root, fmt)
    if not report.ok:
        more = f" (and {len(report.errors) - 1} more)" if len(report.errors) > 1 else ""
        raise DataError(f"{report.errors[0]}{more}; see python search.py data check {root}")
    study = layout.root / "studies" / f"{name}.yaml"
    space = layout.root / "spaces" / f"{name}.yaml"
    for path in (study, space):
        if path.exists():
            raise ConfigError(f"{path}: exists; init never replaces a file (give --name)")
    limits = batch_limits(machine, report.num_landmarks)
    texts = {
        space: space_text(machine, epochs, limits),
        study: study_text(name, fmt, root, machine, trials, epochs),
    }
    for path, text in texts.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    try:
        load_study(study)  # what start will read; a refusal here is ours, and leaves nothing
    except Exception:
        for path in texts:
            path.unlink()
        raise
    return {
        "study": study, "space": space, "fmt": fmt, "report": report, "machine": machine,
        "size": image_size(root, fmt), "limits": limits,
        "splits": {s: report.counts.get(s, 0) for s in SPLITS},
    }  # fmt: skip
