"""Space files: every validation rule gives one line naming the file, the key path and the rule."""

from __future__ import annotations

import pytest

from search.studyfiles.space_file import load_space
from tests.helpers import BASE, POINT, write
from trainables.errors import ConfigError


def _swap(line: str) -> str:
    """BASE with the param named on ``line`` replaced in place by ``line``, or appended."""
    name = line.split(":")[0].strip()
    lines = BASE.splitlines()
    at = [i for i, x in enumerate(lines) if x.startswith(f"  {name}:")]
    if at:
        lines[at[0]] = line
    else:
        lines.append(line)
    return "\n".join(lines) + "\n"


ERROR_CASES = [
    # when: references
    (
        "  backbone: {type: categorical, choices: [hrnet_w18], when: {lr: 1.0e-4}}",
        "params.backbone.when.lr",
        "must name a parameter defined before backbone",
    ),
    (
        "  backbone: {type: categorical, choices: [hrnet_w18], when: {backbone: hrnet_w18}}",
        "params.backbone.when.backbone",
        "must name a parameter defined before backbone",
    ),
    (
        "  backbone: {type: categorical, choices: [hrnet_w18], when: {modle: hrnet}}",
        "params.backbone.when.modle",
        "unknown key 'params.backbone.when.modle' (did you mean 'model'?)",
    ),
    (
        "  backbone: {type: categorical, choices: [hrnet_w18], when: {sigma: 2.0}}",
        "params.backbone.when.sigma",
        "unknown key",
    ),
    # when: values
    (
        "  backbone: {type: categorical, choices: [hrnet_w18], when: {model: vgg}}",
        "params.backbone.when.model",
        "can never hold: 'vgg' is not a value model can take (its values: [hrnet, resnet])",
    ),
    (
        "  backbone: {type: categorical, choices: [hrnet_w18], when: {model: [hrnet, vgg]}}",
        "params.backbone.when.model",
        "can never hold: 'vgg'",
    ),
    (  # the value is the problem, not the order: loss is defined before aw_alpha
        "  loss: {type: categorical, choices: [adaptive_wing, heatmap]}\n"
        "  aw_alpha: {type: float, low: 1.5, high: 2.5, when: {loss: focal}}",
        "params.aw_alpha.when.loss",
        "can never hold: 'focal' is not a value loss can take "
        "(its values: [adaptive_wing, heatmap])",
    ),
    (
        "  loss: {type: categorical, choices: [heatmap], when: {batch_size: 36}}",
        "params.loss.when.batch_size",
        "can never hold: 36 is not a value batch_size can take",
    ),
    (
        "  loss: {type: categorical, choices: [heatmap], when: {batch_size: 10}}",
        "params.loss.when.batch_size",
        "can never hold: 10",
    ),
    (
        "  loss: {type: categorical, choices: [heatmap], when: {lr: 1.0e-2}}",
        "params.loss.when.lr",
        "can never hold: 0.01",
    ),
    (
        "  loss: {type: categorical, choices: [heatmap], when: {image_size: big}}",
        "params.loss.when.image_size",
        "must be an int, [W, H] or 'WxH', got 'big'",
    ),
    (
        "  loss: {type: categorical, choices: [heatmap], when: {image_size: []}}",
        "params.loss.when.image_size",
        "must be a value or a non-empty list",
    ),
    (
        "  loss: {type: categorical, choices: [heatmap], when: {}}",
        "params.loss.when",
        "must name at least one earlier parameter",
    ),
    (
        "  loss: {type: categorical, choices: [heatmap], when: [model]}",
        "params.loss.when",
        "must be a mapping",
    ),
    (
        "  loss: {type: categorical, choices: [heatmap], when: {sigma: 3.0}}\nfixed: {sigma: 2.0}",
        "params.loss.when.sigma",
        "can never hold: sigma is fixed to 2.0, got 3.0",
    ),
    # cases:
    (
        "  batch_size: {type: int, low: 8, high: 32, cases: {when: {image_size: 512}}}",
        "params.batch_size.cases",
        "must be a non-empty list",
    ),
    (
        "  batch_size: {type: int, low: 8, high: 32, cases: []}",
        "params.batch_size.cases",
        "must be a non-empty list",
    ),
    (
        "  batch_size: {type: int, low: 8, high: 32, cases: [{high: 16}]}",
        "params.batch_size.cases[0].when",
        "missing required key 'params.batch_size.cases[0].when'",
    ),
    (
        "  batch_size: {type: int, low: 8, high: 32, cases: [{when: {image_size: 512}, hgh: 16}]}",
        "params.batch_size.cases[0].hgh",
        "(did you mean 'high'?)",
    ),
    (
        "  batch_size: {type: int, low: 8, high: 32,"
        " cases: [{when: {image_size: 512}, type: float}]}",
        "params.batch_size.cases[0].type",
        "unknown key",
    ),
    (
        "  batch_size: {type: int, low: 8, high: 32, cases: [{when: {imagesize: 512}, high: 16}]}",
        "params.batch_size.cases[0].when.imagesize",
        "(did you mean 'image_size'?)",
    ),
    (
        "  batch_size: {type: int, low: 8, high: 32, cases: [{when: {image_size: 128}, high: 16}]}",
        "params.batch_size.cases[0].when.image_size",
        "can never hold: 128",
    ),
    (
        "  batch_size: {type: int, low: 8, high: 32, cases: [{when: {loss: heatmap}, high: 16}]}\n"
        "  loss: {type: categorical, choices: [heatmap]}",
        "params.batch_size.cases[0].when.loss",
        "must name a parameter defined before batch_size",
    ),
    (
        "  batch_size: {type: int, low: 8, high: 32, cases: [{when: {image_size: 512}, high: 4}]}",
        "params.batch_size.cases[0].low",
        "must be < high, got low=8 high=4",
    ),
    (
        "  batch_size: {type: int, low: 8, high: 32,"
        " cases: [{when: {image_size: 512}, high: 16.0}]}",
        "params.batch_size.cases[0].high",
        "must be an integer, got 16.0",
    ),
    (
        "  batch_size: {type: int, low: 8, high: 32, cases: [{when: {image_size: 512}, step: 0}]}",
        "params.batch_size.cases[0].step",
        "must be > 0",
    ),
    (
        "  lr: {type: float, low: 1.0e-4, high: 5.0e-4, log: true,"
        " cases: [{when: {model: resnet}, low: 0.0}]}",
        "params.lr.cases[0].low",
        "must be > 0 for a log scale",
    ),
    (
        "  lr: {type: float, low: 1.0e-4, high: 5.0e-4, log: true,"
        " cases: [{when: {model: resnet}, step: 1.0e-4}]}",
        "params.lr.cases[0].step",
        "cannot be combined with log: true",
    ),
    (
        "  lr: {type: float, low: 1.0e-4, high: 5.0e-4,"
        " cases: [{when: {model: resnet}, log: true}]}",
        "params.lr.cases[0].log",
        "must match params.lr.log (false)",
    ),
    (
        "  loss: {type: categorical, choices: [heatmap],"
        " cases: [{when: {model: resnet}, choices: []}]}",
        "params.loss.cases[0].choices",
        "must be a non-empty list",
    ),
    (
        "  loss: {type: categorical, choices: [heatmap],"
        " cases: [{when: {model: resnet}, choices: [heatmap, heatmap]}]}",
        "params.loss.cases[0].choices",
        "has duplicates",
    ),
    (
        "  image_size: {type: categorical, choices: [256, 512],"
        " cases: [{when: {model: resnet}, choices: [256, x]}]}",
        "params.image_size.cases[0].choices",
        "must be an int, [W, H] or 'WxH', got 'x'",
    ),
    (
        "  loss: {type: categorical, choices: [heatmap, adaptive_wing],"
        " cases: [{when: {model: resnet}, choices: [heatmap]}]}",
        "params.loss.cases[0].choices",
        "must match params.loss.choices",
    ),
    # warm_start:
    ("warm_start: guide", "warm_start", "must be one of guides, got 'guide'"),
    ("warm_start: {lr: 2.0e-4}", "warm_start", "must be 'guides' or a list"),
    ("warm_start: [lr]", "warm_start[0]", "must be a mapping"),
    (
        f"warm_start: [{POINT[:-1]}, lrr: 1}}]",
        "warm_start[0].lrr",
        "unknown key 'warm_start[0].lrr' (did you mean 'lr'?)",
    ),
    (
        "warm_start: [{model: resnet, lr: 1e-4, image_size: 256, batch_size: 8}]",
        "warm_start[0].lr",
        "must be a float, got '1e-4'",
    ),
    (
        "warm_start: [{model: resnet, lr: 1.0e-3, image_size: 256, batch_size: 8}]",
        "warm_start[0].lr",
        "must be in [0.0001, 0.0005] log, got 0.001",
    ),
    (
        "warm_start: [{model: resnet, lr: 2.0e-4, image_size: 512, batch_size: 24}]",
        "warm_start[0].batch_size",
        "must be in [8, 16] step 4 (when image_size = 512), got 24",
    ),
    (
        "warm_start: [{model: resnet, lr: 2.0e-4, image_size: 256, batch_size: 10}]",
        "warm_start[0].batch_size",
        "must be in [8, 32] step 4, got 10",
    ),
    (
        "warm_start: [{model: vgg, lr: 2.0e-4, image_size: 256, batch_size: 8}]",
        "warm_start[0].model",
        "must be in [hrnet, resnet], got 'vgg'",
    ),
    (
        "warm_start: [{model: hrnet, lr: 2.0e-4, image_size: 256, batch_size: 8}]",
        "warm_start[0].backbone",
        "is missing: this point samples it (model = hrnet holds)",
    ),
    (
        "warm_start: [{model: resnet, lr: 2.0e-4, image_size: 256}]",
        "warm_start[0].batch_size",
        "is missing: this point samples it",
    ),
    (
        "warm_start: [{model: resnet, backbone: hrnet_w18, lr: 2.0e-4, image_size: 256,"
        " batch_size: 8}]",
        "warm_start[0].backbone",
        "is not sampled at this point: model = hrnet does not hold",
    ),
    (
        f"warm_start: [{POINT}, {POINT[:-1]}, sigma: 2.0}}]",
        "warm_start[1].sigma",
        "unknown key",
    ),
]


@pytest.mark.parametrize("line,key,message", ERROR_CASES, ids=[c[1] for c in ERROR_CASES])
def test_space_rule(tmp_path, line, key, message):
    text = _swap(line) if line.startswith("  ") else BASE + line + "\n"
    path = write(tmp_path / "space.yaml", text)
    with pytest.raises(ConfigError) as info:
        load_space(path)
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(f"{path}: ")
    assert key in text and message in text


def test_base_space_of_the_error_cases_loads(tmp_path):
    space = load_space(write(tmp_path / "space.yaml", BASE + f"warm_start: [{POINT}]\n"))
    assert space.warm_start == (
        {
            "model": "hrnet",
            "backbone": "hrnet_w18",
            "lr": 2e-4,
            "image_size": 256,
            "batch_size": 16,
        },
    )
