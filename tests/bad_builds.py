"""What the hostile-input cases write (``tests/bad_input.py`` runs them): a study or space file
with keys replaced, a copy of a pristine dataset with one thing broken, a training config, a
plain command line. Each builder returns a ``Build``: it writes under the case's project folder
and returns the ``search.py`` arguments.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import yaml
from PIL import Image

from tests.bad_input import Build, Ctx
from tests.helpers import TINY_SPACE, TINY_TRAINABLE, write

ANN = "Annotations/Cephalometric Landmarks"
CSV_NAME = "cephalogram_machine_mappings.csv"


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


def folder_instead(path_in_root: str) -> Callable[[Path], None]:
    """The file at ``path_in_root`` replaced by a folder of that name."""

    def change(root: Path) -> None:
        (root / path_in_root).unlink()
        (root / path_in_root).mkdir()

    return change


def isbi_lines(path_in_root: str, keep: int | None = None, first: str | None = None):
    def change(root: Path) -> None:
        path = root / path_in_root
        lines = path.read_text().splitlines()
        if first is not None:
            lines[0] = first
        path.write_text("\n".join(lines[:keep]) + "\n")

    return change


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


def with_file(name: str, *args: str) -> Build:
    """``args``, run beside a plain file ``name`` in the project folder (where a folder goes)."""

    def build(ctx: Ctx) -> list[str]:
        write(ctx.project / name, "not a folder")
        return list(args)

    return build


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
