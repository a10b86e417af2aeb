"""The smaller commands: data synth, and the dashboard served on loopback."""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
import urllib.request
from importlib.metadata import version

import optuna

from search.cli import build_parser, main
from tests.helpers import REPO, as_a_terminal_job, free_port
from trainables.data.formats import load_split


def test_data_synth_writes_a_loadable_dataset(tmp_path, capsys):
    out = tmp_path / "synth"
    assert main(["data", "synth", str(out), "--n", "5", "--size", "64", "80", "--seed", "2"]) == 0
    assert "wrote 5 synthetic cephalograms" in capsys.readouterr().out
    assert len(load_split(out, "valid", "junior")) == 1
    assert main(["data", "synth", str(out), "--n", "5"]) == 2  # refuses to overwrite
    assert "not empty" in capsys.readouterr().err


def test_dashboard_serves_the_study_storage_on_loopback(tmp_path):
    storage = f"sqlite:///{tmp_path}/optuna.db"
    study = optuna.create_study(study_name="shown", storage=storage)
    study.optimize(lambda t: t.suggest_float("lr", 1e-4, 5e-4), n_trials=3)
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "search.py"),
            "dashboard",
            "--port",
            str(port),
            "--storage",
            storage,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )
    try:
        body = None
        deadline = time.monotonic() + 60
        while body is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2) as r:
                    body = json.load(r)
            except OSError:
                time.sleep(0.5)
        assert body is not None, "dashboard did not answer within 60 s"
        studies = {s["study_name"]: s for s in body["study_summaries"]}
        assert "shown" in studies
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"cephtune {version('cephtune')}"


def test_cephtune_storage_is_every_command_s_storage(tmp_path, monkeypatch, capsys):
    """As MLFLOW_TRACKING_URI is MLflow's: the default of --storage, which still wins."""
    storage = f"sqlite:///{tmp_path}/elsewhere.db"
    study = optuna.create_study(study_name="kept", storage=storage)
    study.optimize(lambda t: t.suggest_float("lr", 1e-4, 5e-4), n_trials=2)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CEPHTUNE_STORAGE", storage)
    assert main(["status", "kept", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["states"] == {"COMPLETE": 2}
    assert main(["status", "kept", "--storage", "sqlite:///studies/optuna.db"]) == 2
    assert "no Optuna storage at" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere.db"]


def walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from walk(sub, (*path, name))
        else:
            yield path, action, parser


def test_every_argument_says_what_it_is_and_its_default():
    for path, action, parser in walk(build_parser()):
        if action.dest == "help":
            continue
        assert action.help, f"{' '.join(path)} {action.dest}: no help"
        shown = parser.format_help()
        if action.default not in (None, False, argparse.SUPPRESS) and action.option_strings:
            assert f"(default: {action.default}" in " ".join(shown.split()), (path, action.dest)


def a_running_study(storage: str) -> optuna.Study:
    """A study as a running driver leaves it: trial #0 done (4 epochs), #1 at epoch 2 of 4,
    one more to come (num_samples 3)."""
    study = optuna.create_study(study_name="live", storage=storage)
    study.set_user_attr("spec", {"num_samples": 3, "max_epochs": 4})
    study.set_user_attr("metric", "mre_mm")
    first = study.ask({"lr": optuna.distributions.FloatDistribution(1e-4, 5e-4)})
    for epoch, value in enumerate([4.0, 3.0, 2.5, 2.25], start=1):
        first.report(value, epoch)
    study.tell(first, 2.25)
    second = study.ask({"lr": optuna.distributions.FloatDistribution(1e-4, 5e-4)})
    second.report(3.5, 1)
    second.report(2.75, 2)
    return study


def test_status_shows_the_running_trials_with_their_epochs_unit_and_eta(tmp_path, capsys):
    storage = f"sqlite:///{tmp_path}/optuna.db"
    a_running_study(storage)
    assert main(["status", "live", "--storage", storage]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "study live: 2 trials (complete 1, running 1) of 3"
    assert out[1] == "  running #1: epoch 2/4, mre_mm 2.75 mm"
    assert out[2] == "best so far: trial #0 mre_mm 2.2500 mm"
    assert out[3].startswith("epochs: 6 run, at most 6 left; ETA at most ")
    assert main(["status", "live", "--storage", storage, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["running"] == [{"trial": 1, "epochs": 2, "mre_mm": 2.75}]
    assert info["unit"] == "mm" and info["epochs_left_at_most"] == 6 and info["eta_s"] >= 0


def test_status_watch_reprints_until_ctrl_c_or_the_study_ends(tmp_path):
    storage = f"sqlite:///{tmp_path}/optuna.db"
    study = a_running_study(storage)
    command = [sys.executable, str(REPO / "search.py"), "status", "live", "--storage", storage]
    watch = subprocess.Popen(
        [*command, "--watch", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=as_a_terminal_job,  # Ctrl-C reaches it however the suite was started
    )
    try:
        seen = 0
        while seen < 2:  # two prints of the running study
            line = watch.stdout.readline()
            assert line, watch.stderr.read()
            seen += line.startswith("study live:")
        watch.send_signal(signal.SIGINT)  # Ctrl-C
        out, err = watch.communicate(timeout=60)
    finally:
        if watch.poll() is None:
            watch.kill()
    assert watch.returncode == 0 and err == "", err
    running = study.trials[1]
    study.tell(running.number, 2.5)
    study.optimize(lambda t: t.suggest_float("lr", 1e-4, 5e-4), n_trials=1)
    ended = subprocess.run(
        [*command, "--watch", "0.2"], capture_output=True, text=True, timeout=120
    )  # the study has its 3 trials: one print, then the watch ends by itself
    assert ended.returncode == 0 and ended.stdout.count("study live:") == 1, ended.stderr
