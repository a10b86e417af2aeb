"""Warmup + cosine with warm restarts, against torch's own SGDR after the warmup."""

from __future__ import annotations

import pytest
import torch

from trainables.schedule import warmup_cosine_restarts


def lrs(steps: int, **kwargs) -> list[float]:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    sched = warmup_cosine_restarts(opt, **kwargs)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_linear_warmup_reaches_base_lr():
    got = lrs(10, steps_per_epoch=5, warmup_epochs=2, t0_epochs=3, t_mult=2, eta_min=1e-6)
    assert got[:10] == pytest.approx([1e-3 * (i + 1) / 10 for i in range(10)])


@pytest.mark.parametrize("t_mult", [1, 2, 3])
def test_after_warmup_matches_torch_sgdr(t_mult):
    spe, warm, t0 = 4, 1, 2
    got = lrs(
        warm * spe + 60,
        steps_per_epoch=spe,
        warmup_epochs=warm,
        t0_epochs=t0,
        t_mult=t_mult,
        eta_min=1e-5,
    )
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    ref = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
        opt, T_0=t0 * spe, T_mult=t_mult, eta_min=1e-5
    )
    expected = []
    for _ in range(60):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        ref.step()
    assert got[warm * spe :] == pytest.approx(expected, rel=1e-6)


def test_restart_jumps_back_to_base_lr():
    got = lrs(40, steps_per_epoch=1, warmup_epochs=0, t0_epochs=10, t_mult=2, eta_min=0.0)
    assert got[0] == pytest.approx(1e-3) and got[10] == pytest.approx(1e-3)
    assert got[30] == pytest.approx(1e-3)  # second cycle lasts 20 steps
    assert got[9] < 1e-4 and got[29] < 1e-4
