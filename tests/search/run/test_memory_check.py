"""The memory check before a start, on a GPU as ``nvidia-smi`` lists it (a stand-in: no machine
here has one): each configuration's estimate against the GPU's memory, times the trial's share,
less the allowances; and nothing checked where the driver lists no GPU."""

from __future__ import annotations

import pytest

from search.run import datasets
from search.run.memory_check import check
from search.studyfiles.study import load_study
from tests.helpers import stand_in_nvidia_smi, tiny_study
from trainables.errors import ConfigError

SPACE = """\
params:
  image_size: {type: categorical, choices: [256, 512]}
  batch_size: {type: int, low: 2, high: 32, step: 2, cases: [{when: {image_size: 512}, high: 16}]}
fixed:
  backbone: hrnet_w18_small
  warmup_epochs: 0
"""


@pytest.fixture
def study(project):
    spec = load_study(tiny_study(project, "gpu", space=SPACE))
    return spec, datasets.prepare(spec.dataset)


def gpu(project, monkeypatch, mib: int) -> None:
    rows = f"NVIDIA A10, {mib}, 550.54.15, 8.6"
    monkeypatch.setenv("PATH", f"{stand_in_nvidia_smi(project, rows)}:/usr/bin:/bin")


def test_a_gpu_trial_is_checked_against_its_share_of_the_smallest_gpu(project, study, monkeypatch):
    spec, root = study
    gpu(project, monkeypatch, 24 * 1024)
    assert check(spec, 1.0, root) == [
        "Memory: every configuration fits the GPU's 24 GB (estimated)"
    ]
    # A tenth of it (ten trials a GPU) is 1.04 GiB after the allowances: about 40 samples at
    # 256 px under AMP, more than the space's 32, and about 10 at 512 px, fewer than its 16.
    (line,) = check(spec, 0.1, root)
    start = "Memory: hrnet hrnet_w18_small at 512 px fits a batch of "
    assert line.startswith(start) and 0 < int(line[len(start) :].split()[0]) < 16
    assert "in the GPU's 24 GB x 0.1 (estimated)" in line
    assert line.endswith("its trials with larger batches (up to 16) train in micro-batches")
    gpu(project, monkeypatch, 1024)  # 1 GB: nothing is left after the CUDA context's allowance
    with pytest.raises(ConfigError, match="needs about .* GB for one sample") as refused:
        check(spec, 1.0, root)
    assert str(refused.value).startswith(
        f"{spec.space.path}: params.image_size: hrnet hrnet_w18_small at 512 px"
    )
    assert "(the GPU's 1 GB)" in str(refused.value)


def test_a_searched_heatmap_stride_is_checked_at_its_finest(project, study, monkeypatch):
    """Stride 1 upsamples the heatmaps to the input: its trials are the space's largest."""
    coarse, root = study
    finest = SPACE.replace(
        "params:\n", "params:\n  heatmap_stride: {type: categorical, choices: [4, 1]}\n"
    )
    spec = load_study(tiny_study(project / "fine", "fine", space=finest))
    gpu(project, monkeypatch, 24 * 1024)

    def fits(spec, what: str) -> int:
        start = f"Memory: hrnet hrnet_w18_small at 512 px{what} fits a batch of "
        (line,) = [line for line in check(spec, 0.1, root) if "512 px" in line]
        assert line.startswith(start), line
        return int(line[len(start) :].split()[0])

    assert 0 < fits(spec, ", heatmap stride 1") < fits(coarse, "")


def test_a_driver_without_the_gpus_says_it_did_not_check(project, study, monkeypatch):
    spec, root = study
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no nvidia-smi
    assert check(spec, 1.0, root) == [
        "Memory: not checked (no GPU listed by nvidia-smi on this machine)"
    ]
    assert check(spec, 0.0, root) == []  # a CPU study without cpu_memory_gb: the machine's
