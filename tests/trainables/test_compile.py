"""``compile: true``: the run's model compiled in place with torch.compile (inductor; on this
CPU its C++ backend), trained and validated through the compiled graphs, saved as plain
PyTorch. The smallest model with the product's head (resnet18 at 64 px): inductor's compile is
the test's cost, about its number of operators; what compiling gains is measured by
``benchmarks/compile.py``."""

from __future__ import annotations

import pytest
import torch

from tests.trainables.test_train import collect
from tests.trainables.test_train import config as hrnet_config
from trainables import checkpoint
from trainables.artifacts import WEIGHTS

pytestmark = pytest.mark.study  # a minute of inductor compiling on 2 cores


def config(data_dir, tmp_path, **overrides):
    """test_train's tiny config, on the smallest model: one epoch, as it is loaded."""
    small = dict(model="resnet", backbone="resnet18", epochs=1, warmup_epochs=0, augment=False)
    return hrnet_config(data_dir, tmp_path, **{**small, **overrides})


def test_compile_trains_the_same_model_and_saves_plain_weights(data_dir, tmp_path):
    """The same seeded epoch as the plain run, to rounding, through graphs dynamo traced; a
    checkpoint whose weights load into a plain model (no ``_orig_mod.`` prefix)."""
    from torch._dynamo.utils import counters

    counters.clear()
    plain_run, plain = collect(config(data_dir, tmp_path))
    assert not counters["stats"]["unique_graphs"]
    cfg = config(data_dir, tmp_path, compile=True)
    compiled_run, compiled = collect(cfg)
    assert counters["stats"]["unique_graphs"] > 0  # dynamo traced the model's forward
    assert compiled[0][0]["train_loss"] == pytest.approx(plain[0][0]["train_loss"], rel=1e-3)
    assert compiled[0][0]["mre_mm"] == pytest.approx(plain[0][0]["mre_mm"], rel=1e-2)
    state = compiled[0][1]()
    assert list(state[WEIGHTS]) == list(plain_run.model.state_dict())
    path = tmp_path / "compiled.pt"
    checkpoint.save(path, state)
    model = checkpoint.rebuild(cfg, path)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, compiled_run.model.state_dict()[name].cpu()), name
