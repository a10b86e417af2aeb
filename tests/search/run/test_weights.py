"""Pretrained weights are fetched on every node before a study starts
(``trainables/models/weights.py``, ``search/run/nodes.py``). The suite's hub is offline with an
empty cache (``tests/conftest.py``), so the weights here come from a file the test writes; the
refusal without one is a hostile case (``tests/search/studyfiles/test_bad_space_files.py``)."""

from __future__ import annotations

import pytest
from optuna.trial import TrialState

from search.cli import main
from tests.helpers import TINY_SPACE, optuna_study, tiny_study

pytestmark = pytest.mark.study


def test_a_study_whose_weights_are_a_local_file_starts_and_its_trial_loads_them(
    project, ray_cluster
):
    import timm
    import torch

    weights = project / "hrnet_w18_small.pth"  # random ImageNet-shaped weights stand in
    torch.save(timm.create_model("hrnet_w18_small").state_dict(), weights)
    space = TINY_SPACE + f"  pretrained: true\n  pretrained_file: {weights}\n"
    study_file = tiny_study(project, "weights", 1, max_epochs=1, grace=1, space=space)
    assert main(["start", str(study_file)]) == 0
    study = optuna_study(project, "weights")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE]
