"""The command line: parse arguments, call one function per command, map errors to exit codes.

A ``CephtuneError`` (bad input) becomes one line on stderr and exit code 2; anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from search.study import DEFAULT_STORAGE
from trainables.errors import CephtuneError


def cmd_start(args: argparse.Namespace) -> int:
    from search import tuner
    from search.study import load_study
    from search.summary import summary

    study = load_study(args.study)
    data_root, complete = tuner.start(study, args.fresh, args.cpu, args.address)
    return summary(study, data_root, complete)


def cmd_resume(args: argparse.Namespace) -> int:
    from search import tuner
    from search.summary import summary

    study, data_root, complete = tuner.resume(args.name, args.storage, args.cpu, args.address)
    return summary(study, data_root, complete)


def cmd_best(args: argparse.Namespace) -> None:
    from search import results

    found = results.best(results.load(args.name, args.storage))
    if args.json:
        print(json.dumps(found, sort_keys=True))
        return
    print(f"study {found['study']}: best trial #{found['trial']} value {found['value']:.4f}")
    for key, value in sorted(found["config"].items()):
        print(f"  {key}: {value}")


def cmd_status(args: argparse.Namespace) -> None:
    from search import results

    info = results.status(results.load(args.name, args.storage))
    if args.json:
        print(json.dumps(info, sort_keys=True))
        return
    states = ", ".join(f"{k.lower()} {v}" for k, v in info["states"].items()) or "none"
    print(f"study {info['study']}: {info['trials']} trials ({states})")
    if info["interrupted"]:
        print(
            f"  {info['interrupted']} of the failed were running when a driver stopped: "
            "interrupted and replaced"
        )
    if info["best"]:
        print(f"best so far: trial #{info['best']['trial']} value {info['best']['value']:.4f}")


def cmd_dashboard(args: argparse.Namespace) -> None:
    import socket

    import optuna_dashboard

    from search.storage import open_storage
    from trainables.errors import ConfigError

    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"warning: the dashboard is reachable from other machines on {args.host}",
            file=sys.stderr,
        )
    storage = open_storage(args.storage)
    try:  # fail before printing the address when the port is taken
        socket.create_server((args.host, args.port)).close()
    except OSError as e:
        raise ConfigError(
            f"dashboard: cannot listen on {args.host}:{args.port} ({e.strerror or e})"
        ) from None
    print(f"optuna-dashboard on http://{args.host}:{args.port} (Ctrl-C to stop)")
    optuna_dashboard.run_server(storage, host=args.host, port=args.port)


def cmd_train(args: argparse.Namespace) -> None:
    from search.standalone import train

    out = args.out or Path("runs") / args.config.stem
    result = train(args.config, out, args.resume, args.experiment)
    best = result["best"]
    print(f"best valid MRE {best['mre_mm']:.3f} mm (epoch {best.get('epoch', '?')})")
    print(f"checkpoints: {out}/best.pt, {out}/last.pt; MLflow run {result['run_id']}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from trainables.evaluate import score_predictions

    scores = score_predictions(args.pred, args.dataset, args.split, args.annotator, args.format)
    if args.json:
        print(json.dumps(scores, sort_keys=True))
        return
    print(
        f"{scores['images']} images of {args.split}: MRE {scores['mre_mm']:.3f} "
        f"± {scores['mre_sd_mm']:.3f} mm"
    )
    print(
        "SDR "
        + "  ".join(
            f"{k[4:].replace('_', '.')}: {v:.1%}" for k, v in scores.items() if k.startswith("sdr_")
        )
    )
    print(f"{'landmark':>9} {'MRE mm':>8} {'SD mm':>7} {'SDR2mm':>7}")
    for symbol, row in scores["per_landmark"].items():
        print(f"{symbol:>9} {row['mre_mm']:8.3f} {row['sd_mm']:7.3f} {row['sdr_2mm']:7.1%}")
    if scores["missing_landmarks"]:
        print(f"{scores['missing_landmarks']} landmarks without ground truth were not scored")


def cmd_promote(args: argparse.Namespace) -> None:
    from search.promote import promote

    done = promote(
        args.name, args.storage, args.epochs, args.trials, args.train_on, args.seed, args.resume
    )
    print(f"Promoted trial #{done['trial']} of {args.name!r}: {done['best_yaml']}")
    print(
        f"Test ({done['images']} images): MRE {done['mre_mm']:.3f} ± {done['mre_sd_mm']:.3f} mm, "
        f"SDR 2/2.5/3/4 mm {done['sdr_2mm']:.1%} / {done['sdr_2_5mm']:.1%} / "
        f"{done['sdr_3mm']:.1%} / {done['sdr_4mm']:.1%}"
    )
    print(f"Per-landmark table and overlays: {done['final']}")
    print(f"Registered models:/{args.name}/{done['version']} as @{done['alias']}")


def cmd_predict(args: argparse.Namespace) -> None:
    from search.predict import predict

    written = predict(args.model, args.inputs, args.out, args.pixel_size, args.overlay)
    print(f"wrote {len(written)} predictions to {args.out}")


def cmd_report(args: argparse.Namespace) -> None:
    from search.report import write_report

    path = write_report(args.name, args.storage, args.out)
    print(f"report: {path}")


def cmd_data_check(args: argparse.Namespace) -> int:
    from trainables.check import check_dataset

    report = check_dataset(args.dataset, args.format)
    if args.json:
        print(json.dumps(report.to_dict(), sort_keys=True))
    else:
        print("\n".join(report.summary_lines()))
    return 0 if report.ok else 1


def cmd_data_synth(args: argparse.Namespace) -> None:
    from trainables.synth import SynthSpec, write_dataset

    spec = SynthSpec(n=args.n, width=args.size[0], height=args.size[1], seed=args.seed)
    out = write_dataset(spec, Path(args.out_dir))
    print(f"wrote {spec.n} synthetic cephalograms ({spec.width}x{spec.height}) to {out}")


class Parser(argparse.ArgumentParser):
    """argparse with its usage errors as one ``error:`` line (exit code 2) like every other
    bad input, instead of the usage text followed by the message."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


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


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="cephtune",
        description="Hyperparameter search for cephalometric landmark detection.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("start", help="run a study from its YAML file")
    p.add_argument("study", type=Path)
    p.add_argument("--fresh", action="store_true", help="delete an existing study of that name")
    p.add_argument("--cpu", action="store_true", help="run a GPU study on CPU")
    p.add_argument("--address", help="existing Ray cluster: auto, HOST:PORT or ray://HOST:PORT")
    p.set_defaults(func=cmd_start)

    p = sub.add_parser("resume", help="continue an interrupted study")
    p.add_argument("name")
    p.add_argument("--storage", default=DEFAULT_STORAGE)
    p.add_argument("--cpu", action="store_true", help="run a GPU study on CPU")
    p.add_argument("--address", help="existing Ray cluster: auto, HOST:PORT or ray://HOST:PORT")
    p.set_defaults(func=cmd_resume)

    for name, func, text in (
        ("best", cmd_best, "the best trial"),
        ("status", cmd_status, "trial counts by state"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("name")
        p.add_argument("--json", action="store_true")
        p.add_argument("--storage", default=DEFAULT_STORAGE)
        p.set_defaults(func=func)

    p = sub.add_parser("train", help="train one configuration without Ray")
    p.add_argument("config", type=Path, help="trainable config YAML (e.g. a promoted best.yaml)")
    p.add_argument("--out", type=Path, help="checkpoint folder (default runs/CONFIG_NAME)")
    p.add_argument("--resume", type=Path, metavar="CHECKPOINT")
    p.add_argument("--experiment", default="train", help="MLflow experiment")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("dashboard", help="optuna-dashboard on the study storage")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--storage", default=DEFAULT_STORAGE)
    p.set_defaults(func=cmd_dashboard)

    p = sub.add_parser("promote", help="train the best configuration longer, test, register")
    p.add_argument("name")
    p.add_argument(
        "--epochs", type=at_least(1), help="final epochs (default: the guides' 100 or 150)"
    )
    p.add_argument(
        "--trials", type=at_least(1), default=1, help="re-train the top K, keep the best"
    )
    p.add_argument("--train-on", default="train", choices=("train", "train+valid"))
    p.add_argument("--seed", type=at_least(0))
    p.add_argument("--resume", action="store_true", help="continue the final run's checkpoint")
    p.add_argument("--storage", default=DEFAULT_STORAGE)
    p.set_defaults(func=cmd_promote)

    p = sub.add_parser("predict", help="landmarks for new images with a registered model")
    p.add_argument("--model", required=True, help="models:/NAME@champion, models:/NAME/3, …")
    p.add_argument("inputs", nargs="+", type=Path, metavar="IMAGE_OR_DIR")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--pixel-size", type=float, metavar="MM")
    p.add_argument("--overlay", action="store_true", help="also write a PNG per image")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("report", help="an HTML report of a study")
    p.add_argument("name")
    p.add_argument("--out", type=Path)
    p.add_argument("--storage", default=DEFAULT_STORAGE)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("evaluate", help="score a folder of landmark JSON predictions")
    p.add_argument("--pred", type=Path, required=True, help="folder of <ceph_id>.json")
    p.add_argument("--dataset", type=Path, required=True)
    p.add_argument("--split", default="test", choices=("train", "valid", "test"))
    p.add_argument("--format", default="aariz", help="dataset format: aariz | isbi")
    p.add_argument("--annotator", default="mean", choices=("senior", "junior", "mean"))
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_evaluate)

    data = sub.add_parser("data", help="dataset tools").add_subparsers(dest="data", required=True)
    p = data.add_parser("check", help="validate a dataset; exit 1 when it has errors")
    p.add_argument("dataset", type=Path)
    p.add_argument("--format", default="aariz", help="dataset format: aariz | isbi")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_data_check)
    p = data.add_parser("synth", help="write a synthetic Aariz-layout dataset")
    p.add_argument("out_dir")
    p.add_argument("--n", type=at_least(3), default=100)
    p.add_argument("--size", type=at_least(32), nargs=2, metavar=("W", "H"), default=(1935, 2400))
    p.add_argument("--seed", type=at_least(0), default=0)
    p.set_defaults(func=cmd_data_synth)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # a usage error (one line, code 2) or --help (code 0)
        return e.code if isinstance(e.code, int) else 2
    try:
        from search.logs import quiet_libraries

        quiet_libraries()
        return args.func(args) or 0
    except CephtuneError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
