"""Where a Ray trial trains, and how it shares a GPU with the trials packed next to it.

A trial trains on the resources it was given, never on what its worker happens to see: since
Ray 2.60 an actor given no GPU still sees every GPU of its node (``CUDA_VISIBLE_DEVICES`` is
left alone unless ``RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO`` is set, ray-project/ray#54868), which
the driver sets for a local Ray but a cluster's workers may not have. Ray's GPU limits are
logical: a trial given a fraction of a GPU is held to that fraction of its memory here, so one
large trial fails alone instead of taking its neighbours with it.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch

from trainables.errors import ConfigError
from trainables.gpu_env import check_gpu_isolation, nvidia_gpus, unusable_reason

# Memory a CUDA process holds outside PyTorch's caching allocator (context, kernels, cuBLAS and
# cuDNN handles), left out of a fractional trial's cap so that the packed trials' caps plus
# their contexts fit the card. Reasoned from typical context sizes, not measured here.
CONTEXT_BYTES = 1 << 30


def trial_device(gpu_share: float, gpu_ids: Sequence[str | int], cuda_available: bool) -> str:
    """``cuda`` or ``cpu`` for a trial given ``gpu_share`` GPUs, Ray's ``gpu_ids`` for its actor
    and whether its worker can use CUDA. A trial given no GPU trains on CPU even where CUDA is
    visible; a trial given a GPU it cannot use fails with the reason, rather than holding the
    GPU while it trains on CPU in fp32."""
    if gpu_share <= 0:
        return "cpu"
    check_gpu_isolation(os.environ, "the trial's worker")
    if not gpu_ids or not cuda_available:
        ids = ", ".join(map(str, gpu_ids)) or "none"
        raise ConfigError(
            f"the trial was given {gpu_share:g} GPU (Ray GPU ids: {ids}) but CUDA is not "
            f"available in its worker ({cuda_detail()})"
        )
    return "cuda"


def unusable_gpus() -> str | None:
    """Why torch cannot use the GPUs ``nvidia-smi`` lists (one line with the fix), or None when
    it can, when none is listed, or when ``CUDA_VISIBLE_DEVICES`` is set empty (CPU on purpose)."""
    if torch.cuda.is_available() or os.environ.get("CUDA_VISIBLE_DEVICES") == "":
        return None
    gpus = nvidia_gpus()
    if not gpus:
        return None
    return unusable_reason(gpus, torch.__version__, torch.version.cuda, torch.cuda.get_arch_list())


def cuda_detail() -> str:
    """Why this process has no usable CUDA, in a few words."""
    reason = unusable_gpus()
    if reason:
        return reason
    if torch.version.cuda is None:
        return f"torch {torch.__version__} is built without CUDA"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return (
        f"torch {torch.__version__} sees {torch.cuda.device_count()} CUDA devices, "
        f"CUDA_VISIBLE_DEVICES={visible!r}"
    )


def memory_fraction(gpu_share: float, total_bytes: int) -> float | None:
    """The cap on a trial's share of GPU memory for ``set_per_process_memory_fraction``: its
    share less the CUDA context that lives outside the cap, never below half its share; None
    (no cap) for a whole GPU."""
    if gpu_share >= 1:
        return None
    return max(gpu_share / 2, gpu_share - CONTEXT_BYTES / total_bytes)


@contextmanager
def gpu_share(device: str, gpu_share: float) -> Iterator[None]:
    """Run a trial on its share of the GPU: the memory a previous trial of this reused actor
    cached is released first (and again after the trial), and a fractional share is a hard
    cap on the caching allocator while the trial runs. Nothing happens on CPU."""
    if device != "cuda":
        yield
        return
    gc.collect()  # the previous trial's model and optimiser may sit in reference cycles
    torch.cuda.empty_cache()
    fraction = memory_fraction(gpu_share, torch.cuda.get_device_properties(0).total_memory)
    if fraction is not None:
        torch.cuda.set_per_process_memory_fraction(fraction, 0)
    try:
        yield
    finally:
        gc.collect()
        torch.cuda.empty_cache()
        if fraction is not None:
            torch.cuda.set_per_process_memory_fraction(1.0, 0)
