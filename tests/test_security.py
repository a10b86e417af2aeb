"""Security basics: no code runs from a checkpoint, no password reaches a log, tag or attribute.

The dashboard's loopback binding is checked in ``test_servers.py``; YAML tags that would build
Python objects and study names with path separators are cases of ``test_bad_input.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from search.cli import main
from search.studyfiles.study import load_study
from tests.helpers import tiny_study
from trainables import checkpoint
from trainables.errors import ConfigError

SECRET = "s3cret-Pa55"
URL = f"postgresql://cephtune:{SECRET}@127.0.0.1:9/cephtune"


class Payload:
    """Unpickling this would create ``marker``: what a malicious checkpoint would do instead."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_checkpoint_that_would_run_code_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "last.pt"
    torch.save({"model": Payload(marker), "epoch": 3}, evil)
    with pytest.raises(ConfigError) as info:
        checkpoint.load(evil)
    assert str(info.value) == f"{evil}: not a readable checkpoint (UnpicklingError)"
    assert not marker.exists()


def with_storage(root: Path, url: str) -> Path:
    study_file = tiny_study(root, "secret", num_samples=1, max_epochs=1, grace=1)
    study_file.write_text(study_file.read_text() + f"storage: {url}\n")
    return study_file


def test_a_storage_password_is_masked_in_the_stored_spec(tmp_path):
    spec = load_study(with_storage(tmp_path, URL)).record()
    assert spec["storage"] == "postgresql://cephtune:***@127.0.0.1:9/cephtune"
    assert SECRET not in str(spec)


@pytest.mark.study
def test_a_storage_password_never_reaches_the_error_line(project, ray_cluster, capsys):
    study_file = with_storage(project, URL)
    assert main(["start", str(study_file)]) == 2
    out, err = capsys.readouterr()
    assert SECRET not in out + err
    assert err.startswith(
        f"error: {study_file}: storage 'postgresql://cephtune:***@127.0.0.1:9/cephtune'"
    )
    assert err.count("\n") == 1
    for command in (["status", "secret"], ["best", "secret"], ["resume", "secret"]):
        assert main([*command, "--storage", URL]) == 2
        err = capsys.readouterr().err
        assert SECRET not in err and "cephtune:***@" in err and err.count("\n") == 1
