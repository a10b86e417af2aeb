"""Hostile space files (tests/bad_input.py says what each case must do)."""

from __future__ import annotations

from tests.bad_builds import (
    LR,
    TAG,
    params,
    space,
)
from tests.bad_input import Case, case_tests

CASES: list[Case] = [
    Case("space-not-yaml", space("params: {lr: [\n"), ("space.yaml", "not valid YAML")),
    Case("space-is-a-list", space("- lr\n- loss\n"), ("space.yaml", "YAML mapping, got list")),
    Case(
        "space-python-tag",
        space(f"params:\n  lr: {TAG}\n"),
        ("space.yaml", "line 2", "python/object/apply:os.system"),
    ),
    Case(
        "space-duplicate-param",
        space(params(LR, LR)),
        ("space.yaml", "line 3", "duplicate key 'lr'"),
    ),
    Case(
        "space-unknown-key-did-you-mean",
        space(params(LR) + "fixd: {}\n"),
        ("space.yaml", "unknown key 'fixd' (did you mean 'fixed'?)"),
    ),
    Case(
        "space-wrong-type",
        space(params("lr: {type: float, low: 1e-4, high: 5.0e-4}")),
        ("space.yaml", "params.lr.low must be a number", "write 1.0e-4"),
    ),
    Case(
        "space-fixed-lr-zero",
        space(params("loss: {type: categorical, choices: [heatmap]}", fixed="{lr: 0.0}")),
        ("space.yaml", "fixed.lr must be > 0, got 0.0"),
    ),
    Case(
        "space-negative-lr-range",
        space(params("lr: {type: float, low: -1.0e-3, high: 1.0e-3}")),
        ("space.yaml", "params.lr.low must be > 0, got -0.001"),
    ),
    Case(
        "space-log-scale-low-0",
        space(params("lr: {type: float, low: 0.0, high: 1.0e-3, log: true}")),
        ("space.yaml", "params.lr.low must be > 0 for a log scale"),
    ),
    Case(
        "space-low-above-high",
        space(params("lr: {type: float, low: 5.0e-3, high: 1.0e-3}")),
        ("space.yaml", "params.lr.low must be < high"),
    ),
    Case(
        "space-empty-choices",
        space(params("loss: {type: categorical, choices: []}")),
        ("space.yaml", "params.loss.choices must be a non-empty list"),
    ),
    Case(
        "space-duplicate-choices",
        space(params("loss: {type: categorical, choices: [heatmap, heatmap]}")),
        ("space.yaml", "params.loss.choices has duplicates"),
    ),
    Case(
        "space-param-not-a-trainable-option",
        space(params("learning_rate: {type: float, low: 1.0e-4, high: 5.0e-4}")),
        ("space.yaml", "unknown key 'params.learning_rate'"),
    ),
    Case(
        "space-param-set-by-the-study",
        space(params("epochs: {type: int, low: 1, high: 5}")),
        ("space.yaml", "params.epochs is set by the study file"),
    ),
    Case(
        "space-condition-on-unknown-param",
        space(
            params(
                "model: {type: categorical, choices: [hrnet, resnet]}",
                "backbone: {type: categorical, choices: [hrnet_w18], when: {modle: hrnet}}",
            )
        ),
        ("space.yaml", "unknown key 'params.backbone.when.modle' (did you mean 'model'?)"),
    ),
    Case(
        "space-condition-on-later-param",
        space(
            params(
                "backbone: {type: categorical, choices: [hrnet_w18], when: {model: hrnet}}",
                "model: {type: categorical, choices: [hrnet, resnet]}",
            )
        ),
        ("space.yaml", "params.backbone.when.model must name a parameter defined before"),
    ),
    Case(
        "space-unknown-loss",
        space(params("loss: {type: categorical, choices: [adaptive_wing, focal]}")),
        ("space.yaml", "params.loss.choices must be one of adaptive_wing, heatmap, got 'focal'"),
    ),
    Case(
        "space-unknown-model",
        space(params(LR, fixed="{model: vit}")),
        ("space.yaml", "fixed.model must be one of hourglass, hrnet, resnet, unet, got 'vit'"),
    ),
    Case(
        "space-unknown-backbone",
        space(params(LR, fixed="{model: hrnet, backbone: hrnet_w99}")),
        (
            "space.yaml",
            "fixed.backbone must be one of hrnet_w18_small, hrnet_w18_small_v2, hrnet_w18, "
            "hrnet_w32, hrnet_w48 for hrnet, got 'hrnet_w99'",
        ),
    ),
    Case(
        "space-backbone-another-model-can-draw",
        space(
            params(
                "model: {type: categorical, choices: [hrnet, resnet]}",
                "backbone: {type: categorical, choices: [hrnet_w18]}",
            )
        ),
        (
            "space.yaml",
            "params.backbone must be one of resnet18, resnet34, resnet50 for resnet, got "
            "'hrnet_w18' (model 'resnet' can take it here)",
        ),
    ),
    Case(
        "space-image-size-off-the-32-grid",
        space(params("image_size: {type: int, low: 64, high: 128, step: 16}")),
        ("space.yaml", "params.image_size can sample 80", "must be a multiple of 32"),
    ),
    Case(
        "space-image-size-over-1024",
        space(params("image_size: {type: categorical, choices: [512, 1056]}")),
        ("space.yaml", "params.image_size.choices", "must be at most 1024 px a side, got 1056"),
    ),
    Case(
        "space-image-size-rectangle-off-the-32-grid",
        space(params(LR, fixed="{image_size: [512, 600]}")),
        ("space.yaml", "fixed.image_size must be a multiple of 32, got 512x600"),
    ),
    Case(
        "space-image-size-not-a-size",
        space(params("image_size: {type: categorical, choices: [256, big]}")),
        ("space.yaml", "params.image_size.choices must be an int, [W, H] or 'WxH', got 'big'"),
    ),
    Case(
        "space-heatmap-stride-3",
        space(params("heatmap_stride: {type: categorical, choices: [4, 3]}")),
        ("space.yaml", "params.heatmap_stride.choices", "must be one of 4, 2, 1, got 3"),
    ),
    Case(
        "space-aug-flip-not-a-bool",
        space(params(LR, fixed="{aug_flip: sometimes}")),
        ("space.yaml", "aug_flip must be a bool, got 'sometimes'"),
    ),
    Case(
        "space-progressive-stage-off-the-32-grid",
        space(params('progressive_stages: {type: categorical, choices: [null, "2@128,2@200"]}')),
        (
            "space.yaml",
            "params.progressive_stages.choices",
            "stage 2@200: size must be a multiple of 32, got 200",
        ),
    ),
    Case(
        "space-progressive-stages-not-stages",
        space(params(LR, fixed="{progressive_stages: [256, 512]}")),
        ("space.yaml", "fixed.progressive_stages must be [[epochs, size], ...] or 'E@SIZE,E@SIZE'"),
    ),
    Case(
        "space-cpu-memory-zero",
        space(params(LR, fixed="{cpu_memory_gb: 0}")),
        ("space.yaml", "fixed.cpu_memory_gb must be > 0, got 0.0"),
    ),
    Case(
        # Checked on every node before the study starts (the suite's hub cache is empty and
        # offline): one line, not a failure in every trial.
        "space-pretrained-weights-unavailable",
        space(params(LR, fixed="{backbone: hrnet_w18_small, pretrained: true, warmup_epochs: 0}")),
        (
            "space.yaml: pretrained",
            "could not load pretrained weights for 'hrnet_w18_small'",
            "neither in the cache",
            "set pretrained_file to a local weights file",
        ),
        ray=True,
    ),
]

AS_PROCESS = ("space-pretrained-weights-unavailable",)  # the task's library notices too
test_bad_input_is_one_line_exit_2_and_leaves_no_trace, test_the_real_process_prints_one_line = (
    case_tests(CASES, AS_PROCESS)
)
