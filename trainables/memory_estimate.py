"""How much memory a configuration's training takes, counted before it runs, allocating nothing.

The model is built on PyTorch's ``meta`` device (tensors with shapes and dtypes, no storage)
and a training step runs on it as every step after the first does: AdamW's moments made (by a
step on zero gradients), then forward through the model and the loss, backward, AdamW's step.
A dispatch mode sees every tensor each operation makes and when its storage dies, so the peak
of the bytes alive at once is that of the real step's tensors: the parameters, the activations
autograd saves, the activation gradients alive during the backward pass, the gradients, the
moments and the optimiser's temporaries. Autograd's saved-tensor hooks name the saved
activations apart (each storage once, the weights a layer saves left out), for the breakdown.

What it leaves out, and so what the figure is not: the CUDA context and cuDNN's workspaces on
a GPU, the CPU convolutions' own buffers, the allocator's caching and fragmentation, the data
loader's batches, and the process's first-use allocations. Under AMP (fp16 or bf16) the saved
activations are stored in half precision, which the meta device cannot run; the estimate then
takes half of them off the peak, an approximation (batch norm keeps float32 statistics).
``benchmarks/memory_estimate.py`` measures it against the real peak of CPU steps.

``fit`` makes a line of three estimates (one, two and four samples), which ``search.py init``
and ``start`` use to size and check batches: the count is linear in the batch and, for the
convolutional models here, in the pixels of the input, once the batch's activations outweigh
the optimiser's state. ``usable_gpu_bytes`` is what a trial may count on of a GPU once the parts
the estimate leaves out have their allowance.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from trainables.config import TrainConfig
from trainables.losses import create_loss
from trainables.models import create_model

ADAMW_MOMENTS = 2  # exp_avg and exp_avg_sq, each the size of the parameters (float32)
HALF = ("fp16", "bf16")
# What a GPU trial keeps aside from the estimate: the CUDA context and cuDNN's workspaces (a
# fixed allowance a process), and the caching allocator's fragmentation (a share). Allowances,
# not measurements: ``make gpu-check`` prints the estimate against the real peak.
RESERVED_GIB, HEADROOM = 1.0, 0.85


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes of training a configuration: its parts, and the peak of a step."""

    parameters: int
    gradients: int
    optimizer: int
    activations: int  # what autograd saves for the backward pass of one micro-batch
    peak: int  # the most bytes alive at once in a step (everything above at its time)

    def gib(self) -> float:
        return self.peak / 2**30


