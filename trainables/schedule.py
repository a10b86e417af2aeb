"""Learning-rate schedule: linear warmup, then cosine annealing, stepped per iteration."""

from __future__ import annotations

import math

import torch


def warmup_cosine(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, eta_min: float
) -> torch.optim.lr_scheduler.LambdaLR:
    """Multiplies each group's base lr: linear ramp to 1 over ``warmup_steps``, then cosine
    decay to ``eta_min`` at ``total_steps``."""
    base = optimizer.param_groups[0]["lr"]
    floor = min(eta_min / base, 1.0) if base > 0 else 0.0

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        span = max(1, total_steps - warmup_steps)
        progress = min(1.0, (step - warmup_steps) / span)
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
