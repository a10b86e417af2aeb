"""What a training run measures and may use: its memory cap (``cpu_memory_gb``) and its
steady-state throughput and data wait."""

from __future__ import annotations

import json
import mmap
import re
import resource
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from tests.helpers import REPO
from tests.trainables.test_train import config
from trainables.data.synth import SynthSpec, write_dataset
from trainables.losses import create_loss
from trainables.memory import memory_limit
from trainables.run import build
from trainables.train import train_epoch, train_step


@pytest.fixture(scope="module")
def sixteen(tmp_path_factory):
    """A dataset whose train split is one batch of 16."""
    root = tmp_path_factory.mktemp("sixteen") / "synth"
    return str(write_dataset(SynthSpec(n=24, width=80, height=100, seed=5), root))


# The cap counts the growth of the process's private memory (RLIMIT_DATA). Heap that an earlier
# test freed but the allocator kept counts as held, not as growth, so what fits under a cap
# depends on the process's past: each capped run here is a fresh interpreter, whose need is
# what was measured (16 x 128 px ~0.33 GB, 4 x 128 px < 0.1 GB, 1 x 512 px ~0.36 GB).
CAPPED_RUN = """
import json, sys
from tests.trainables.test_train import collect, config
from trainables.memory import OutOfMemory
from trainables.run import build
from pathlib import Path
data, tmp, overrides = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])
try:
    run, seen = collect(config(data, tmp, **overrides))
except OutOfMemory as err:
    print(json.dumps({"error": str(err), "reason": err.reason}))
    sys.exit()
resumed = build(config(data, tmp, **{**overrides, "epochs": 3, "cpu_memory_gb": None}), "cpu")
saved = seen[-1][1]()  # the run's checkpoint as it ended
resumed.restore(saved)
print(json.dumps({
    "epochs": [[m["micro_batch"], m["grad_accumulation"], m["train_loss"], m["mre_mm"]]
               for m, _ in seen],
    "saved": saved["micro_batch"],
    "resumed": [resumed.micro_batch, resumed.accumulation],
}))
"""


def capped_run(data: str, tmp_path, **overrides) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", CAPPED_RUN, data, str(tmp_path), json.dumps(overrides)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_batch_the_cpu_cannot_allocate_even_one_sample_at_a_time_is_oom(data_dir, tmp_path):
    """A real allocation failure: one 512 px sample through hrnet_w18_small needs more than the
    0.25 GB the run may add (``cpu_memory_gb``), so halving the micro-batch down to 1 does not
    help."""
    found = capped_run(data_dir, tmp_path, image_size=512, batch_size=16, cpu_memory_gb=0.25)
    assert found["reason"] == "oom"
    assert re.match(r"oom: epoch 1, micro-batch 1: .*(allocate|bad_alloc)", found["error"])


def test_the_cap_and_onednn_are_restored_after_a_run_that_hit_the_cap(data_dir, tmp_path):
    before = resource.getrlimit(resource.RLIMIT_DATA), torch.backends.mkldnn.enabled
    with pytest.raises(RuntimeError, match="allocate"):
        with memory_limit(0.05):
            torch.ones(1 << 28)  # 1 GiB of float32
    assert (resource.getrlimit(resource.RLIMIT_DATA), torch.backends.mkldnn.enabled) == before


def test_a_step_out_of_memory_goes_on_with_half_the_micro_batch(sixteen, tmp_path):
    """16 x 128 px does not fit the 0.2 GB the run may add, 4 x 128 px does: the step is
    retried with half the micro-batch until it fits (in the first epoch, in a fresh process),
    the batch of 16 still one optimiser step (the gradient accumulated over its parts). Every
    epoch reports the micro-batch, the checkpoint keeps it, and a resumed run starts from it."""
    found = capped_run(sixteen, tmp_path, image_size=128, batch_size=16, cpu_memory_gb=0.2)
    micros = [epoch[0] for epoch in found["epochs"]]
    # Kept, or halved again in a later epoch (its validation or a fragmented heap may need
    # more): the run goes on with the smaller one.
    assert micros[0] in (2, 4, 8) and micros == sorted(micros, reverse=True)
    for micro, accumulation, loss, mre in found["epochs"]:
        assert accumulation == 16 // micro
        assert np.isfinite(loss) and np.isfinite(mre)
    assert found["saved"] == micros[-1]
    assert found["resumed"] == [micros[-1], 16 // micros[-1]]


def test_the_parts_of_a_batch_make_the_batch_s_step(sixteen, tmp_path):
    """The same start, one step on 16 samples: in one pass, or in parts of 4 and of 3 (a short
    last part) with the gradient accumulated, gives the same gradient (BatchNorm frozen: in
    training mode its statistics are per pass, which is the one difference a micro-batch
    makes)."""
    grads = []
    for micro in (16, 4, 3):
        run = build(config(sixteen, tmp_path, image_size=64, batch_size=16), "cpu")
        run.model.eval()
        run.micro_batch = micro
        images, coords, _, draws = next(iter(run.loader))
        images = run.train.images(images, draws)
        loss = train_step(run, create_loss(run.cfg), images, coords)
        grads.append(([p.grad.clone() for p in run.model.parameters()], float(loss)))
    (first, loss), rest = grads[0], grads[1:]
    for params, other in rest:
        assert other == pytest.approx(loss, rel=1e-5)
        for a, b in zip(first, params, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-7)


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
