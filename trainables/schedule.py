"""Learning-rate schedule: linear warmup, then cosine annealing with warm restarts (SGDR).

Stepped per iteration, so a run of a few epochs still warms up smoothly. Cycle lengths are in
epochs (``t0_epochs``, ``t_mult``), converted to iterations with ``steps_per_epoch``.
"""

from __future__ import annotations

import math

import torch


def lr_factor(step: int, warmup_steps: int, t0_steps: int, t_mult: int, floor: float) -> float:
    """Multiplier of the base lr at iteration ``step``; ``floor`` = eta_min / base lr."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    t = step - warmup_steps
    if t_mult == 1:
        cycle, t_cur = t0_steps, t % t0_steps
    else:
        # Cycle n spans t0 * t_mult**n steps; find the one containing t.
        n = int(math.log(t / t0_steps * (t_mult - 1) + 1, t_mult))
        start = t0_steps * (t_mult**n - 1) // (t_mult - 1)
        if t < start:  # float rounding at a cycle boundary
            n -= 1
            start = t0_steps * (t_mult**n - 1) // (t_mult - 1)
        cycle, t_cur = t0_steps * t_mult**n, t - start
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t_cur / cycle))


def warmup_cosine_restarts(
    optimizer: torch.optim.Optimizer,
    steps_per_epoch: int,
    warmup_epochs: int,
    t0_epochs: int,
    t_mult: int,
    eta_min: float,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` implementing the guides' schedule on every parameter group."""
    base = optimizer.param_groups[0]["lr"]
    floor = min(eta_min / base, 1.0) if base > 0 else 0.0
    warmup, t0 = warmup_epochs * steps_per_epoch, max(1, t0_epochs * steps_per_epoch)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, warmup, t0, t_mult, floor)
    )
