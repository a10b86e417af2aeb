"""The command line: parse arguments, call one function per command, map errors to exit codes.

A ``CephtuneError`` (bad input) becomes one line on stderr and exit code 2; anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import NoReturn

from search import commands
from search.layout import DEFAULT_STORAGE, STORAGE_ENV
from trainables.data.records import ANNOTATOR_CHOICES, SPLITS, TRAIN_ON
from trainables.errors import CephtuneError, one_line

FORMAT_HELP = "the dataset's format: aariz | isbi | coco | csv, or auto (read from the folder)"
NAME_HELP = "the study's name"
ANNOTATOR_HELP = "whose landmarks, where a dataset has two (ISBI 2015): senior | junior | mean"
STORAGE_HELP = f"the Optuna storage URL (default: ${STORAGE_ENV}, else {DEFAULT_STORAGE})"


class Help(argparse.ArgumentDefaultsHelpFormatter):
    """Every argument's help ends with its default, where it has one (not a flag's False)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.default is False:
            return action.help or ""
        return super()._get_help_string(action) or ""


class Parser(argparse.ArgumentParser):
    """argparse with its usage errors as one ``error:`` line (exit code 2) like every other
    bad input, instead of the usage text followed by the message, and each argument's default
    in its help."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", Help)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def version() -> str:
    try:
        return package_version("cephtune")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer >= ``minimum`` (``--epochs 0`` must not mean the default)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="cephtune",
        description="Hyperparameter search for cephalometric landmark detection.",
    )
    parser.add_argument("--version", action="version", version=f"cephtune {version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("start", help="run a study from its YAML file")
    p.add_argument("study", type=Path, help="a study file, or NAME for studies/NAME.yaml")
    p.add_argument("--fresh", action="store_true", help="delete an existing study of that name")
    p.add_argument("--cpu", action="store_true", help="run a GPU study on CPU")
    p.add_argument("--address", help="existing Ray cluster: auto, HOST:PORT or ray://HOST:PORT")
    p.add_argument("--verbose", action="store_true", help="also Ray's own trial tables")
    p.set_defaults(func=commands.start)

    p = sub.add_parser("resume", help="continue an interrupted study")
    p.add_argument("name", help=NAME_HELP)
    p.add_argument("--storage", help=STORAGE_HELP)
    p.add_argument("--cpu", action="store_true", help="run a GPU study on CPU")
    p.add_argument("--address", help="existing Ray cluster: auto, HOST:PORT or ray://HOST:PORT")
    p.add_argument("--verbose", action="store_true", help="also Ray's own trial tables")
    p.add_argument(
        "--num-samples",
        type=at_least(1),
        metavar="N",
        help="add trials to a finished study until it has N (default: its num_samples)",
    )
    p.set_defaults(func=commands.resume)

    for name, func, text in (
        ("best", commands.best, "the best trial"),
        ("status", commands.status, "trial counts, running trials and the ETA"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("name", help=NAME_HELP)
        shown = p.add_mutually_exclusive_group()
        shown.add_argument("--json", action="store_true", help="as one JSON object")
        if name == "best":
            shown.add_argument(
                "--yaml", action="store_true", help="its training config, for search.py train"
            )
        else:
            p.add_argument(
                "--watch",
                nargs="?",
                const=10.0,
                type=positive_seconds,
                metavar="SECONDS",
                help="print it again every SECONDS (10 if not given) until the study ends or "
                "Ctrl-C (default: once)",
            )
        p.add_argument("--storage", help=STORAGE_HELP)
        p.set_defaults(func=func)

    p = sub.add_parser("init", help="write a study and a space for your dataset and machine")
    p.add_argument("dataset", type=Path, metavar="DATASET_DIR", help="your dataset's folder")
    p.add_argument("--format", default="auto", help=FORMAT_HELP)
    p.add_argument("--name", help="the study's name (default: the dataset folder's)")
    p.add_argument("--gpus", type=at_least(0), help="GPUs to use (default: nvidia-smi's count)")
    p.add_argument("--gpu-memory", type=float, metavar="GB", help="per GPU (default: nvidia-smi's)")
    p.add_argument("--trials", type=at_least(1), default=64, help="the study's num_samples")
    p.add_argument("--epochs", type=at_least(1), default=60, help="the study's max_epochs")
    p.set_defaults(func=commands.init)

    p = sub.add_parser("train", help="train one configuration without Ray")
    p.add_argument("config", type=Path, help="trainable config YAML (e.g. a promoted best.yaml)")
    p.add_argument("--out", type=Path, help="checkpoint folder (default runs/CONFIG_NAME)")
    p.add_argument("--resume", type=Path, metavar="CHECKPOINT", help="a checkpoint to continue")
    p.add_argument("--experiment", default="train", help="MLflow experiment")
    p.set_defaults(func=commands.train)

    p = sub.add_parser("dashboard", help="optuna-dashboard on the study storage")
    p.add_argument("--host", default="127.0.0.1", help="the address it listens on")
    p.add_argument("--port", type=int, default=8080, help="the port it listens on")
    p.add_argument("--storage", help=STORAGE_HELP)
    p.set_defaults(func=commands.dashboard)

    p = sub.add_parser("promote", help="train the best configuration longer, test, register")
    p.add_argument("name", help=NAME_HELP)
    p.add_argument(
        "--epochs", type=at_least(1), help="final epochs (default: the guides' 100 or 150)"
    )
    p.add_argument(
        "--trials", type=at_least(1), default=1, help="re-train the top K, keep the best"
    )
    p.add_argument("--train-on", default="train", choices=TRAIN_ON, help="the final run's data")
    p.add_argument("--seed", type=at_least(0), help="the final run's seed (default: the trial's)")
    p.add_argument("--resume", action="store_true", help="continue the final run's checkpoint")
    p.add_argument("--tta", action="store_true", help="test with test-time augmentation")
    p.add_argument(
        "--compile", action="store_true", help="train with torch.compile (a long final run)"
    )
    p.add_argument(
        "--seeds", type=at_least(1), default=1, help="re-train each candidate with S seeds"
    )
    p.add_argument(
        "--ensemble", type=at_least(2), metavar="K", help="register the top K, merged, as one"
    )
    p.add_argument("--storage", help=STORAGE_HELP)
    p.set_defaults(func=commands.promote)

    p = sub.add_parser("predict", help="landmarks for new images with a registered model")
    p.add_argument("--model", required=True, help="models:/NAME@champion, models:/NAME/3, …")
    p.add_argument(
        "inputs", nargs="+", type=Path, metavar="IMAGE_OR_DIR", help="images, or folders of them"
    )
    p.add_argument("--out", type=Path, required=True, help="folder for one JSON per image")
    p.add_argument(
        "--pixel-size", type=float, metavar="MM", help="echoed into each JSON (never assumed)"
    )
    p.add_argument("--overlay", action="store_true", help="also write a PNG per image")
    p.add_argument("--tta", action="store_true", help="test-time augmentation (scales, shifts)")
    p.set_defaults(func=commands.predict)

    p = sub.add_parser("report", help="an HTML report of a study")
    p.add_argument("name", help=NAME_HELP)
    p.add_argument("--out", type=Path, help="folder (default: studies/NAME/report)")
    p.add_argument("--storage", help=STORAGE_HELP)
    p.set_defaults(func=commands.report)

    p = sub.add_parser("evaluate", help="score a folder of landmark JSON predictions")
    p.add_argument("--pred", type=Path, required=True, help="folder of <ceph_id>.json")
    p.add_argument("--dataset", type=Path, required=True, help="the dataset with the truth")
    p.add_argument("--split", default="test", choices=SPLITS, help="the split scored")
    p.add_argument("--format", default="auto", help=FORMAT_HELP)
    p.add_argument("--annotator", default="mean", choices=ANNOTATOR_CHOICES, help=ANNOTATOR_HELP)
    p.add_argument("--json", action="store_true", help="as one JSON object")
    p.set_defaults(func=commands.evaluate)

    data = sub.add_parser("data", help="dataset tools").add_subparsers(dest="data", required=True)
    p = data.add_parser("check", help="validate a dataset; exit 1 when it has errors")
    p.add_argument("dataset", type=Path, help="the dataset folder")
    p.add_argument("--format", default="auto", help=FORMAT_HELP)
    p.add_argument("--json", action="store_true", help="as one JSON object")
    p.set_defaults(func=commands.data_check)
    p = data.add_parser("synth", help="write a synthetic Aariz-layout dataset")
    p.add_argument("out_dir", help="a new folder")
    p.add_argument("--n", type=at_least(3), default=100, help="images (split 70/15/15)")
    p.add_argument(
        "--size", type=at_least(32), nargs=2, metavar=("W", "H"), default=(1935, 2400),
        help="each image's pixels",
    )  # fmt: skip
    p.add_argument("--seed", type=at_least(0), default=0, help="of the generator")
    p.set_defaults(func=commands.data_synth)
    p = data.add_parser("convert", help="rewrite a dataset in the COCO keypoints or CSV format")
    p.add_argument("dataset", type=Path, help="the dataset folder")
    p.add_argument("out_dir", type=Path, help="a new folder")
    p.add_argument("--to", required=True, choices=("coco", "csv"), help="the format written")
    p.add_argument("--format", default="auto", help="of DATASET: " + FORMAT_HELP)
    p.add_argument("--annotator", default="mean", choices=ANNOTATOR_CHOICES, help=ANNOTATOR_HELP)
    p.set_defaults(func=commands.data_convert)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # a usage error (one line, code 2) or --help (code 0)
        return e.code if isinstance(e.code, int) else 2
    if getattr(args, "storage", "") is None:  # asked for by the command, not given
        args.storage = os.environ.get(STORAGE_ENV) or DEFAULT_STORAGE
    try:
        from search.process import prepare_driver

        prepare_driver()
        return args.func(args) or 0
    except CephtuneError as e:
        print(f"error: {one_line(str(e))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
