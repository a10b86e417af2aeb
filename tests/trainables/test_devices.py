"""Where a trial trains and in which precision: decisions made on CPU, checked on CPU.

The GPU side of the same decisions runs in ``tests/test_gpu.py`` (``make gpu-check``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from tests.helpers import REPO, tiny_study
from trainables.device import CONTEXT_BYTES, memory_fraction, trial_device
from trainables.errors import ConfigError
from trainables.precision import Precision, choose_precision, native_bf16

GiB = 1 << 30


@pytest.mark.parametrize(
    ("share", "ids", "cuda", "device"),
    [
        (0.0, [], True, "cpu"),  # given no GPU: CPU, even where CUDA is visible
        (0.0, [], False, "cpu"),
        (0.25, ["0"], True, "cuda"),
        (1.0, [3], True, "cuda"),
    ],
)
def test_a_trial_trains_where_its_resources_say(share, ids, cuda, device):
    assert trial_device(share, ids, cuda) == device


@pytest.mark.parametrize(("ids", "cuda"), [(["0"], False), ([], True)])
def test_a_gpu_the_trial_cannot_use_fails_it_with_the_reason(ids, cuda):
    with pytest.raises(ConfigError) as raised:
        trial_device(0.25, ids, cuda)
    text = str(raised.value)
    assert "\n" not in text
    assert text.startswith("the trial was given 0.25 GPU (Ray GPU ids: ")
    assert "but CUDA is not available in its worker (torch " in text


@pytest.mark.parametrize(
    ("requested", "device", "native", "chosen"),
    [
        ("auto", "cuda", True, "bf16"),  # A100, H100: bf16 needs no loss scaling
        ("auto", "cuda", False, "fp16"),  # T4, V100: fp16 + GradScaler
        ("auto", "cpu", False, "fp32"),
        ("fp16", "cuda", False, "fp16"),
        ("bf16", "cuda", True, "bf16"),
        ("bf16", "cpu", False, "bf16"),  # CPU autocast: the tested stand-in for the GPU path
        ("fp32", "cuda", True, "fp32"),
    ],
)
def test_precision_follows_the_device(requested, device, native, chosen):
    assert choose_precision(requested, device, native) == chosen


@pytest.mark.parametrize(
    ("requested", "device", "message"),
    [
        ("bf16", "cuda", "no native bf16 (compute capability < 8.0), so it would run emulated"),
        ("fp16", "cpu", "precision fp16 needs CUDA"),
        ("fp8", "cuda", "unknown precision 'fp8'"),
    ],
)
def test_precision_that_would_be_slow_or_impossible_is_refused(requested, device, message):
    with pytest.raises(ConfigError) as raised:
        choose_precision(requested, device, native_bf16=False)
    assert message in str(raised.value)


def test_a_fractional_trial_is_capped_below_its_share_for_the_cuda_context():
    h200 = 141 * GiB
    assert memory_fraction(0.25, h200) == pytest.approx(0.25 - CONTEXT_BYTES / h200)
    assert memory_fraction(0.25, 2 * GiB) == 0.125  # never below half its share
    assert memory_fraction(1.0, h200) is None  # a whole GPU: no cap
    assert 4 * memory_fraction(0.25, 16 * GiB) + 4 * CONTEXT_BYTES / (16 * GiB) <= 1


FAKE_GPU = """\
import json, os, sys
import ray
from search.cli import main
from search.run.cluster import ensure_ray

ensure_ray()  # a local Ray; RAY_OVERRIDE_RESOURCES gives it one (logical) GPU
visible = ray.remote(lambda: os.environ.get("CUDA_VISIBLE_DEVICES"))
seen = {
    "none": ray.get(visible.options(num_gpus=0).remote()),
    "quarter": ray.get(visible.options(num_gpus=0.25).remote()),
}
codes = [main(["start", path]) for path in sys.argv[1:]]
print(json.dumps({"visible": seen, "codes": codes}))
"""


@pytest.mark.study
def test_on_a_gpu_node_trials_follow_their_resources(project, cache_dir):
    """A Ray node that declares a GPU this machine does not have: a task given no GPU must not
    see it, and a trial given a quarter of it fails with the reason instead of training on CPU
    in fp32 while holding it."""
    if torch.cuda.is_available():
        pytest.skip("a real GPU is here: tests/test_gpu.py runs the real thing")
    quarter = tiny_study(project, "quarter", num_samples=1, max_epochs=1, grace=1)
    quarter.write_text(quarter.read_text().replace("{cpu: 1}", "{cpu: 1, gpu: 0.25}"))
    env = {
        **os.environ,
        "RAY_OVERRIDE_RESOURCES": json.dumps({"CPU": 2, "GPU": 1}),
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    env.pop("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", None)  # ensure_ray's to set
    done = subprocess.run(
        [sys.executable, "-c", FAKE_GPU, str(quarter)],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["visible"] == {"none": "", "quarter": "0"}
    assert out["codes"] == [0], done.stderr[-3000:]
    from tests.helpers import optuna_study

    (trial,) = optuna_study(project, "quarter").trials
    assert trial.state.name == "FAIL"
    reason = trial.user_attrs["fail_reason"]
    assert reason.startswith("error: ConfigError: the trial was given 0.25 GPU (Ray GPU ids: 0)")
    assert "but CUDA is not available in its worker" in reason


def test_bf16_support_is_asked_of_the_trials_device_not_the_current_one(monkeypatch):
    """A Turing card (7.5) as GPU 0 beside an Ampere (8.0) as GPU 1: each answers for itself."""
    capability = {0: (7, 5), 1: (8, 0)}
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d: capability[d.index])
    assert native_bf16(torch.device("cuda:1")) and not native_bf16(torch.device("cuda:0"))
    assert not native_bf16(torch.device("cpu"))


def test_a_gpu_trial_refuses_a_ray_that_leaves_cuda_visible_devices_alone(monkeypatch):
    monkeypatch.setenv("RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES", "1")
    with pytest.raises(ConfigError, match="every trial would train on GPU 0"):
        trial_device(0.25, ["1"], cuda_available=True)
    assert trial_device(0, [], cuda_available=False) == "cpu"  # a CPU trial does not care


@pytest.mark.parametrize(
    ("trained", "chosen"),
    [("auto", "fp32"), ("fp32", "fp32"), ("bf16", "bf16"), ("fp16", "fp32")],
)
def test_a_trained_model_runs_in_the_precision_it_was_validated_in(trained, chosen, monkeypatch):
    """On this CPU: what the config asked for, resolved as training resolved it (fp16, which
    needs CUDA, as auto)."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert Precision.for_inference(trained) == Precision(torch.device("cpu"), chosen)
