"""Space and study files: every rule gives one line naming the file and the key."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from search.studyfiles.space_file import load_space
from search.studyfiles.study import load_study
from tests.helpers import REPO, TINY_SPACE, tiny_study, write
from trainables.config import TrainConfig
from trainables.errors import ConfigError

SPACE_CASES = [
    ("not: [valid", "not valid YAML"),
    ("- lr\n- loss\n", "must be a YAML mapping"),
    (
        "params:\n  lr: {type: float, low: 1.0e-4, high: 5.0e-4}\nfixd: {}\n",
        "unknown key 'fixd' (did you mean 'fixed'?)",
    ),
    ("params:\n  lr: {type: float, low: 5.0e-4, high: 1.0e-4}\n", "params.lr.low must be < high"),
    (
        "params:\n  lr: {type: float, low: 0, high: 1.0e-3, log: true}\n",
        "params.lr.low must be > 0 for a log scale",
    ),
    ("params:\n  lr: {type: float, low: 1e-4, high: 5.0e-4}\n", "params.lr.low must be a number"),
    (
        "params:\n  lr: {type: float, low: 1.0e-4, hi: 5.0e-4}\n",
        "unknown key 'params.lr.hi' (did you mean 'high'?)",
    ),
    (
        "params:\n  learning_rate: {type: float, low: 1.0e-4, high: 5.0e-4}\n",
        "unknown key 'params.learning_rate'",
    ),
    ("params:\n  loss: {type: categorical, choices: []}\n", "params.loss.choices must be"),
    ("params:\n  loss: {type: categorical, choices: [heatmap, heatmap]}\n", "has duplicates"),
    (
        "params:\n  batch_size: {type: float, low: 4, high: 8}\n",
        "float does not fit batch_size, which is a int",
    ),
    (
        "params:\n  batch_size: {type: categorical, choices: [4, '8']}\n",
        "params.batch_size.choices must be a int",
    ),
    ("params:\n  epochs: {type: int, low: 1, high: 5}\n", "is set by the study file"),
    ("params:\n  lr: {type: uniform, low: 1, high: 2}\n", "params.lr.type must be one of"),
    ("params: {}\n", "params must name at least one parameter"),
    (
        "params:\n  lr: {type: float, low: 1.0e-4, high: 5.0e-4}\nfixed: {image_size: big}\n",
        "fixed.image_size must be an int, [W, H] or 'WxH', got 'big'",
    ),
]


@pytest.mark.parametrize("text,message", SPACE_CASES)
def test_space_rule(tmp_path, text, message):
    path = write(tmp_path / "space.yaml", text)
    with pytest.raises(ConfigError) as info:
        load_space(path)
    line = str(info.value)
    assert str(path) in line and message in line and "\n" not in line


STUDY_CASES = [
    ("name: a/b\n", "name must be 1-64 letters"),
    ("num_samples: 0\n", "num_samples must be >= 1"),
    ("asha: {grace_period: 5, reduction_factor: 2}\n", "asha.grace_period must be <= max_epochs"),
    ("asha: {grace_period: 1, reduction_factor: 1}\n", "asha.reduction_factor must be >= 2"),
    ("asha: true\n", "asha must be a mapping or false"),
    ("sampler: grid\n", "sampler must be one of tpe, random"),
    ("sampler: {name: cmaes}\n", "sampler.name must be one of tpe, random"),
    ("sampler: {name: tpe, startup: 3}\n", "unknown key 'sampler.startup'"),
    ("sampler: {n_startup_trials: -1}\n", "sampler.n_startup_trials must be >= 0"),
    ("sampler: {multivariate: yes please}\n", "sampler.multivariate must be true or false"),
    ("sampler: {name: random, constant_liar: true}\n", "sampler.constant_liar is a TPE option"),
    ("sampler: {multivariate: false}\n", "sampler.group needs multivariate: true"),
    ("mode: minimum\n", "mode must be one of min, max"),
    ("metric: accuracy\n", "metric must be one of"),
    ("resources: {cpu: 0}\n", "resources.cpu must be > 0"),
    ("resources: {gpus: 1}\n", "unknown key 'resources.gpus' (did you mean 'gpu'?)"),
    (
        "dataset: {format: dicom}\n",
        "dataset.format must be one of synthetic, aariz, isbi, coco, csv",
    ),
    ("dataset: {format: aariz}\n", "missing required key 'dataset.root'"),
    ("dataset: {format: synthetic, size: [64]}\n", "dataset.size must be [width, height]"),
    ("space: nowhere.yaml\n", "nowhere.yaml: file not found"),
    ("num_sample: 3\n", "unknown key 'num_sample' (did you mean 'num_samples'?)"),
]


@pytest.mark.parametrize("override,message", STUDY_CASES)
def test_study_rule(tmp_path, override, message):
    base = tiny_study(tmp_path).read_text().splitlines()
    key = override.split(":")[0]
    lines = [line for line in base if not line.startswith(f"{key}:")] + [override.rstrip()]
    path = write(tmp_path / "bad.yaml", "\n".join(lines) + "\n")
    with pytest.raises(ConfigError) as info:
        load_study(path)
    line = str(info.value)
    assert message in line and "\n" not in line
    assert "yaml:" in line  # names the file


@pytest.mark.parametrize(
    "space,message",
    [
        (
            TINY_SPACE + "  # searched below\n",
            "the space can sample warmup_epochs 3: 3 + grace_period 2 > max_epochs (4)",
        ),
        (TINY_SPACE.replace("warmup_epochs: 0", "warmup_epochs: 3"), "warmup_epochs is 3:"),
        (
            TINY_SPACE.replace("  warmup_epochs: 0\n", ""),
            "warmup_epochs is 5 (the trainable's default): 5 + grace_period 2 > max_epochs (4)",
        ),
    ],
)
def test_a_grace_period_inside_the_warmup_is_refused(tmp_path, space, message):
    """ASHA counts rungs after each trial's warmup; a trial whose warmup leaves no room for the
    first rung would never be compared, so the study file is refused, naming the warmup."""
    if "searched below" in space:  # warmup searched, 0..3
        searched = "params:\n  warmup_epochs: {type: int, low: 0, high: 3}\n"
        space = space.replace("  warmup_epochs: 0\n", "").replace("params:\n", searched)
    path = tiny_study(tmp_path, max_epochs=4, grace=2, space=space)
    with pytest.raises(ConfigError) as info:
        load_study(path)
    line = str(info.value)
    assert f"{path}: asha.grace_period" in line and message in line and "\n" not in line
    # The same study fits once max_epochs leaves room for the first rung after the warmup.
    path = tiny_study(tmp_path, max_epochs=7, grace=2, space=space)
    assert load_study(path).asha.grace_period == 2


def test_sampler_options_reach_optuna_and_default_to_the_measured_ones(tmp_path):
    from search.studyfiles.samplers import make_sampler

    path = tiny_study(tmp_path)
    spec = load_study(path)
    assert spec.record()["sampler"] == {
        "name": "tpe",
        "n_startup_trials": 5,
        "multivariate": True,
        "group": True,
        "constant_liar": True,
    }
    text = path.read_text() + "sampler: {n_startup_trials: 2, constant_liar: false}\n"
    spec = load_study(write(path, text))
    sampler = make_sampler(spec.sampler, seed=0)
    # Optuna keeps its options private; these are the attributes TPESampler reads them from.
    assert sampler._n_startup_trials == 2 and sampler._constant_liar is False
    assert sampler._multivariate and sampler._group


def test_every_shipped_space_and_study_loads():
    for path in sorted((REPO / "spaces").glob("*.yaml")):
        assert load_space(path).params
    for path in sorted((REPO / "studies").glob("*.yaml")):
        study = load_study(path)
        assert study.space.params


def test_loader_workers_default_to_none_on_cpu_and_the_trial_s_cpus_less_one_on_cuda():
    """A worker reads bytes and draws the augmentation (the GPU applies it), so on CUDA every
    CPU of the trial but the training process's own loads."""
    assert TrainConfig.from_dict({}).workers(cuda=False) == 0
    assert TrainConfig.from_dict({}).workers(cuda=True) == 0
    assert TrainConfig.from_dict({"num_threads": 2}).workers(cuda=True) == 1
    assert TrainConfig.from_dict({"num_threads": 16}).workers(cuda=True) == 15
    assert TrainConfig.from_dict({"num_workers": 3}).workers(cuda=False) == 3
    with pytest.raises(ConfigError, match="num_workers must be >= 0, got -1"):
        TrainConfig.from_dict({"num_workers": -1})


