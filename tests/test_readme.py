"""The README is executable: every shell block in README.md runs here, verbatim, in order, in
a new user's terminal on a fresh copy of the repository (tests/readme_terminal.py). The
terminal starts as a new user's would: a home folder of its own (so the cache is
``~/.cache/cephtune``), no cephtune or MLflow variables, and the system's PATH only (not the
runner's Python or the project's ``.venv``). The ``.venv`` itself is the suite's, behind links:
what ``make quickstart`` would install there (``pip install -e .``) is part of what ``make
test`` has just installed (``pip install -e ".[test]"``), so it is not repeated here.

An HTML comment right above a block tells this harness what else to do with it:

- ``<!-- readme-test: skip: REASON -->``: not run (needs a GPU, the real Aariz, several
  machines, or is this suite itself); the reason is the test's skip message.
- ``<!-- readme-test: kill -9 when study NAME in URL has a finished trial -->``: run in the
  background and SIGKILLed (its whole process group: the driver and its Ray) once the study
  has a finished trial, as a crash or a reboot would.
- ``<!-- readme-test: serve URL -->``: a server; run in the background until URL answers, and
  stopped when the module ends.
- ``<!-- readme-test: note: TEXT -->``: run as it is; TEXT says what the test did before it
  that the prose does not (a harness step belongs here, not in what a user reads).
- ``<!-- readme-test: given DIR in FORMAT, FORMAT and the ImageNet weights in the cache -->``:
  a user's own dataset. The block's section runs once per FORMAT, each time in a terminal of
  its own (a fresh copy and home, the project's environment active as the walkthrough left
  it) in which a small dataset in that format is at DIR and the
  Hugging Face cache holds weights for the backbones (written by the test, not downloaded:
  what a user who ran a study before has there).

Each ``## `` section with runnable blocks is one test, in README order; a section's checks
(below) look at what its commands left, the way a user would, through Optuna and MLflow. A
change to a README block changes what runs here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from tests.helpers import REPO, check_records, mlflow_url, optuna_url, trial_runs
from tests.readme_terminal import Terminal, answers, fresh_copy, readme_blocks

pytestmark = pytest.mark.readme

README = REPO / "README.md"
# A new login shell's PATH on Debian: nothing of this runner's (pyenv, the suite's .venv).
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
KILL = re.compile(r"kill -9 when study (\S+) in (\S+) has a finished trial")
GIVEN = re.compile(r"given (\S+) in ([\w, ]+) and the ImageNet weights in the cache")


BLOCKS = readme_blocks(README.read_text())
SECTIONS = list(dict.fromkeys(b.section for b in BLOCKS))


def test_every_shell_block_runs_or_says_why_not():
    assert BLOCKS, "no shell blocks found in README.md"
    for block in BLOCKS:
        d = block.directive
        known = d == "" or d.startswith(("skip: ", "serve http", "note: "))
        known = known or KILL.fullmatch(d) or GIVEN.fullmatch(d)
        assert known, f"README.md:{block.line}: unknown readme-test directive {d!r}"
        if d.startswith("skip: "):
            assert len(d) > len("skip: ") + 10, f"README.md:{block.line}: say why it is skipped"


def new_terminal(base: Path) -> Terminal:
    """A new user's terminal in a fresh copy of the repository under ``base``."""
    if not (REPO / ".git").exists() or shutil.which("git") is None:
        pytest.skip("the README harness copies a git checkout's files; this is not one")
    if not (REPO / ".venv" / "bin" / "python").exists():
        pytest.skip("the README's commands use the project's .venv (make test creates it)")
    root = fresh_copy(Path(base / "cephtune"))
    (base / "home").mkdir()
    env = {"PATH": SYSTEM_PATH, "HOME": str(base / "home"), "LANG": "C.UTF-8", "USER": "cephtune"}
    return Terminal(root, env)


@pytest.fixture(scope="module")
def terminal(tmp_path_factory):
    shell = new_terminal(tmp_path_factory.mktemp("readme"))
    yield shell
    shell.stop()


