"""One function per command: call the module that owns it, print what a user reads. Each
imports what it needs when it runs, so ``--help`` and a bad argument answer at once.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from search.layout import Layout


def start(args: argparse.Namespace) -> int:
    from search.studyfiles.study import load_study

    spec = load_study(study_file(args.study))  # refused before Ray and MLflow are imported
    from search.app.summary import summary
    from search.run import lifecycle

    here = Layout.here()
    return summary(lifecycle.start(spec, here, args.fresh, args.cpu, args.address, args.verbose))


def study_file(given: Path) -> Path:
    """``start``'s argument: a study file, or a bare NAME for ``studies/NAME.yaml``."""
    named = Path("studies") / f"{given}.yaml"
    if given.exists() or given.suffix or len(given.parts) != 1 or not named.is_file():
        return given
    return named


def resume(args: argparse.Namespace) -> int:
    from search.app.summary import summary
    from search.run import lifecycle

    here = Layout.here()
    outcome = lifecycle.resume(
        args.name, args.storage, here, args.cpu, args.address, args.verbose, args.num_samples
    )
    return summary(outcome)


def _study(args: argparse.Namespace):
    from search.records.storage import open_study

    return open_study(args.name, Layout.here().url(args.storage))


def best(args: argparse.Namespace) -> None:
    from search.records import ranking

    study = _study(args)
    found = ranking.best(study)
    if args.yaml:
        import yaml

        from search.records.trials import training_config

        values = training_config(study, study.trials[found["trial"]])
        print(f"# study {found['study']}, trial #{found['trial']}: value {found['value']:.4f}")
        print(yaml.safe_dump(values, sort_keys=True), end="")
        return
    if args.json:
        print(json.dumps(found, sort_keys=True))
        return
    print(f"study {found['study']}: best trial #{found['trial']} value {found['value']:.4f}")
    for key, value in sorted(found["config"].items()):
        print(f"  {key}: {value}")


def status(args: argparse.Namespace) -> int:
    from search.app.status import show

    return show(_study(args), args.json, args.watch)


def dashboard(args: argparse.Namespace) -> None:
    import socket

    import optuna_dashboard

    from search.records.storage import open_storage
    from trainables.errors import ConfigError

    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"warning: the dashboard is reachable from other machines on {args.host}",
            file=sys.stderr,
        )
    storage = open_storage(Layout.here().url(args.storage), "--storage", must_exist=True)
    try:  # fail before printing the address when the port is taken
        socket.create_server((args.host, args.port)).close()
    except OSError as e:
        raise ConfigError(
            f"dashboard: cannot listen on {args.host}:{args.port} ({e.strerror or e})"
        ) from None
    print(f"optuna-dashboard on http://{args.host}:{args.port} (Ctrl-C to stop)")
    optuna_dashboard.run_server(storage, host=args.host, port=args.port)


def init(args: argparse.Namespace) -> None:
    from search.app.init import init, read_machine

    machine = read_machine(args.gpus, args.gpu_memory)
    done = init(Layout.here(), args.dataset, args.format, args.name, machine, args.trials,
                args.epochs)  # fmt: skip
    report, study = done["report"], done["study"]
    splits = " / ".join(f"{k} {v}" for k, v in done["splits"].items())
    low, high = report.pixel_size_mm or [0, 0]
    width, height = done["size"]
    print(
        f"Dataset {report.root}: {done['fmt']}, {report.num_landmarks} landmarks, {splits} "
        f"images, up to {width}x{height} px, {low:.3g}-{high:.3g} mm a pixel; data check passed"
    )
    gpus = f"{machine.gpus} GPU(s) of {machine.gpu_memory_gb:g} GB" if machine.gpus else "no GPU"
    print(f"Machine: {gpus} ({machine.source}), {machine.cpus} CPUs")
    limits = ", ".join(f"{b} at {s} px" for s, b in done["limits"].items())
    print(f"Batch limits: {limits}" + (" (training-memory estimate)" if machine.gpus else ""))
    rel = {k: Path(done[k]).relative_to(Path.cwd()) for k in ("study", "space")}
    print(f"Wrote {rel['study']} and {rel['space']}. Next:")
    print(f"  python search.py start {rel['study']}" + ("" if machine.gpus else "  # on CPU"))
    print("  python search.py dashboard   # from your laptop: ssh -L 8080:127.0.0.1:8080 THIS_HOST")
    print(f"  python search.py promote {study.stem} --tta")


