"""The published JSON Schemas of study and space files: current with the models that generate
them, named on the first line of every shipped file, and true of every shipped file (checked
with ``jsonschema``, as an editor's YAML language server would), which cephtune also loads."""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml

from search.studyfiles.schema import FILES, LINE, main, render, space_schema, study_schema
from search.studyfiles.space_file import load_space
from search.studyfiles.study import load_study
from tests.helpers import REPO

SHIPPED = {
    "study": sorted((REPO / "studies").glob("*.yaml")),
    "space": sorted((REPO / "spaces").glob("*.yaml")),
}


def validator(kind: str) -> jsonschema.Draft202012Validator:
    schema = json.loads(FILES[kind].read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_the_published_schemas_are_what_the_models_generate(capsys):
    assert FILES["study"].read_text() == render(study_schema())
    assert FILES["space"].read_text() == render(space_schema())
    assert main(["--check"]) == 0 and capsys.readouterr().out == ""


@pytest.mark.parametrize("kind", ["study", "space"])
def test_every_shipped_file_names_its_schema_keeps_it_and_loads(kind):
    check = validator(kind)
    load = load_study if kind == "study" else load_space
    assert SHIPPED[kind]
    for path in SHIPPED[kind]:
        text = path.read_text()
        assert text.splitlines()[0] == LINE.format(name=FILES[kind].name), path
        errors = [
            f"{list(e.absolute_path)}: {e.message}" for e in check.iter_errors(yaml.safe_load(text))
        ]
        assert errors == [], path
        load(path)


@pytest.mark.parametrize(
    ("kind", "change"),
    [
        ("study", {"num_sample": 2}),  # an unknown key
        ("study", {"resources": {"cpu": 1, "gpu": 2}}),  # a trial trains on one GPU
        ("study", {"asha": True}),
        ("space", {"fixd": {}}),
        ("space", {"fixed": {"lr": 0.0}}),  # a trainable setting's own rule
        ("space", {"fixed": {"model": "vit"}}),
        ("space", {"params": {"learning_rate": {"type": "float", "low": 1.0, "high": 2.0}}}),
        ("space", {"params": {"lr": {"type": "uniform", "low": 1.0, "high": 2.0}}}),
        ("space", {"warm_start": [{"lr": "fast"}]}),
    ],
)
def test_the_schema_refuses_what_cephtune_refuses(kind, change):
    """Not vacuous: a shipped file with one thing broken breaks the published schema too."""
    base = yaml.safe_load(SHIPPED[kind][-1].read_text())
    assert not validator(kind).is_valid({**base, **change})
