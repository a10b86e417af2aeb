"""The tiny synthetic dataset the training tests of this folder share (a module's own
``data_dir`` takes precedence)."""

from __future__ import annotations

import pytest

from trainables.data.synth import SynthSpec, write_dataset


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("train") / "synth"
    return str(write_dataset(SynthSpec(n=10, width=80, height=100, seed=5), root))
