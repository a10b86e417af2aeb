"""What a training run measures and may use: its memory cap (``cpu_memory_gb``) and its
steady-state throughput and data wait."""

from __future__ import annotations

import mmap
import resource
import time

import pytest
import torch

from tests.trainables.test_train import collect, config
from trainables.memory import OutOfMemory, memory_limit
from trainables.run import build
from trainables.train import train_epoch


def test_a_batch_the_cpu_cannot_allocate_is_oom(data_dir, tmp_path):
    """A real allocation failure: 16 x 512 px through hrnet_w18_small needs far more than the
    0.25 GB the run may add (``cpu_memory_gb``); the limit is lifted afterwards."""
    before = resource.getrlimit(resource.RLIMIT_DATA)
    cfg = config(data_dir, tmp_path, image_size=512, batch_size=16, cpu_memory_gb=0.25)
    with pytest.raises(OutOfMemory, match=r"^oom: epoch 1: .*allocate") as caught:
        collect(cfg)
    assert caught.value.reason == "oom"
    assert resource.getrlimit(resource.RLIMIT_DATA) == before


def test_the_memory_cap_counts_memory_not_address_space_a_cuda_context_reserves():
    """What a CUDA context does on its first use: reserve address space far beyond the cap
    (inaccessible ``PROT_NONE`` ranges) and map pinned buffers shared. Neither is host memory
    the run uses, so neither may fail it; 1 GiB it writes does."""
    with memory_limit(0.25):
        reserved = mmap.mmap(
            -1, 8 << 30, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, prot=0
        )  # PROT_NONE; fmt: skip
        shared = mmap.mmap(-1, 1 << 30, flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
        reserved.close(), shared.close()
        with pytest.raises(RuntimeError, match="allocate"):
            torch.ones(1 << 28)  # 1 GiB of float32


class SlowToStart:
    """A loader whose first batch comes late, as after an iterator reset that starts workers."""

    def __init__(self, loader, delay_s: float) -> None:
        self.loader, self.delay_s = loader, delay_s

    def __iter__(self):
        time.sleep(self.delay_s)
        yield from self.loader

    def __len__(self) -> int:
        return len(self.loader)


def test_throughput_and_data_wait_leave_the_start_of_an_epoch_out(data_dir, tmp_path):
    """The figures are steady-state: 3 s of start-up before the first batch is neither data
    wait nor time the samples took (it was most of the epoch when it counted)."""
    run = build(config(data_dir, tmp_path, batch_size=2, epochs=1, warmup_epochs=0))
    run.epoch = 1
    run.loader = SlowToStart(run.loader, 3.0)
    started = time.perf_counter()
    metrics = train_epoch(run)
    whole = time.perf_counter() - started
    assert len(run.loader) >= 3  # steady steps to measure
    assert metrics["data_wait_frac"] < 0.5
    steady = (len(run.train) - 2) / metrics["samples_per_s"]  # seconds after the first step
    assert steady < whole - 3.0
