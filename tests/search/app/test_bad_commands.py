"""Hostile commands: on a study's records, on the command line, with training configs
(tests/bad_input.py says what each case must do)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from PIL import Image

from search.cli import main
from tests.bad_builds import (
    TAG,
    argv,
    predict_text_file,
    predict_unknown_model,
    promote_on,
    train,
    train_corrupt_image,
    truncate,
    with_file,
)
from tests.bad_input import Case, case_tests
from tests.helpers import REPO, write

CASES: list[Case] = [
    # commands on a study's records
    Case("best-no-finished-trial", argv("best", "pending"), ("'pending'", "no finished trial")),
    Case(
        "promote-no-completed-trial",
        argv("promote", "pending"),
        ("'pending'", "no completed trial to promote"),
    ),
    Case(
        "promote-corrupt-test-image",
        promote_on(truncate("test/Cephalograms/synth00005.png")),
        ("synth00005.png: unreadable image",),
    ),
    Case(
        "promote-resume-without-checkpoint",
        promote_on(lambda root: None, "--resume"),
        ("studies/done/final/checkpoints/last.pt: no checkpoint to resume",),
    ),
    Case(
        "promote-ensemble-on-train-and-valid",
        promote_on(lambda root: None, "--ensemble", "2", "--train-on", "train+valid"),
        ("--ensemble chooses its members on valid",),
    ),
    Case(
        "promote-ensemble-of-one",
        argv("promote", "done", "--ensemble", "1"),
        ("cephtune promote: argument --ensemble: must be >= 2, got 1",),
    ),
    Case(
        "promote-zero-seeds",
        argv("promote", "done", "--seeds", "0"),
        ("cephtune promote: argument --seeds: must be >= 1, got 0",),
    ),
    Case(
        "status-unknown-study",
        argv("status", "ghost"),
        ("study 'ghost' not found", "studies: done, pending, unrelated"),
    ),
    Case("resume-study-file-gone", argv("resume", "pending"), ("gone.yaml: file not found",)),
    Case(
        "resume-study-not-made-by-cephtune",
        argv("resume", "unrelated"),
        ("study 'unrelated'", "was not started by cephtune", "nothing to resume"),
    ),
    *(
        Case(
            f"{command}-name-escapes-studies",
            argv(command, name),
            (f"study name {name!r} must be", "no path separators"),
        )
        for command, name in (
            ("resume", "../x"),
            ("best", "../x"),
            ("status", "a/b"),
            ("promote", "../../x"),
            ("report", ".."),
        )
    ),
    # a read command never creates a storage, nor its folder
    Case(
        "status-mistyped-storage",
        argv("status", "done", "--storage", "sqlite:///studies/typo.db"),
        ("--storage: no Optuna storage at", "studies/typo.db", "nothing was created"),
    ),
    Case(
        "resume-storage-in-a-missing-folder",
        argv("resume", "done", "--storage", "sqlite:///no/such/dir/optuna.db"),
        ("--storage: no Optuna storage at", "no/such/dir/optuna.db"),
    ),
    Case(
        "dashboard-mistyped-storage",
        argv("dashboard", "--storage", "sqlite:///studies/typo.db"),
        ("--storage: no Optuna storage at", "studies/typo.db"),
    ),
    Case(
        "best-storage-is-a-path-not-a-url",
        argv("best", "done", "--storage", "studies/optuna.db"),
        ("--storage: 'studies/optuna.db' is not a database URL", "sqlite:///studies/optuna.db"),
    ),
    # start NAME is studies/NAME.yaml
    Case(
        "start-by-name-reads-studies-name-yaml",
        lambda ctx: [
            "start",
            str(write(ctx.project / "studies" / "named.yaml", "name: named\nepochs: 3\n").stem),
        ],
        ("studies/named.yaml", "epochs"),
    ),
    Case("start-unknown-name", argv("start", "nosuch"), ("nosuch: file not found",)),
    # command line use
    Case(
        "promote-epochs-0",
        argv("promote", "pending", "--epochs", "0"),
        ("cephtune promote: argument --epochs: must be >= 1, got 0",),
    ),
    Case("unknown-command", argv("frobnicate"), ("invalid choice: 'frobnicate'",)),
    Case("missing-argument", argv("start"), ("cephtune start", "required: study")),
    Case(
        "data-synth-n-below-3",
        argv("data", "synth", "out", "--n", "2"),
        ("argument --n: must be >= 3, got 2",),
    ),
    Case(
        "data-synth-onto-a-file",
        with_file("out", "data", "synth", "out"),
        ("out: exists (a file); data synth writes a new folder",),
    ),
    Case(
        "data-synth-under-a-file",
        with_file("notes", "data", "synth", "notes/out"),
        ("notes/out: notes is a file, not a folder",),
    ),
    Case(
        "data-convert-under-a-file",
        lambda ctx: (
            with_file("notes", "data", "convert", str(ctx.aariz), "--to", "csv")(ctx)
            + ["notes/out"]
        ),
        ("notes/out: notes is a file, not a folder; data convert cannot write there",),
    ),
    Case("predict-a-text-file", predict_text_file, ("notes.txt: not an image",)),
    Case(
        "predict-unknown-model",
        predict_unknown_model,
        ("model 'models:/nope@champion' not found", "mlflow.db"),
    ),
    Case(
        "evaluate-no-prediction-folder",
        lambda ctx: ["evaluate", "--pred", "nowhere", "--dataset", str(ctx.aariz)],
        ("nowhere: prediction folder missing",),
    ),
    # training configs
    Case("train-python-tag", train(f"lr: {TAG}\n"), ("cfg.yaml", "python/object/apply")),
    Case(
        "train-unknown-key-did-you-mean",
        train("batchsize: 8\n"),
        ("cfg.yaml: unknown trainable key 'batchsize' (did you mean 'batch_size'?)",),
    ),
    Case("train-lr-negative", train("lr: -1.0e-3\n"), ("cfg.yaml: lr must be > 0, got -0.001",)),
    Case("train-lr-wrong-type", train("lr: fast\n"), ("cfg.yaml: lr must be a float, got 'fast'",)),
    Case(
        "train-unknown-model",
        train(model="vit"),
        ("cfg.yaml: model must be one of hourglass, hrnet, resnet, unet, got 'vit'",),
    ),
    Case(
        "train-unknown-backbone",
        train(backbone="hrnet_w99"),
        ("cfg.yaml: backbone must be one of hrnet_w18_small", "for hrnet, got 'hrnet_w99'"),
    ),
    Case(
        "train-unknown-loss",
        train("loss: focal\n"),
        ("cfg.yaml: loss must be one of adaptive_wing, heatmap, got 'focal'",),
    ),
    Case(
        "train-dataset-missing",
        lambda ctx: ["train", str(write(ctx.project / "cfg.yaml", "data_dir: nowhere\n"))],
        ("nowhere: dataset folder missing",),
    ),
    Case(
        "train-corrupt-image",
        train_corrupt_image,
        ("synth00001.png: unreadable image",),
    ),
]


AS_PROCESS = ("best-no-finished-trial",)
test_bad_input_is_one_line_exit_2_and_leaves_no_trace, test_the_real_process_prints_one_line = (
    case_tests(CASES, AS_PROCESS)
)


def test_the_study_without_a_finished_trial_is_otherwise_readable(
    isolated, bad_input_template, capsys
):
    """``best pending`` fails for want of a finished trial, not for a malformed fixture."""
    shutil.copytree(bad_input_template["root"], isolated / "project")
    os.chdir(isolated / "project")
    assert main(["status", "pending", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["states"] == {"PRUNED": 1, "RUNNING": 1} and info["best"] is None


def test_the_driver_checks_names_without_torch():
    """A study, its space and every name in them are checked by a driver that has not
    imported torch (the registries of models, losses and formats import none)."""
    code = (
        "import sys\n"
        "from search.studyfiles.study import load_study\n"
        "load_study('studies/quickstart.yaml')\n"
        "from search.studyfiles.space_file import load_space\n"
        "load_space('spaces/guides.yaml')\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr


def files_under(folder) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def test_a_refused_start_and_a_read_in_an_empty_folder_create_nothing(isolated, capsys):
    """In a folder with no stores yet (a new user's first command): a start its data refuses
    leaves no ``mlruns/`` or Optuna file, and a command that reads MLflow (``predict``) says
    there is no store instead of making an empty one."""
    space = "params:\n  lr: {type: float, low: 0.001, high: 0.01}\nfixed: {warmup_epochs: 0}\n"
    write(isolated / "studies" / "space.yaml", space)
    write(
        isolated / "studies" / "lost.yaml",
        "name: lost\nspace: space.yaml\nnum_samples: 2\nmax_epochs: 2\n"
        "dataset: {root: ../no-such-data, format: aariz}\n",
    )
    (isolated / "no-such-data").mkdir()  # a folder without the format's splits
    image = isolated / "x.png"
    Image.new("L", (40, 50)).save(image)
    before = files_under(isolated)
    assert main(["start", "studies/lost.yaml"]) == 2
    assert "no-such-data" in capsys.readouterr().err
    assert files_under(isolated) == before
    assert main(["predict", "--model", "models:/lost@champion", "x.png", "--out", "preds"]) == 2
    err = capsys.readouterr().err
    assert "no MLflow store at" in err and "nothing was created" in err and err.count("\n") == 1
    assert files_under(isolated) == before