@dataclass(frozen=True)
class MemoryFit:
    """Training memory as a line: ``fixed`` bytes plus ``per_sample`` bytes a sample of
    ``pixels`` pixels (other sizes scale by their pixels), and never below ``floor``, the peak
    of one sample at that size. The peak is the larger of the backward pass's (which grows with
    the batch) and the optimiser step's (weights, gradients and moments, which does not): the
    line holds past the batch where the first overtakes the second, the floor below it."""

    fixed: int
    per_sample: int
    pixels: int
    floor: int

    def peak(self, batch: int, pixels: int | None = None) -> int:
        scale = (pixels or self.pixels) / self.pixels
        return max(self.floor, self.fixed + round(batch * self.per_sample * scale))

    def largest_batch(self, budget: int, pixels: int | None = None, step: int = 1) -> int:
        """The largest multiple of ``step`` samples whose peak is within ``budget`` bytes at
        ``pixels`` pixels; 0 when not even ``step`` fit."""
        if budget < self.floor:
            return 0
        scale = (pixels or self.pixels) / self.pixels
        room = (budget - self.fixed) / max(1.0, self.per_sample * scale)
        return max(0, int(room // step) * step)


def fit(cfg: TrainConfig, num_landmarks: int, half: bool | None = None) -> MemoryFit:
    """The line through the estimates of ``cfg`` at two and four samples, floored at one's (its
    last input size; fit at the largest size a space draws, where batches are tightest)."""
    one, two, four = (estimate(cfg, num_landmarks, batch, half) for batch in (1, 2, 4))
    size = cfg.size_at(cfg.epochs)
    line = (2 * two.peak - four.peak, (four.peak - two.peak) // 2)
    return MemoryFit(*line, size.width * size.height, one.peak)


def usable_gpu_bytes(memory_gb: float, share: float = 1.0) -> int:
    """What a trial holding ``share`` of a GPU of ``memory_gb`` GiB may count on (the
    allowances above taken off)."""
    return int((memory_gb * HEADROOM * share - RESERVED_GIB) * 2**30)


class _Alive(TorchDispatchMode):
    """Bytes alive: each storage an operation makes, counted until it is freed."""

    def __init__(self) -> None:
        super().__init__()
        self.alive: set[int] = set()
        self.now = self.peak = 0

    def add(self, tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        key, nbytes = storage._cdata, storage.nbytes()
        if key in self.alive:
            return
        self.alive.add(key)
        self.now += nbytes
        self.peak = max(self.peak, self.now)
        weakref.finalize(storage, self._free, key, nbytes)

    def _free(self, key: int, nbytes: int) -> None:
        self.alive.discard(key)
        self.now -= nbytes

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for value in tree_flatten(out)[0]:
            if isinstance(value, torch.Tensor):
                self.add(value)
        return out


def estimate(
    cfg: TrainConfig, num_landmarks: int, micro_batch: int | None = None, half: bool | None = None
) -> MemoryEstimate:
    """The training memory of ``cfg`` with ``num_landmarks`` landmarks, at ``micro_batch``
    samples a forward pass (default: the config's batch size) and its last (largest) input
    size; ``half``: AMP's half-precision activations (default: a ``precision`` of fp16 or
    bf16; ``auto`` is AMP on CUDA, so ask for it there)."""
    batch = micro_batch or cfg.batch_size
    half = cfg.precision in HALF if half is None else half
    # On meta nothing is read: no weights file, no download.
    shape = cfg.model_copy(update={"pretrained": False, "pretrained_file": None})
    size = cfg.size_at(cfg.epochs)
    loss_fn = create_loss(cfg)
    with torch.device("meta"):
        model = create_model(shape, num_landmarks)
        weights = sum(p.nbytes for p in model.parameters())
        activations, peak = count_steps(
            model, loss_fn, lambda: torch.empty(batch, 1, size.height, size.width)
        )
    peak -= activations // 2 if half else 0
    return MemoryEstimate(weights, weights, ADAMW_MOMENTS * weights, activations, peak)


def count_steps(
    model: torch.nn.Module, loss_fn: Callable, images: Callable[[], torch.Tensor]
) -> tuple[int, int]:
    """A training step of ``model`` on a batch from ``images`` once AdamW has its moments (as
    in every step after the first): the bytes autograd saves (each storage once, parameters
    left out) and the peak of bytes alive. The moments come from a first AdamW step on zero
    gradients, counted too (its peak is that of any step's update), so only one forward and
    backward pass is run. On the meta device this is the estimate; on real tensors, what it
    is checked against."""
    params = {p.untyped_storage()._cdata for p in model.parameters()}
    saved: dict[int, int] = {}

    def keep(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        key = storage._cdata  # the storage itself: a view or a second save counts once
        if key not in params:
            saved[key] = storage.nbytes()
        return tensor

    alive = _Alive()
    optimizer = torch.optim.AdamW(model.parameters(), foreach=False)
    with alive:
        for p in model.parameters():
            alive.add(p)
            p.grad = torch.zeros_like(p)
        optimizer.step()  # creates the moments, as a first step does
        optimizer.zero_grad(set_to_none=True)
        with torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor):
            outputs = model(images())
            outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
            loss = sum(loss_fn(out, torch.empty_like(out)) for out in outputs)
        loss.backward()
        del outputs, loss
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return sum(saved.values()), alive.peak
