"""Hostile study files (tests/bad_input.py says what each case must do)."""

from __future__ import annotations

from tests.bad_builds import (
    LR,
    TAG,
    params,
    study,
    study_raw,
    study_text,
    synthetic_on_gpu,
    write_bytes,
)
from tests.bad_input import Case, case_tests

# Nine levels of nine aliases to the level below: 9 ** 9 (387 million) strings once expanded.
ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi", strict=True)
)

CASES: list[Case] = [
    Case("study-not-yaml", study_raw("name: [bad\n"), ("bad.yaml", "not valid YAML at line 2")),
    Case("study-is-a-list", study_raw("- name\n- bad\n"), ("bad.yaml", "YAML mapping, got list")),
    Case("study-empty-file", study_raw(""), ("bad.yaml", "YAML mapping, got an empty file")),
    Case(
        "study-alias-bomb",  # 9 ** 9 values from 400 bytes: 54 s and 6 GB before the bound
        study_raw(ALIAS_BOMB),
        ("bad.yaml: expands to more than 100000 values (aliases counted at every use)",),
    ),
    Case(
        "study-nested-20000-deep",  # a 3,000-line RecursionError traceback before the bound
        study_raw("name: deep\nx: " + "[" * 20000 + "]" * 20000 + "\n"),
        ("bad.yaml: nests deeper than 64 levels",),
    ),
    Case(
        "study-alias-holds-itself",
        study_raw("name: loop\nx: &a [1, *a]\n"),
        ("bad.yaml: an alias refers to the value that holds it",),
    ),
    Case(
        "study-too-large",
        study_raw("name: big\n# " + "x" * 1_000_100 + "\n"),
        ("bad.yaml: 10001", "characters; a study, space or config file is at most 1000000"),
    ),
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
]

# The process cases that start Ray (its notices, Optuna's and MLflow's must not reach stderr).
AS_PROCESS = ("study-python-tag", "study-more-cpus-than-any-node", "study-storage-unreachable")
test_bad_input_is_one_line_exit_2_and_leaves_no_trace, test_the_real_process_prints_one_line = (
    case_tests(CASES, AS_PROCESS)
)