def run_section(terminal: Terminal, section: str) -> None:
    if terminal.failed:
        pytest.fail(f"an earlier README section failed ({terminal.failed}); this one builds on it")
    skipped = []
    try:
        for block in (b for b in BLOCKS if b.section == section):
            d = block.directive
            if d.startswith("skip: "):
                skipped.append(f"README.md:{block.line}: {d[len('skip: ') :]}")
            elif d.startswith("serve "):
                terminal.serve(block, d.split()[1])
            elif KILL.fullmatch(d):
                study, url = KILL.fullmatch(d).groups()
                terminal.kill_after_a_finished_trial(block, study, url)
            else:
                terminal.run(block)
        CHECKS.get(section, lambda t: None)(terminal)
    except BaseException:
        terminal.failed = section
        raise
    if skipped and all(b.directive.startswith("skip: ") for b in BLOCKS if b.section == section):
        pytest.skip("; ".join(skipped))


def stdout_of(terminal: Terminal, section: str, command: str) -> str:
    """What the block of ``section`` containing ``command`` printed."""
    (block,) = [b for b in BLOCKS if b.section == section and command in b.code]
    return terminal.outputs[block.line]


def summary_sample() -> list[str]:
    """The README's sample of the quickstart's summary: its block that starts with the study."""
    (block,) = re.findall(r"```\n(Study 'quickstart'.*?)```", README.read_text(), re.S)
    return block.splitlines()


def label(line: str) -> str:
    """A summary line's label: what precedes its first colon, with any number as N."""
    return re.sub(r"\d+", "N", line.partition(":")[0])


# --- what each section's commands must leave, looked at as a user would ----------------------


def check_walkthrough(terminal: Terminal) -> None:
    import optuna
    from mlflow.tracking import MlflowClient

    root = terminal.root
    study = optuna.load_study(study_name="quickstart", storage=optuna_url(root))
    check_records(study, trial_runs(root, "quickstart"), 8, mlflow_url(root))
    assert study.metric_names == ["mre_mm"]
    resumed = stdout_of(terminal, SECTION_WALK, "resume quickstart")
    assert "Study 'quickstart': 8 trials finished" in resumed
    # The summary the README shows is the summary a user gets: the same lines in the same order
    # (what precedes each line's first colon, numbers aside; the values vary with the run). The
    # README's is an uninterrupted run's: the line naming the trials the kill cost is extra here.
    sample = summary_sample()
    lines = [line for line in resumed.splitlines() if not re.match(r"  \d+ more \(#", line)]
    start = max(i for i, line in enumerate(lines) if line.startswith("Study 'quickstart': "))
    printed = lines[start : start + len(sample)]
    assert [label(line) for line in printed] == [label(line) for line in sample], printed
    best = json.loads(stdout_of(terminal, SECTION_WALK, "best quickstart --json").splitlines()[-1])
    assert best["trial"] in [t.number for t in study.trials if t.state.name == "COMPLETE"]
    client = MlflowClient(mlflow_url(root))
    champion = client.get_model_version_by_alias("quickstart", "champion")
    assert champion.run_id
    (promote,) = [b for b in BLOCKS if b.section == SECTION_WALK and "promote quickstart" in b.code]
    assert "WARNING" not in terminal.errors[promote.line]  # mlflow.pytorch's pickle warning
    assert (root / "studies/quickstart/report/report.html").stat().st_size > 10_000
    images = sorted((root / "my_cephs/test/Cephalograms").iterdir())
    assert images and all((root / "preds" / f"{p.stem}.json").is_file() for p in images)
    assert all((root / "preds" / f"{p.stem}.png").is_file() for p in images)
    scored = stdout_of(terminal, SECTION_WALK, "evaluate --pred preds")
    assert re.search(rf"{len(images)} images of test: MRE \d+\.\d+ ± \d+\.\d+ mm", scored)
    assert answers("http://127.0.0.1:8080/api/studies")
    # The scoring server answers with the landmarks predict wrote for the same image.
    (served,) = json.loads(stdout_of(terminal, SECTION_WALK, "5001/invocations"))["predictions"]
    written = json.loads((root / "preds" / "synth00017.json").read_text())["landmarks"]
    predicted = {m["symbol"]: m["value"] for m in written}
    assert list(served["landmarks"]) == list(predicted)
    for symbol, point in served["landmarks"].items():  # 0.01 px: both round, batches differ
        assert all(abs(point[k] - predicted[symbol][k]) <= 0.011 for k in "xy"), symbol
    assert served["pixel_size_mm"] == 0.1


