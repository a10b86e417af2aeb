"""Hostile study and space files (tests/bad_input.py says what each case must do)."""

from __future__ import annotations

from tests.bad_input import (
    LR,
    TAG,
    Case,
    case_tests,
    params,
    space,
    study,
    study_raw,
    study_text,
    synthetic_on_gpu,
    write_bytes,
)

CASES: list[Case] = [
    # study files
    Case("study-not-yaml", study_raw("name: [bad\n"), ("bad.yaml", "not valid YAML at line 2")),
    Case("study-is-a-list", study_raw("- name\n- bad\n"), ("bad.yaml", "YAML mapping, got list")),
    Case("study-empty-file", study_raw(""), ("bad.yaml", "YAML mapping, got an empty file")),
    Case(
        "study-binary-file",
        lambda ctx: ["start", str(write_bytes(ctx.project / "bad.yaml", b"\x89PNG\xff\xfe"))],
        ("bad.yaml: not a text file",),
    ),
    Case(
        "study-python-tag",
        study(f"name: {TAG}"),
        ("bad.yaml", "not valid YAML at line 1", "tag:yaml.org,2002:python/object/apply:os.system"),
    ),
    Case(
        "study-duplicate-key",
        lambda ctx: study_raw(study_text(ctx.aariz) + "num_samples: 3\n")(ctx),
        ("bad.yaml", "line 8", "duplicate key 'num_samples'"),
    ),
    Case(
        "study-unknown-key-did-you-mean",
        study("num_sample: 2", drop=("num_samples",)),
        ("bad.yaml", "unknown key 'num_sample' (did you mean 'num_samples'?)"),
    ),
    Case(
        "study-missing-key",
        study(drop=("max_epochs",)),
        ("bad.yaml", "missing required key 'max_epochs'"),
    ),
    Case(
        "study-wrong-type",
        study("num_samples: many"),
        ("bad.yaml", "num_samples must be an integer, got 'many'"),
    ),
    Case("study-num-samples-0", study("num_samples: 0"), ("bad.yaml", "num_samples must be >= 1")),
    Case(
        "study-grace-period-over-max-epochs",
        study("asha: {grace_period: 5, reduction_factor: 2}"),
        ("bad.yaml", "asha.grace_period must be <= max_epochs (2), got 5"),
    ),
    Case(
        "study-grace-period-inside-the-warmup",
        study(space=params(LR, "warmup_epochs: {type: int, low: 0, high: 2}")),
        ("bad.yaml", "asha.grace_period", "the space can sample warmup_epochs 2", "max_epochs (2)"),
    ),
    Case(
        "study-grace-period-inside-the-default-warmup",
        study(space=params(LR)),
        ("bad.yaml", "asha.grace_period", "warmup_epochs is 5 (the trainable's default)"),
    ),
    Case(
        "study-sampler-option-of-random",
        study("sampler: {name: random, n_startup_trials: 3}"),
        ("bad.yaml", "sampler.n_startup_trials is a TPE option; sampler 'random' takes none"),
    ),
    Case(
        "study-sampler-flag-not-a-bool",
        study("sampler: {constant_liar: 1}"),
        ("bad.yaml", "sampler.constant_liar must be true or false, got 1"),
    ),
    Case(
        "study-reduction-factor-1",
        study("asha: {grace_period: 1, reduction_factor: 1}"),
        ("bad.yaml", "asha.reduction_factor must be >= 2, got 1"),
    ),
    Case(
        "study-name-with-path-separators",
        study("name: ../escape"),
        ("bad.yaml", "name must be 1-64 letters", "no path separators", "'../escape'"),
    ),
    Case(
        "study-mode-against-metric",
        study("metric: sdr_2mm", "mode: min"),
        ("bad.yaml", "mode must be max for sdr_2mm (higher is better), got 'min'"),
    ),
    Case(
        "study-storage-not-a-url",
        study("storage: studies/other.db"),
        ("bad.yaml", "storage must be a SQLAlchemy URL", "'studies/other.db'"),
    ),
    Case(
        "study-experiment-path-not-a-string",
        study("experiment_path: [s3://bucket]"),
        ("bad.yaml", "experiment_path must be a non-empty string", "['s3://bucket']"),
    ),
    Case(
        "study-file-missing",
        lambda ctx: ["start", str(ctx.project / "nowhere.yaml")],
        ("nowhere.yaml", "file not found"),
    ),
    Case("study-space-missing", study("space: gone.yaml"), ("gone.yaml", "file not found")),
    Case(
        "study-more-gpus-than-the-cluster",
        study("resources: {cpu: 1, gpu: 1}"),
        ("bad.yaml", "resources.gpu asks for 1 GPU per trial but the cluster has 0", "--cpu"),
        ray=True,
    ),
    Case(
        "study-more-cpus-than-any-node",
        study("resources: {cpu: 64}"),
        ("bad.yaml", "resources.cpu asks for 64 CPU per trial but no node", "autoscaling: true"),
        ray=True,
    ),
    Case(
        "study-autoscaling-not-a-bool",
        study("autoscaling: sometimes"),
        ("bad.yaml", "autoscaling must be true or false, got 'sometimes'"),
    ),
    Case(
        "study-storage-unreachable",
        study("storage: postgresql://cephtune:s3cret@127.0.0.1:1/optuna"),
        ("bad.yaml: storage", "'postgresql://cephtune:***@127.0.0.1:1/optuna'", "cannot open"),
        ray=True,
    ),
    Case(
        "study-storage-driver-missing",
        study("storage: postgresql+pg8000://cephtune@127.0.0.1:1/optuna"),
        ("bad.yaml: storage", "the postgresql driver 'pg8000' is not installed"),
        ray=True,
    ),
    Case(
        "study-synthetic-generated-then-gpu-refused",
        synthetic_on_gpu,
        ("bad.yaml", "resources.gpu asks for 1 GPU"),
        ray=True,
        generates=True,
    ),
    Case(
        "study-gpu-above-one",
        study("resources: {cpu: 1, gpu: 2}"),
        (
            "bad.yaml: resources.gpu must be <= 1: a trial trains on one GPU "
            "(no data parallelism), got 2",
        ),
    ),
    # space files
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
]


# The process cases that start Ray (its notices, Optuna's and MLflow's must not reach stderr).
AS_PROCESS = ("study-python-tag", "study-more-cpus-than-any-node", "study-storage-unreachable")
test_bad_input_is_one_line_exit_2_and_leaves_no_trace, test_the_real_process_prints_one_line = (
    case_tests(CASES, AS_PROCESS)
)
