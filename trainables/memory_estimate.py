"""How much memory a configuration's training takes, counted before it runs, allocating nothing.

The model is built on PyTorch's ``meta`` device (tensors with shapes and dtypes, no storage),
and one training micro-batch goes forward through it and through the loss under
``torch.autograd.graph.saved_tensors_hooks``: every tensor autograd keeps for the backward pass
is seen once, by its storage, so views and a tensor saved by two operations count once, and
the weights a layer saves (already counted as parameters) are left out. With the parameters,
their gradients and AdamW's two moments, that gives the peak of a training step
(``MemoryEstimate.peak``).

What it leaves out, and so what the figure is not: the CUDA context and cuDNN's workspaces on
a GPU, the allocator's caching and fragmentation, the activation gradients alive during the
backward pass (each a transient the size of one saved tensor), and the data loader's batches.
Under AMP (fp16 or bf16) convolution and matmul outputs are stored in half precision, which the
meta device cannot run; the estimate then halves the floating activations, an approximation
(batch norm keeps float32 statistics). ``benchmarks/memory_estimate.py`` measures it against
the real peak of one CPU step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from trainables.config import TrainConfig
from trainables.losses import create_loss
from trainables.models import create_model

ADAMW_MOMENTS = 2  # exp_avg and exp_avg_sq, each the size of the parameters (float32)
HALF = ("fp16", "bf16")


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes of one training step of a configuration, by kind."""

    parameters: int
    gradients: int
    optimizer: int
    activations: int  # what autograd saves for the backward pass of one micro-batch

    @property
    def peak(self) -> int:
        """The most a steady training step holds: the parameters and AdamW's moments always,
        and then either the saved activations (when the backward pass starts, the last
        step's gradients freed) or the gradients (when the optimiser steps, the activations
        freed), whichever is larger."""
        return self.parameters + self.optimizer + max(self.activations, self.gradients)

    def gib(self) -> float:
        return self.peak / 2**30


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
    with torch.device("meta"):
        model = create_model(shape, num_landmarks)
        params = {p.untyped_storage()._cdata: p.nbytes for p in model.parameters()}
        images = torch.empty(batch, 1, size.height, size.width)
        saved: dict[int, int] = {}

        def keep(tensor: torch.Tensor) -> torch.Tensor:
            storage = tensor.untyped_storage()
            key = storage._cdata  # the storage itself: a view or a second save counts once
            if key not in params:
                nbytes = storage.nbytes()
                if half and tensor.is_floating_point():
                    nbytes //= 2
                saved[key] = max(saved.get(key, 0), nbytes)
            return tensor

        loss_fn = create_loss(cfg)
        with torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor):
            outputs = model(images)
            outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
            for out in outputs:
                loss_fn(out, torch.empty_like(out))
    weights = sum(params.values())
    return MemoryEstimate(weights, weights, ADAMW_MOMENTS * weights, sum(saved.values()))