def train(args: argparse.Namespace) -> None:
    from search.app.train import train
    from search.records.tracking import Tracking

    layout = Layout.here()
    out = args.out or layout.runs_dir(args.config.stem)
    result = train(args.config, out, args.resume, args.experiment, Tracking(layout, writes=True))
    best, metric = result["best"], result["metric"]
    shown = [f"MRE {best['mre_mm']:.3f} mm"] if "mre_mm" in best else []
    if metric != "mre_mm":  # the metric best.pt was kept by
        shown.insert(0, f"{metric} {best[metric]:.4g}")
    print(f"best valid {', '.join(shown)} (epoch {best.get('epoch', '?')})")
    print(f"checkpoints: {', '.join(result['checkpoints'])}; MLflow run {result['run_id']}")


def evaluate(args: argparse.Namespace) -> None:
    from trainables.eval.predictions import score_predictions

    fmt = dataset_format(args.dataset, args.format)
    scores = score_predictions(args.pred, args.dataset, args.split, args.annotator, fmt)
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


def promote(args: argparse.Namespace) -> None:
    from search.app.promote import promote

    done = promote(
        Layout.here(),
        args.name,
        args.storage,
        args.epochs,
        args.trials,
        args.train_on,
        args.seed,
        args.resume,
        args.tta,
        args.seeds,
        args.ensemble,
        compile_model=args.compile,
    )
    if done.get("ensemble"):
        trials = ", ".join(f"#{t}" for t in done["ensemble"])
        print(f"Promoted an ensemble of trials {trials} of {args.name!r}")
    else:
        print(f"Promoted trial #{done['trial']} of {args.name!r}: {done['best_yaml']}")
    for c in (done.get("selection") or {}).get("candidates", []):
        ci = f" ± {c['ci95_mm']:.3f}" if c["ci95_mm"] is not None else ""
        print(f"  trial #{c['trial']}: mean valid MRE {c['mean_valid_mre_mm']:.3f}{ci} mm "
              f"over seeds {c['seeds']}")  # fmt: skip
    top = (done.get("selection") or {}).get("top_two")
    if top:
        print(f"  top two, {top['test']} on {top['images']} valid images: p = {top['p_value']:.3g}")
    if done.get("epochs"):
        tested = f" at epoch {done['tested_epoch']}" if done.get("tested_epoch") else ""
        print(f"Trained {done['epochs']} epochs; tested {done['checkpoint']}{tested}")
    print(
        f"Test ({done['images']} images): MRE {done['mre_mm']:.3f} ± {done['mre_sd_mm']:.3f} mm, "
        f"SDR 2/2.5/3/4 mm {done['sdr_2mm']:.1%} / {done['sdr_2_5mm']:.1%} / "
        f"{done['sdr_3mm']:.1%} / {done['sdr_4mm']:.1%}"
    )
    print(f"Per-landmark table and overlays: {done['final']}")
    print(f"Registered models:/{args.name}/{done['version']} as @{done['alias']}")


def predict(args: argparse.Namespace) -> None:
    from search.app.predict import predict
    from search.records.tracking import Tracking

    tracking = Tracking(Layout.here())
    written = predict(
        tracking, args.model, args.inputs, args.out, args.pixel_size, args.overlay, args.tta
    )
    print(f"wrote {len(written)} predictions to {args.out}")


def report(args: argparse.Namespace) -> None:
    from search.app.report import write_report

    path = write_report(Layout.here(), args.name, args.storage, args.out)
    print(f"report: {path}")


def data_check(args: argparse.Namespace) -> int:
    from trainables.data.check import check_dataset

    report = check_dataset(args.dataset, dataset_format(args.dataset, args.format))
    if args.json:
        print(json.dumps(report.to_dict(), sort_keys=True))
    else:
        print("\n".join(report.summary_lines()))
    return 0 if report.ok else 1


def data_synth(args: argparse.Namespace) -> None:
    from trainables.data.synth import SynthSpec, write_dataset

    spec = SynthSpec(n=args.n, width=args.size[0], height=args.size[1], seed=args.seed)
    out = write_dataset(spec, Path(args.out_dir))
    print(f"wrote {spec.n} synthetic cephalograms ({spec.width}x{spec.height}) to {out}")


def data_convert(args: argparse.Namespace) -> None:
    from trainables.data.convert import convert

    fmt = dataset_format(args.dataset, args.format)
    counts = convert(args.dataset, fmt, args.out_dir, args.to, args.annotator)
    splits = ", ".join(f"{s} {n}" for s, n in counts.items())
    print(f"wrote {args.out_dir} ({args.to}) from {args.dataset} ({fmt}): images {splits}")


def dataset_format(root: Path, fmt: str) -> str:
    """``fmt``, or with ``auto`` the format the folder at ``root`` is written in."""
    from trainables.data.formats import detect

    return detect(root) if fmt == "auto" else fmt