def test_trainable_config_rejects_unknown_keys_and_types():
    with pytest.raises(ConfigError, match="unknown trainable key 'lrate'"):
        TrainConfig.from_dict({"lrate": 1e-3})
    with pytest.raises(ConfigError, match="batch_size must be a int"):
        TrainConfig.from_dict({"batch_size": 8.5})
    with pytest.raises(ConfigError, match="lr must be > 0"):
        TrainConfig.from_dict({"lr": 0.0})


def test_cli_bad_study_is_one_line_exit_2_and_leaves_nothing(tmp_path):
    write(tmp_path / "space.yaml", TINY_SPACE.replace("low: 1.0e-3", "low: 9.0e-3"))
    study = tiny_study(tmp_path, name="broken")
    write(tmp_path / "space.yaml", TINY_SPACE.replace("low: 1.0e-3", "low: 9.0e-3"))
    result = subprocess.run(
        [sys.executable, str(REPO / "search.py"), "start", str(study)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "CEPHTUNE_CACHE_DIR": str(tmp_path)},
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "space.yaml: params.lr.low must be < high" in result.stderr
    assert not (tmp_path / "studies").exists() and not (tmp_path / "mlruns").exists()


def test_the_stored_record_is_the_same_however_the_file_is_named(tmp_path, monkeypatch):
    """What ``resume`` compares: one study file named relatively from the project, absolutely,
    or through ``..`` from another folder gives one record, JSON as stored; a change does not."""
    monkeypatch.chdir(REPO)
    record = load_study("studies/quickstart.yaml").record()
    assert json.loads(json.dumps(record)) == record  # as Optuna stores it
    assert load_study(REPO / "studies" / "quickstart.yaml").record() == record
    monkeypatch.chdir(tmp_path)
    assert load_study(REPO / "spaces" / ".." / "studies" / "quickstart.yaml").record() == record
    changed = tmp_path / "quickstart.yaml"
    text = (REPO / "studies" / "quickstart.yaml").read_text()
    changed.write_text(text.replace("space: ../spaces/", f"space: {REPO}/spaces/"))
    moved = load_study(changed).record()
    assert moved["space"] == record["space"] and moved["path"] != record["path"]


def test_the_frontier_space_keeps_large_inputs_to_small_batches():
    """Sampled 300 times: every axis shows up, every config is valid, and the batch size stays
    within its memory case (<= 2 for HRNet-W48 at 1024 px, <= 4 at 1024 px otherwise)."""
    import optuna

    space = load_space(REPO / "spaces" / "frontier.yaml")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen: dict[str, set] = {}
    for _ in range(300):
        trial = study.ask()
        values = {**space.suggest(trial), **trial.params}
        TrainConfig.from_dict(values)
        for key in ("image_size", "heatmap_stride", "progressive_stages", "aug_flip", "backbone"):
            seen.setdefault(key, set()).add(values.get(key))
        big = values["image_size"] in (1024, "832x1024")
        if big and values.get("backbone") == "hrnet_w48":
            assert values["batch_size"] <= 2
        elif big or values.get("backbone") == "hrnet_w48":
            assert values["batch_size"] <= 4
    assert seen["heatmap_stride"] == {4, 2, 1} and seen["aug_flip"] == {False, True}
    assert {1024, "832x1024"} <= seen["image_size"]
    assert {"hrnet_w32", "hrnet_w48"} <= seen["backbone"]
    assert seen["progressive_stages"] == {None, "5@256,5@512"}
