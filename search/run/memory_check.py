"""Before a study starts: does each configuration its space can draw fit the memory a trial has?

A trial's memory is known in two cases: on a GPU, the smallest GPU ``nvidia-smi`` lists on the
driver's machine, times the trial's share (``resources.gpu``), less the allowances of
``trainables.memory_estimate.usable_gpu_bytes``; on CPU, the space's ``cpu_memory_gb`` cap.
Elsewhere nothing is checked: a GPU study whose driver lists no GPU (a cluster's head) says so,
a CPU study without a cap has the machine's memory. Each model and backbone is estimated once
(``memory_estimate.fit``, on the meta device), at its largest image size, and scaled to the
others by their pixels.

A configuration that does not fit one sample refuses the start: no trial of it could run, and
each would spend its budget failing. One whose largest batch does not fit is started: its
trials train in micro-batches (``trainables.train``), and the start prints at which batch that
begins, so the slower trials are expected, not a surprise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from search.studyfiles.space_file import memory_configs
from search.studyfiles.study import StudySpec
from trainables.config import DEFAULTS, TrainConfig
from trainables.data.formats import load_split
from trainables.errors import ConfigError
from trainables.gpu_env import nvidia_gpus
from trainables.memory_estimate import HALF, MemoryFit, fit, usable_gpu_bytes

GIB = 2**30


def budget(spec: StudySpec, gpu_share: float) -> tuple[int | None, str]:
    """The bytes a trial may use, and in words where that comes from (None: not known here)."""
    if gpu_share:
        gpus = nvidia_gpus()
        if not gpus:
            return None, "no GPU listed by nvidia-smi on this machine"
        smallest = min(g.memory_gb for g in gpus)
        share = f" x {gpu_share:g}" if gpu_share != 1 else ""
        return usable_gpu_bytes(smallest, gpu_share), f"the GPU's {smallest:g} GB{share}"
    cap = spec.space.fixed.get("cpu_memory_gb")
    if cap is None:
        return None, "a CPU study without cpu_memory_gb"
    return int(cap * GIB), f"cpu_memory_gb {cap:g}"


def check(spec: StudySpec, gpu_share: float, data_root: Path) -> list[str]:
    """Refuse a space with a configuration that fits no sample; the lines the start prints."""
    room, source = budget(spec, gpu_share)
    if room is None:  # a CPU study without a cap has the machine's memory: nothing to say
        return [f"Memory: not checked ({source})"] if gpu_share else []
    records = load_split(data_root, "train", spec.dataset.annotator, spec.dataset.loader_format)
    landmarks = len(records[0].landmarks)
    lines, fits = [], {}
    configs = memory_configs(spec.space)
    by_size = sorted(configs, key=lambda v: -_pixels(_config(v, spec)))  # each fit at its largest
    for values in by_size:
        cfg = _config(values, spec)
        half = cfg.precision in HALF or (cfg.precision == "auto" and gpu_share > 0)
        key = (cfg.model, cfg.backbone, cfg.heatmap_stride, cfg.hourglass_stacks, half)
        if key not in fits:
            fits[key] = fit(cfg, landmarks, half)
        line: MemoryFit = fits[key]
        pixels = _pixels(cfg)
        largest = line.largest_batch(room, pixels)
        what = f"{cfg.model} {cfg.backbone} at {values['image_size']} px"
        finer = cfg.heatmap_stride != DEFAULTS["heatmap_stride"]
        what += f", heatmap stride {cfg.heatmap_stride}" if finer else ""
        if largest < 1:
            need = line.peak(1, pixels) / GIB
            raise ConfigError(
                f"{spec.space.path}: params.image_size: {what} needs about {need:.1f} GB for one "
                f"sample (training-memory estimate), more than a trial has ({source}); drop "
                f"that size or {'backbone or stride' if finer else 'backbone'} from the space"
            )
        if largest < cfg.batch_size:
            lines.append(
                f"Memory: {what} fits a batch of {largest} in {source} (estimated); its "
                f"trials with larger batches (up to {cfg.batch_size}) train in micro-batches"
            )
    return lines or [f"Memory: every configuration fits {source} (estimated)"]


def _config(values: dict[str, Any], spec: StudySpec) -> TrainConfig:
    """A trial's settings as far as memory goes (no weights file is read on the meta device)."""
    shape = {
        "data_dir": "",
        "epochs": spec.max_epochs,
        "pretrained": False,
        "pretrained_file": None,
    }
    return TrainConfig.from_dict({**values, **shape})


def _pixels(cfg: TrainConfig) -> int:
    size = cfg.size_at(cfg.epochs)
    return size.width * size.height