def check_scaling_out(terminal: Terminal) -> None:
    import optuna

    storage_url = "postgresql:///cephtune_optuna"
    server = terminal.env["MLFLOW_TRACKING_URI"]
    saved = {k: os.environ.get(k) for k in ("PGHOST", "PGPORT", "PGUSER")}
    os.environ.update({k: terminal.env[k] for k in saved})
    try:
        study = optuna.load_study(study_name="postgres-demo", storage=storage_url)
        check_records(study, trial_runs(terminal.root, "postgres-demo", server), 4, server)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    resumed = stdout_of(terminal, SECTION_SCALING, "resume postgres-demo")
    assert "Study 'postgres-demo': 4 trials finished" in resumed
    assert f"MLflow UI:        {server} (the MLflow tracking server)" in resumed


def check_your_data(terminal: Terminal, folder: str, fmt: str) -> None:
    import optuna
    from mlflow.tracking import MlflowClient

    root = terminal.root
    out = stdout_of(terminal, SECTION_YOURS, "init my_data --trials")
    (start,) = [
        b for b in BLOCKS if b.section == SECTION_YOURS and "init my_data --trials" in b.code
    ]
    assert "Unexpected keys" not in terminal.errors[start.line]  # timm's, for the head it drops
    assert f"Dataset {root / folder}: {fmt}, 29 landmarks, train 8 / valid 2 / test 2" in out
    study = optuna.load_study(study_name="my_data-try", storage=optuna_url(root))
    check_records(study, trial_runs(root, "my_data-try"), 4, mlflow_url(root))
    client = MlflowClient(mlflow_url(root))
    champion = client.get_model_version_by_alias("my_data-try", "champion")
    trial = client.get_run(champion.run_id).data.params
    assert trial.get("pretrained") == "True" and trial.get("dataset_format") == fmt, trial
    final = json.loads((root / "studies/my_data-try/final/test_metrics.json").read_text())
    assert final["images"] == 2


SECTION_WALK = "Walkthrough: from a study to predictions"
SECTION_YOURS = "Your data on your GPUs"
SECTION_SCALING = "Scaling out"
CHECKS = {SECTION_WALK: check_walkthrough, SECTION_SCALING: check_scaling_out}


def test_the_checked_sections_exist():
    for section in CHECKS:
        assert section in SECTIONS, f"README.md has no section {section!r} with shell blocks"


def given(section: str) -> tuple[str, list[str]] | None:
    """(folder, formats) of the section's ``given`` directive, if it has one."""
    for block in (b for b in BLOCKS if b.section == section):
        match = GIVEN.fullmatch(block.directive)
        if match:
            return match[1], [f.strip() for f in match[2].split(",")]
    return None


def write_hub_weights(home: Path, backbones: list[str]) -> None:
    """Random weights for ``backbones`` where timm looks first, the Hugging Face cache."""
    import timm
    from safetensors.torch import save_file

    for name in backbones:
        repo = timm.models.get_pretrained_cfg(name).hf_hub_id
        folder = home / ".cache/huggingface/hub" / f"models--{repo.replace('/', '--')}"
        revision = "0" * 40
        (folder / "snapshots" / revision).mkdir(parents=True)
        state = timm.create_model(name, pretrained=False).state_dict()
        save_file(state, folder / "snapshots" / revision / "model.safetensors")
        (folder / "refs").mkdir()
        (folder / "refs" / "main").write_text(revision)


def run_given_section(section: str, base: Path, terminal: Terminal) -> None:
    from trainables.data.convert import convert
    from trainables.data.synth import SynthSpec, write_dataset

    folder, formats = given(section)
    terminal.stop()  # the walkthrough's servers: this section's dashboard takes the same port
    source = write_dataset(SynthSpec(n=12, width=160, height=200, seed=5), base / "source")
    for fmt in formats:
        shell = new_terminal(base / fmt)
        venv = shell.root / ".venv"  # active, as the walkthrough left the user's terminal
        shell.env.update(VIRTUAL_ENV=str(venv), PATH=f"{venv}/bin:{SYSTEM_PATH}")
        try:
            convert(source, "aariz", shell.root / folder, fmt)
            write_hub_weights(Path(shell.env["HOME"]), ["hrnet_w18", "hrnet_w32"])
            run_section(shell, section)
            check_your_data(shell, folder, fmt)
        finally:
            shell.stop()
        terminal.failed = shell.failed


@pytest.mark.parametrize("section", SECTIONS)
def test_readme_section(section, terminal, request, tmp_path):
    if given(section):
        return run_given_section(section, tmp_path, terminal)
    if section == SECTION_SCALING:  # needs a PostgreSQL server, as the section says
        server = request.getfixturevalue("postgres")
        terminal.env.update(server.env)
    run_section(terminal, section)
