"""Space files: conditional parameters, dependent ranges and warm-start points.

Everything runs on in-memory Optuna studies (no Ray): a sweep over ``spaces/guides.yaml`` checks
that every sampled combination is one the trainable accepts.
"""

from __future__ import annotations

import optuna
import pytest

from search.studyfiles.space_file import load_space
from search.studyfiles.warmstart import GUIDES
from tests.helpers import BASE, POINT, REPO, write
from trainables.config import TrainConfig

GUIDES_SPACE = REPO / "spaces" / "guides.yaml"
HRNET_BACKBONES = ("hrnet_w18_small_v2", "hrnet_w18", "hrnet_w32")


@pytest.fixture(autouse=True)
def quiet_optuna():
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    yield
    optuna.logging.set_verbosity(level)


def sweep(space, sampler, n: int) -> list[tuple[dict, dict]]:
    """(params, fixed) of ``n`` trials; a made-up objective so TPE has something to model."""
    study = optuna.create_study(sampler=sampler)
    out = []
    for _ in range(n):
        trial = study.ask()
        fixed = space.suggest(trial)
        params = dict(trial.params)
        study.tell(
            trial, params["lr"] * 1e3 + params["batch_size"] / 8 + params["image_size"] / 256
        )
        out.append((params, fixed))
    return out


def check_guides_trial(params: dict, fixed: dict) -> None:
    model = params["model"]
    assert ("backbone" in params) == (model == "hrnet")
    if "backbone" in params:
        assert params["backbone"] in HRNET_BACKBONES
    assert ("hourglass_stacks" in params) == (model == "hourglass")
    if "hourglass_stacks" in params:
        assert 1 <= params["hourglass_stacks"] <= 4
    assert params["batch_size"] % 4 == 0 and 8 <= params["batch_size"] <= 32
    if params["image_size"] == 512:
        assert params["batch_size"] <= 16
    adaptive = params["loss"] == "adaptive_wing"
    assert ("aw_alpha" in params) == adaptive and ("aw_omega" in params) == adaptive
    if adaptive:
        assert 1.5 <= params["aw_alpha"] <= 2.5 and 10.0 <= params["aw_omega"] <= 18.0
    TrainConfig.from_dict({**fixed, **params, "data_dir": "data"})


@pytest.mark.parametrize(
    "sampler,n",
    [(optuna.samplers.RandomSampler(seed=0), 300), (optuna.samplers.TPESampler(seed=0), 100)],
    ids=["random", "tpe"],
)
def test_guides_sweep_samples_only_valid_combinations(sampler, n):
    space = load_space(GUIDES_SPACE)
    trials = sweep(space, sampler, n)
    for params, fixed in trials:
        check_guides_trial(params, fixed)
    seen = {(p["model"], p["image_size"] == 512, p["batch_size"] > 16) for p, _ in trials}
    assert {m for m, _, _ in seen} == {"hrnet", "resnet", "unet", "hourglass"}
    assert any(big for _, big, _ in seen) and any(not big and over for _, big, over in seen)


def test_condition_on_a_fixed_setting_is_decided_at_load(tmp_path):
    path = write(
        tmp_path / "space.yaml",
        """\
        params:
          backbone: {type: categorical, choices: [hrnet_w18, hrnet_w32], when: {model: hrnet}}
          lr: {type: float, low: 1.0e-4, high: 5.0e-4, when: {backbone: [hrnet_w32]}}
        fixed: {model: hrnet}
        """,
    )
    space = load_space(path)
    assert space.params[0].when == ()
    for params in _params(space, 40):
        assert ("lr" in params) == (params["backbone"] == "hrnet_w32")


def _params(space, n: int) -> list[dict]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    out = []
    for _ in range(n):
        trial = study.ask()
        space.suggest(trial)
        out.append(dict(trial.params))
        study.tell(trial, 0.0)
    return out


def guide(name: str, **extra) -> dict:
    return {**GUIDES[name], **extra}


def test_guides_warm_start_on_the_guides_space():
    # Every row fits: the hrnet rows leave backbone to the sampler (the default, None, is not a
    # choice); the loss is adaptive_wing, so aw_alpha and aw_omega take the trainable's
    # defaults; large (512 px) has batch 8 <= 16; fast and fast-24 are at 128 px.
    aw = {"aw_alpha": 2.1, "aw_omega": 14.0}
    names = ("balanced", "accurate", "fast", "fast-24", "mid-16", "large", "resnet")
    assert load_space(GUIDES_SPACE).warm_start == tuple(guide(n, **aw) for n in names)


