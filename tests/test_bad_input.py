"""Hostile input, end to end (issue 7): each case is one ``search.cli.main`` call.

Every case must print exactly one ``error:`` line on stderr naming the file (and the key or line)
and the rule, exit with code 2, show no traceback, and leave no trace. The project folder starts
as another study left it: an Optuna storage with three studies and an MLflow store with one
experiment and run (built once, copied per case). Afterwards every row of both sqlite files must
be unchanged (read with sqlite3: opening a store per case through Optuna or MLflow would cost
about a second each), no file may appear in the project folder or outside it, and nothing in the
cache folder. A few cases also run as a real process.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from search.cli import main
from tests.helpers import REPO, TINY_SPACE, TINY_TRAINABLE, write
from trainables.data.synth import SynthSpec, write_dataset

OPTUNA_DB = Path("studies/optuna.db")
MLFLOW_DB = Path("mlruns/mlflow.db")
ANN = "Annotations/Cephalometric Landmarks"
CSV_NAME = "cephalogram_machine_mappings.csv"
PWNED = "PWNED"  # what a YAML ``!!python/object/apply:os.system`` tag would create


@dataclass(frozen=True)
class Ctx:
    """Where a case builds its input: the project folder (the current directory) and the
    pristine datasets, which a case copies before it corrupts them."""

    project: Path
    aariz: Path
    isbi: Path

    def data(self, fmt: str = "aariz") -> Path:
        """A private copy of a pristine dataset inside the project folder."""
        return Path(
            shutil.copytree(self.aariz if fmt == "aariz" else self.isbi, self.project / fmt)
        )


Build = Callable[[Ctx], list[str]]


@dataclass(frozen=True)
class Case:
    id: str
    build: Build  # writes the bad input under ctx.project, returns the argv
    expect: tuple[str, ...]  # substrings of the one error line: file, key or line, rule
    ray: bool = False  # needs the session's Ray (the check runs after Ray is joined)
    generates: bool = False  # synthetic data is generated before the failure: cache may hold it


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# --- study and space files -------------------------------------------------------------------

SPACE = TINY_SPACE


def study_text(root: Path | str, *overrides: str, drop: tuple[str, ...] = ()) -> str:
    """A valid study on ``root`` with top-level keys replaced by ``overrides`` lines."""
    lines = {
        "name": "name: bad",
        "dataset": f"dataset: {{format: aariz, root: {root}}}",
        "space": "space: space.yaml",
        "num_samples": "num_samples: 2",
        "max_epochs": "max_epochs: 2",
        "asha": "asha: {grace_period: 1, reduction_factor: 2}",
        "resources": "resources: {cpu: 1}",
    }
    extra = []
    for line in overrides:
        key = line.split(":")[0]
        if key in lines:
            lines[key] = line
        else:
            extra.append(line)
    return "\n".join([v for k, v in lines.items() if k not in drop] + extra) + "\n"


def study(*overrides: str, drop: tuple[str, ...] = (), space: str = SPACE) -> Build:
    """``start bad.yaml``: the study with ``overrides`` on the pristine Aariz data."""

    def build(ctx: Ctx) -> list[str]:
        write(ctx.project / "space.yaml", space)
        path = write(ctx.project / "bad.yaml", study_text(ctx.aariz, *overrides, drop=drop))
        return ["start", str(path)]

    return build


def study_raw(text: str) -> Build:
    def build(ctx: Ctx) -> list[str]:
        write(ctx.project / "space.yaml", SPACE)
        return ["start", str(write(ctx.project / "bad.yaml", text))]

    return build


def space(text: str) -> Build:
    """``start bad.yaml`` of a valid study whose space file is ``text``."""
    return study(space=text)


def params(*lines: str, fixed: str = "") -> str:
    body = "params:\n" + "".join(f"  {line}\n" for line in lines)
    return body + (f"fixed: {fixed}\n" if fixed else "")


LR = "lr: {type: float, low: 1.0e-3, high: 3.0e-3}"

# --- datasets --------------------------------------------------------------------------------


def corrupt(change: Callable[[Path], None], fmt: str = "aariz") -> Build:
    """``start bad.yaml`` on a copy of the pristine dataset after ``change(root)``."""

    def build(ctx: Ctx) -> list[str]:
        root = ctx.data(fmt)
        change(root)
        write(ctx.project / "space.yaml", SPACE)
        text = study_text(root, f"dataset: {{format: {fmt}, root: {root}}}")
        return ["start", str(write(ctx.project / "bad.yaml", text))]

    return build


def senior(root: Path, ceph_id: str, split: str = "train") -> Path:
    return root / split / ANN / "Senior Orthodontists" / f"{ceph_id}.json"


def edit_json(path: Path, change: Callable[[list[dict]], None]) -> None:
    doc = json.loads(path.read_text())
    change(doc["landmarks"])
    path.write_text(json.dumps(doc))


def set_item(index: int, **values) -> Callable[[list[dict]], None]:
    def change(items: list[dict]) -> None:
        items[index].update(values)

    return change


def drop_symbol(items: list[dict]) -> None:
    del items[3]["symbol"]


def edit_csv(change: Callable[[list[dict]], list[dict]]) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        path = root / CSV_NAME
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            fields, rows = reader.fieldnames, list(reader)
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(change(rows))

    return edit


def pixel_size(value: str) -> Callable[[Path], None]:
    def change(rows: list[dict]) -> list[dict]:
        rows[1]["pixel_size"] = value
        return rows

    return edit_csv(change)


def truncate(path_in_root: str) -> Callable[[Path], None]:
    def change(root: Path) -> None:
        path = root / path_in_root
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])

    return change


def truncated_jpeg(path_in_root: str) -> Callable[[Path], None]:
    """The PNG as a JPEG cut in half (PIL's verify sees nothing wrong with it)."""

    def change(root: Path) -> None:
        png = root / path_in_root
        jpeg = png.with_suffix(".jpg")
        with Image.open(png) as im:
            im.save(jpeg, quality=95)
        png.unlink()
        truncate(str(jpeg.relative_to(root)))(root)

    return change


def replace_bytes(path_in_root: str, data: bytes) -> Callable[[Path], None]:
    return lambda root: (root / path_in_root).write_bytes(data)


def remove(path_in_root: str) -> Callable[[Path], None]:
    def change(root: Path) -> None:
        target = root / path_in_root
        shutil.rmtree(target) if target.is_dir() else target.unlink()

    return change


def isbi_lines(path_in_root: str, keep: int | None = None, first: str | None = None):
    def change(root: Path) -> None:
        path = root / path_in_root
        lines = path.read_text().splitlines()
        if first is not None:
            lines[0] = first
        path.write_text("\n".join(lines[:keep]) + "\n")

    return change


def write_isbi(root: Path) -> Path:
    """A tiny ISBI 2015 tree: 4 BMPs of 48 x 60 px, senior and junior annotations."""
    for folder, ids in {"TrainingData": (1, 2), "Test1Data": (3,), "Test2Data": (4,)}.items():
        (root / "RawImage" / folder).mkdir(parents=True)
        for n in ids:
            rng = np.random.default_rng(n)
            pixels = rng.integers(0, 255, (60, 48), dtype=np.uint8)
            Image.fromarray(pixels).save(root / "RawImage" / folder / f"{n:03d}.bmp")
            points = np.round(rng.uniform(5, [40, 50], size=(19, 2)))
            for who in ("senior", "junior"):
                lines = [f"{x:g},{y:g}" for x, y in points] + ["3", "1"]
                write(root / "AnnotationsByMD" / f"400_{who}" / f"{n:03d}.txt", "\n".join(lines))
    return root


# --- training configs and plain commands -----------------------------------------------------


def promote_on(change: Callable[[Path], None], *options: str) -> Build:
    """``promote done``: the finished study's data (``./aariz``) after ``change(root)``."""

    def build(ctx: Ctx) -> list[str]:
        change(ctx.data())
        return ["promote", "done", *options]

    return build


def train(text: str = "", **overrides: object) -> Build:
    """``train cfg.yaml``: a training config on the pristine Aariz data plus ``text``."""

    def build(ctx: Ctx) -> list[str]:
        values = {"data_dir": str(ctx.aariz), **TINY_TRAINABLE, **overrides}
        body = yaml.safe_dump(values) + text
        return ["train", str(write(ctx.project / "cfg.yaml", body)), "--out", "run"]

    return build


def argv(*args: str) -> Build:
    return lambda ctx: list(args)


def predict_text_file(ctx: Ctx) -> list[str]:
    write(ctx.project / "notes.txt", "not an image")
    return ["predict", "--model", "models:/nope@champion", "notes.txt", "--out", "preds"]


def predict_unknown_model(ctx: Ctx) -> list[str]:
    image = next((ctx.aariz / "test" / "Cephalograms").iterdir())
    return ["predict", "--model", "models:/nope@champion", str(image), "--out", "preds"]


def train_corrupt_image(ctx: Ctx) -> list[str]:
    root = ctx.data()
    (root / "train/Cephalograms/synth00001.png").write_text("not an image")
    body = yaml.safe_dump({"data_dir": str(root), **TINY_TRAINABLE, "epochs": 1})
    return ["train", str(write(ctx.project / "cfg.yaml", body)), "--out", "run"]


def synthetic_on_gpu(ctx: Ctx) -> list[str]:
    write(ctx.project / "space.yaml", SPACE)
    text = study_text(
        "unused",
        "dataset: {format: synthetic, n: 3, size: [32, 40], seed: 5}",
        "resources: {cpu: 1, gpu: 1}",
    )
    return ["start", str(write(ctx.project / "bad.yaml", text))]


TAG = "!!python/object/apply:os.system ['touch PWNED']"
CASES = [
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
    # datasets
    Case(
        "data-root-missing",
        study("dataset: {format: aariz, root: nowhere}"),
        ("nowhere: dataset folder missing",),
    ),
    Case("data-split-missing", corrupt(remove("valid")), ("valid: folder missing",)),
    Case(
        "data-csv-missing",
        corrupt(remove(CSV_NAME)),
        (f"{CSV_NAME}: pixel-size CSV missing", "never assumed"),
    ),
    Case(
        "data-pixel-size-id-missing",
        corrupt(edit_csv(lambda rows: rows[:1] + rows[2:])),
        ("synth00001.png", "no pixel size for id 'synth00001'", CSV_NAME),
    ),
    Case(
        "data-pixel-size-id-twice",
        corrupt(edit_csv(lambda rows: rows + [{**rows[0], "pixel_size": "0.2"}])),
        (f"{CSV_NAME}:8", "cephalogram_id 'synth00000' is listed twice"),
    ),
    Case(
        "data-csv-not-text",
        corrupt(replace_bytes(CSV_NAME, b"cephalogram_id,pixel_size\n\xff\xfe,0.1\n")),
        (f"{CSV_NAME}: not a readable CSV",),
    ),
    Case(
        "data-pixel-size-empty",
        corrupt(pixel_size("")),
        (f"{CSV_NAME}:3", "pixel_size is not a number"),
    ),
    Case(
        "data-pixel-size-zero",
        corrupt(pixel_size("0")),
        (f"{CSV_NAME}:3", "pixel_size must be > 0, got 0.0"),
    ),
    Case(
        "data-pixel-size-negative",
        corrupt(pixel_size("-0.1")),
        (f"{CSV_NAME}:3", "pixel_size must be > 0, got -0.1"),
    ),
    Case(
        "data-image-is-text",
        corrupt(replace_bytes("train/Cephalograms/synth00001.png", b"not an image")),
        ("synth00001.png: unreadable image",),
    ),
    Case(
        "data-image-truncated",
        corrupt(truncate("valid/Cephalograms/synth00004.png")),
        ("synth00004.png: unreadable image",),
    ),
    Case(
        "data-jpeg-truncated",
        corrupt(truncated_jpeg("train/Cephalograms/synth00003.png")),
        ("synth00003.jpg: unreadable image",),
    ),
    Case(
        "data-isbi-bmp-truncated",
        corrupt(truncate("RawImage/TrainingData/002.bmp"), fmt="isbi"),
        ("002.bmp: unreadable image",),
    ),
    Case(
        "data-annotation-malformed-json",
        corrupt(replace_bytes(f"train/{ANN}/Junior Orthodontists/synth00002.json", b"{")),
        ("synth00002.json: malformed landmark JSON (line 1",),
    ),
    Case(
        "data-annotation-missing",
        corrupt(remove(f"train/{ANN}/Junior Orthodontists/synth00002.json")),
        ("synth00002.json: annotation missing",),
    ),
    Case(
        "data-landmark-symbol-missing",
        corrupt(lambda root: edit_json(senior(root, "synth00000"), drop_symbol)),
        ("synth00000.json: landmarks[3].symbol missing",),
    ),
    Case(
        "data-landmark-symbol-unknown",
        corrupt(lambda root: edit_json(senior(root, "synth00000"), set_item(0, symbol="XX"))),
        ("synth00000.json: unknown landmark symbol 'XX'",),
    ),
    Case(
        "data-landmark-symbol-twice",
        corrupt(lambda root: edit_json(senior(root, "synth00000"), set_item(1, symbol="A"))),
        ("synth00000.json: landmarks[1].symbol 'A' appears twice",),
    ),
    Case(
        "data-landmark-outside-the-image",
        corrupt(
            lambda root: edit_json(
                senior(root, "synth00003"), set_item(14, value={"x": 80, "y": 7})
            )
        ),
        ("synth00003.json: landmark 'Go' must lie inside the 80x100 image synth00003.png",),
    ),
    Case(
        "data-isbi-fewer-than-19-lines",
        corrupt(isbi_lines("AnnotationsByMD/400_junior/002.txt", keep=12), fmt="isbi"),
        ("002.txt:13: expected 19 landmark lines",),
    ),
    Case(
        "data-isbi-landmark-outside-the-image",
        corrupt(isbi_lines("AnnotationsByMD/400_senior/003.txt", first="-4,10"), fmt="isbi"),
        ("003.txt: landmark 'S' must lie inside the 48x60 image 003.bmp, got (-4, 10)",),
    ),
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


# --- the fixtures: a project folder with unrelated records, pristine datasets ----------------


def make_template(root: Path) -> Path:
    """A project folder as other studies left it. Optuna: ``unrelated`` (not made by cephtune,
    two COMPLETE trials), ``pending`` (one PRUNED, one RUNNING trial: no finished one) and
    ``done`` (one COMPLETE trial on ``./aariz``); MLflow: one experiment with one run."""
    import optuna
    from mlflow.tracking import MlflowClient

    (root / "studies").mkdir(parents=True)
    (root / "mlruns").mkdir()
    storage = f"sqlite:///{root / OPTUNA_DB}"
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        unrelated = optuna.create_study(study_name="unrelated", storage=storage)
        unrelated.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
        # What search/tuner.py records and search/results.py, search/promote.py read back.
        pending = optuna.create_study(study_name="pending", storage=storage)
        attrs = {
            "metric": "mre_mm",
            "constants": {"data_dir": str(root / "data"), "epochs": 2},
            "spec": {},
            "study_file": str(root / "gone.yaml"),
            "mlflow_experiment_id": "0",
            "mlflow_parent_run_id": "none",
        }
        for key, value in attrs.items():
            pending.set_user_attr(key, value)
        pruned = pending.ask({"lr": optuna.distributions.FloatDistribution(1e-4, 1e-3)})
        pruned.report(3.5, step=1)
        pending.tell(pruned, state=optuna.trial.TrialState.PRUNED)
        pending.ask()  # still RUNNING
        # A finished study whose constants name the dataset relative to the project folder, so
        # that each case can give it its own (corrupted) copy.
        done = optuna.create_study(study_name="done", storage=storage)
        done.set_user_attr("metric", "mre_mm")
        done.set_user_attr("constants", {**TINY_TRAINABLE, "data_dir": "aariz", "epochs": 2})
        done.add_trial(
            optuna.trial.create_trial(
                params={"lr": 1e-3},
                distributions={"lr": optuna.distributions.FloatDistribution(1e-4, 1e-2)},
                value=3.0,
            )
        )
    finally:
        optuna.logging.set_verbosity(verbosity)
    client = MlflowClient(f"sqlite:///{root / MLFLOW_DB}")
    experiment = client.create_experiment(
        "unrelated", artifact_location=(root / "mlruns" / "artifacts").as_uri()
    )
    run = client.create_run(experiment, run_name="unrelated")
    client.log_metric(run.info.run_id, "mre_mm", 2.5)
    client.set_terminated(run.info.run_id)
    return root


def rows(db: Path) -> list[str]:
    """Every row of every table, as SQL: equal before and after means no record changed."""
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
        return list(con.iterdump())


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> dict:
    root = make_template(tmp_path_factory.mktemp("template") / "project")
    found = {"root": root, "optuna": rows(root / OPTUNA_DB), "mlflow": rows(root / MLFLOW_DB)}
    for store in ("optuna", "mlflow"):  # the comparison is not vacuous
        assert sum("INSERT" in row and "unrelated" in row for row in found[store]) >= 1
    return found


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("datasets")
    aariz = write_dataset(SynthSpec(n=6, width=80, height=100, seed=0), root / "aariz")
    return {"aariz": aariz, "isbi": write_isbi(root / "isbi")}


def files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def check_no_trace(case: Case, template: dict, tmp: Path, project: Path, before: set[str]):
    """The records, the project folder and the cache are as they were before the command."""
    assert rows(project / OPTUNA_DB) == template["optuna"], "the Optuna storage changed"
    assert rows(project / MLFLOW_DB) == template["mlflow"], "the MLflow store changed"
    assert files(project) - before == set()
    assert not (project / PWNED).exists()
    assert sorted(p.name for p in tmp.iterdir()) == ["cache", "project"], "wrote outside"
    cached = files(tmp / "cache")
    if case.generates:  # a complete synthetic dataset, which later studies reuse, and no more
        assert cached and all(name.startswith("synthetic/v") for name in cached)
        assert not any(part.startswith(".") for name in cached for part in Path(name).parts)
    else:
        assert cached == set()


def setup_case(case: Case, tmp: Path, template: dict, pristine: dict) -> tuple[Path, list[str]]:
    project = Path(shutil.copytree(template["root"], tmp / "project"))
    (tmp / "cache").mkdir()
    os.chdir(project)
    return project, case.build(Ctx(project, pristine["aariz"], pristine["isbi"]))


def check_one_line(err: str, case: Case) -> None:
    assert "Traceback" not in err
    assert "s3cret" not in err  # a storage password is masked in every message
    assert err.endswith("\n") and err.count("\n") == 1, f"not one line: {err!r}"
    assert err.startswith("error: ")
    for part in case.expect:
        assert part in err, f"{part!r} missing from {err!r}"


def params_of(cases: list[Case]) -> list:
    return [pytest.param(c, id=c.id) for c in cases]


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CEPHTUNE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    return tmp_path


@pytest.mark.parametrize("case", params_of(CASES))
def test_bad_input_is_one_line_exit_2_and_leaves_no_trace(
    case, isolated, template, pristine, request, capsys
):
    if case.ray:
        request.getfixturevalue("ray_cluster")
    project, args = setup_case(case, isolated, template, pristine)
    before = files(project)
    capsys.readouterr()
    code = main(args)
    out, err = capsys.readouterr()
    assert code == 2, err
    check_one_line(err, case)
    assert out == ""
    check_no_trace(case, template, isolated, project, before)


# The process cases that start Ray (its notices, Optuna's and MLflow's must not reach stderr).
SUBPROCESS = (
    "study-python-tag",
    "data-image-truncated",
    "best-no-finished-trial",
    "study-more-cpus-than-any-node",
    "study-storage-unreachable",
)


@pytest.mark.parametrize("case", [c for c in CASES if c.id in SUBPROCESS], ids=lambda c: c.id)
def test_the_real_process_prints_one_line(case, isolated, template, pristine):
    project, args = setup_case(case, isolated, template, pristine)
    before = files(project)
    env = {"PATH": os.environ["PATH"], "CEPHTUNE_CACHE_DIR": str(isolated / "cache")}
    result = subprocess.run(
        [sys.executable, str(REPO / "search.py"), *args],
        cwd=project,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    check_one_line(result.stderr, case)
    assert result.stdout == ""
    check_no_trace(case, template, isolated, project, before)


def test_the_study_without_a_finished_trial_is_otherwise_readable(isolated, template, capsys):
    """``best pending`` fails for want of a finished trial, not for a malformed fixture."""
    shutil.copytree(template["root"], isolated / "project")
    os.chdir(isolated / "project")
    assert main(["status", "pending", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["states"] == {"PRUNED": 1, "RUNNING": 1} and info["best"] is None


def test_the_driver_checks_names_without_torch():
    """A study, its space and every name in them are checked by a driver that has not
    imported torch (the registries of models, losses and formats import none)."""
    code = (
        "import sys\n"
        "from search.spec.study import load_study\n"
        "load_study('studies/quickstart.yaml')\n"
        "from search.spec.space_file import load_space\n"
        "load_space('spaces/guides.yaml')\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
