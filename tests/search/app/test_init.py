"""``search.py init DATASET_DIR``: from a user's dataset to a study that ``start`` reads, sized
for the machine (``--gpus``/``--gpu-memory`` stand in for ``nvidia-smi``, which no machine here
has), and one line for what it cannot use, with nothing written."""

from __future__ import annotations

import os

import pytest
import yaml

from search.cli import main
from search.studyfiles.study import load_study
from tests.helpers import stand_in_nvidia_smi
from trainables.data.synth import SynthSpec, write_dataset


@pytest.fixture
def dataset(project):
    return write_dataset(SynthSpec(n=12, width=193, height=240, seed=1), project / "my_cephs")


def files(project):
    return sorted(str(p.relative_to(project)) for p in project.rglob("*") if p.is_file())


@pytest.mark.study
def test_init_writes_a_study_for_the_dataset_and_the_gpus_that_start_reads(
    project, dataset, ray_cluster, capsys
):
    assert main(["init", "my_cephs", "--gpus", "2", "--gpu-memory", "24"]) == 0
    out = capsys.readouterr().out
    assert "aariz, 29 landmarks, train 8 / valid 2 / test 2 images, up to 193x240 px" in out
    assert "Machine: 2 GPU(s) of 24 GB (arguments)" in out
    assert "python search.py start studies/my_cephs.yaml\n" in out
    assert "ssh -L 8080:127.0.0.1:8080" in out
    spec = load_study(project / "studies" / "my_cephs.yaml")
    assert (spec.dataset.format, spec.dataset.root) == ("aariz", str(dataset))
    assert spec.resources.gpu == 1 and spec.max_concurrent_trials == 2
    space = yaml.safe_load((project / "spaces" / "my_cephs.yaml").read_text())
    assert space["fixed"]["pretrained"] is True
    assert space["params"]["image_size"]["choices"] == [256, 512, 768]
    # The limits from the memory estimate of HRNet-W32 under AMP (trainables.memory_estimate):
    # the guides' 32 up to 512 px on 24 GB, fewer at 768 px.
    assert (
        "Batch limits: 32 at 256 px, 32 at 512 px, 16 at 768 px (training-memory estimate)" in out
    )
    limits = space["params"]["batch_size"]
    assert (limits["high"], limits["cases"]) == (32, [{"when": {"image_size": 768}, "high": 16}])
    # The study it wrote starts as far as this machine allows: its hub has no weights (offline).
    before = files(project)
    assert main(["start", "studies/my_cephs.yaml", "--cpu"]) == 2
    err = capsys.readouterr().err
    assert "spaces/my_cephs.yaml: pretrained" in err and "pretrained_file" in err
    assert err.count("\n") == 1
    assert files(project) == before


def test_init_without_a_gpu_writes_a_cpu_study(project, dataset, capsys):
    assert main(["init", str(dataset), "--gpus", "0", "--name", "on-cpu"]) == 0
    assert "Machine: no GPU" in capsys.readouterr().out
    spec = load_study(project / "studies" / "on-cpu.yaml")
    assert spec.resources.gpu == 0
    space = yaml.safe_load((project / "spaces" / "on-cpu.yaml").read_text())
    assert space["params"]["image_size"]["choices"] == [128, 256]


@pytest.mark.parametrize(
    "args, expect",
    [
        (["init", "nowhere"], "nowhere: dataset folder missing"),
        (
            ["init", "studies"],
            "not a dataset cephtune reads: expected one of (aariz: train/, valid/",
        ),
        (["init", "my_cephs", "--gpus", "1"], "give --gpu-memory GB too"),
        (
            ["init", "my_cephs", "--gpus", "1", "--gpu-memory", "1", "--name", "small"],
            "--gpu-memory 1: HRNet-W32 at 256 px needs about",
        ),
        (["init", "my_cephs", "--name", "a b"], "--name 'a b'"),
        (["init", "my_cephs", "--format", "dicom"], "unknown dataset format 'dicom'"),
        (["init", "my_cephs", "--gpus", "0"], "studies/my_cephs.yaml: exists; init never replaces"),
        (["init", "broken", "--gpus", "0"], "see python search.py data check"),
    ],
)
def test_init_refuses_in_one_line_and_writes_nothing(project, dataset, args, expect, capsys):
    (project / "studies").mkdir()
    (project / "studies" / "my_cephs.yaml").write_text("name: mine\n")  # the user's own
    broken = project / "broken"
    write_dataset(SynthSpec(n=12, width=193, height=240, seed=1), broken)
    next((broken / "train").rglob("*.json")).unlink()  # an annotation missing
    before = files(project)
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and expect in err, err
    assert files(project) == before


def test_init_reads_the_gpus_from_nvidia_smi(project, dataset, monkeypatch, capsys):
    # No machine here has a GPU: a stand-in answers the query init makes, as the real one does
    # (MiB, one line per GPU; the smallest decides the batch limits).
    rows = "\n".join(
        f"NVIDIA A100-SXM4-{gb}GB, {mib}, 580.65.06, 8.0"
        for gb, mib in ((80, 81559), (40, 40960), (80, 81559))
    )
    bin_dir = stand_in_nvidia_smi(project, rows)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    assert main(["init", "my_cephs"]) == 0
    out = capsys.readouterr().out
    assert "Machine: 3 GPU(s) of 40 GB (nvidia-smi)" in out
    assert "Batch limits: 32 at 256 px, 32 at 512 px, 30 at 768 px" in out
    spec = load_study(project / "studies" / "my_cephs.yaml")
    assert spec.max_concurrent_trials == 3
    space = yaml.safe_load((project / "spaces" / "my_cephs.yaml").read_text())
    limits = space["params"]["batch_size"]
    assert [limits["high"]] + [c["high"] for c in limits["cases"]] == [32, 30]


@pytest.mark.parametrize("to", ["coco", "csv"])
def test_init_reads_a_coco_or_csv_dataset_and_its_landmark_names(project, dataset, to, capsys):
    assert main(["data", "convert", "my_cephs", f"mine_{to}", "--to", to]) == 0
    assert main(["init", f"mine_{to}", "--gpus", "0"]) == 0
    assert f"{to}, 29 landmarks, train 8 / valid 2 / test 2 images" in capsys.readouterr().out
    spec = load_study(project / "studies" / f"mine_{to}.yaml")
    assert (spec.dataset.format, spec.dataset.root) == (to, str(project / f"mine_{to}"))