def test_guides_warm_start_on_the_quickstart_space_keeps_none(tmp_path):
    # quickstart searches warmup_epochs in [0, 2] (every row has 5), fixes image_size 128 (only
    # fast and fast-24 match, and their batch sizes 32 and 24 are not in [4, 8]) and model hrnet.
    text = (REPO / "spaces" / "quickstart.yaml").read_text() + "warm_start: guides\n"
    assert load_space(write(tmp_path / "quickstart.yaml", text)).warm_start == ()


def test_guides_warm_start_keeps_rows_inside_and_skips_the_others(tmp_path):
    path = write(
        tmp_path / "space.yaml",
        """\
        params:
          lr: {type: float, low: 2.0e-4, high: 5.0e-4, log: true}
          image_size: {type: categorical, choices: [128, 256, 512]}
          batch_size: {type: int, low: 8, high: 32, step: 4,
                       cases: [{when: {image_size: 128}, high: 16}]}
        fixed: {warmup_epochs: 5}
        warm_start: guides
        """,
    )
    # accurate: lr 1e-4 < 2e-4; fast, fast-24: batch 32, 24 > 16 at 128 px; resnet: model is
    # not searched and resnet is not the default (hrnet); loss adaptive_wing is the default.
    keep = ("balanced", "mid-16", "large")
    columns = ("lr", "image_size", "batch_size")
    expected = tuple({k: GUIDES[n][k] for k in columns} for n in keep)
    assert load_space(path).warm_start == expected


def test_guides_rows_that_hang_on_a_sampled_value_are_skipped(tmp_path):
    path = write(
        tmp_path / "space.yaml",
        """\
        params:
          backbone: {type: categorical, choices: [hrnet_w18, hrnet_w32]}
          lr: {type: float, low: 1.0e-4, high: 5.0e-4, when: {backbone: hrnet_w18}}
        warm_start: guides
        """,
    )
    assert load_space(path).warm_start == ()


def test_fixed_value_that_differs_from_a_row_skips_it(tmp_path):
    text = BASE + "fixed: {warmup_epochs: 4}\nwarm_start: guides\n"
    assert load_space(write(tmp_path / "space.yaml", text)).warm_start == ()


def two_points(tmp_path, second: str):
    """The base space with ``warm_start`` POINT, then ``second`` (a YAML flow mapping)."""
    points = f"warm_start:\n  - {POINT}\n  - {second}\n"
    return load_space(write(tmp_path / "space.yaml", BASE + points))


def test_explicit_points_are_typed_and_kept_in_order(tmp_path):
    space = two_points(tmp_path, "{model: resnet, lr: 3.0e-4, image_size: 512, batch_size: 16}")
    assert space.warm_start[1] == {
        "model": "resnet",
        "lr": 3e-4,
        "image_size": 512,
        "batch_size": 16,
    }
    assert len(space.warm_start) == 2


def test_enqueued_points_come_out_first(tmp_path):
    space = two_points(tmp_path, "{model: resnet, lr: 3.0e-4, image_size: 512, batch_size: 12}")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for point in space.warm_start:
        study.enqueue_trial(point)
    for point in space.warm_start:
        trial = study.ask()
        space.suggest(trial)
        assert trial.params == point
        study.tell(trial, 1.0)
    trial = study.ask()
    space.suggest(trial)
    assert trial.params not in space.warm_start


def test_enqueued_guides_rows_come_out_first_with_the_rest_sampled():
    space = load_space(GUIDES_SPACE)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    for point in space.warm_start:
        study.enqueue_trial(point)
    for point in space.warm_start:
        trial = study.ask()
        fixed = space.suggest(trial)
        params = dict(trial.params)
        assert {k: params[k] for k in point} == point
        # Sampled: HRNet's backbone, and the one-choice pretrained of a model with a backbone.
        rest = {"backbone", "pretrained"} if point["model"] == "hrnet" else {"pretrained"}
        assert set(params) - set(point) == rest
        assert params["pretrained"] is True
        check_guides_trial(params, fixed)
        study.tell(trial, 1.0)


def test_readme_space_example_loads(tmp_path):
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Space files") : readme.index("### Trainable config keys")]
    example = section.split("```yaml\n")[1].split("```")[0]
    space = load_space(write(tmp_path / "space.yaml", example))
    assert [p["model"] for p in space.warm_start] == ["hrnet"] * 6 + ["resnet"]
