"""The published JSON Schemas of study and space files, generated from their pydantic models:
``studies/study.schema.json`` and ``spaces/space.schema.json``, beside the files they describe.

Each shipped file names its schema on its first line (``# yaml-language-server:
$schema=space.schema.json``), so an editor with the YAML language server completes and checks
keys as the user types. A space's schema also lists every trainable setting a space may search
or fix, with its declared type, range and meaning (``trainables.config``).

``python -m search.studyfiles.schema`` writes both files; ``--check`` only says whether they are
current (``tests/search/studyfiles/test_schema.py`` fails when they are not).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from search.studyfiles.space_schema import SpaceFile
from search.studyfiles.study_schema import StudyFile
from search.studyfiles.trial_keys import STUDY_SET_KEYS
from trainables.config import DEFAULTS, TrainConfig

REPO = Path(__file__).resolve().parents[2]
DIALECT = "https://json-schema.org/draft/2020-12/schema"
FILES = {
    "study": REPO / "studies" / "study.schema.json",
    "space": REPO / "spaces" / "space.schema.json",
}
LINE = "# yaml-language-server: $schema={name}"  # the first line of every shipped file


def study_schema() -> dict[str, Any]:
    return _published(StudyFile.model_json_schema(), "cephtune study file")


def space_schema() -> dict[str, Any]:
    """The space file's schema, with one property per trainable setting under ``params`` (a
    distribution), ``fixed`` and each warm-start point (a value of that setting's type)."""
    schema = SpaceFile.model_json_schema()
    props, defs = schema["properties"], schema["$defs"]
    settings = _settings()
    defs["Param"] = props["params"].pop("additionalProperties")
    props["params"]["properties"] = {
        name: {"$ref": "#/$defs/Param", "description": value["description"]}
        for name, value in settings.items()
    }
    props["params"]["additionalProperties"] = False
    defs["Settings"] = {"type": "object", "properties": settings, "additionalProperties": False}
    fixed, points = _member(props["fixed"], "object"), _member(props["warm_start"], "array")
    for mapping in (fixed, points["items"]):
        mapping.clear()
        mapping["$ref"] = "#/$defs/Settings"
    return _published(schema, "cephtune space file")


def _settings() -> dict[str, Any]:
    """The schema of each setting a space may search or fix, its default as a file writes it."""
    found = TrainConfig.model_json_schema()["properties"]
    return {
        name: {**value, "default": DEFAULTS[name]}
        for name, value in found.items()
        if name not in STUDY_SET_KEYS
    }


def _member(schema: dict[str, Any], kind: str) -> dict[str, Any] | None:
    """The member of JSON type ``kind`` of a (nested) ``anyOf`` / ``oneOf``."""
    if schema.get("type") == kind:
        return schema
    for member in (*schema.get("anyOf", ()), *schema.get("oneOf", ())):
        found = _member(member, kind)
        if found is not None:
            return found
    return None


def _published(schema: dict[str, Any], title: str) -> dict[str, Any]:
    return {"$schema": DIALECT, **_untitled(schema), "title": title}


def _untitled(value: Any) -> Any:
    """Without pydantic's generated titles (``Grace Period``): the descriptions say more."""
    if isinstance(value, dict):
        return {k: _untitled(v) for k, v in value.items() if k != "title" or not isinstance(v, str)}
    if isinstance(value, list):
        return [_untitled(v) for v in value]
    return value


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m search.studyfiles.schema")
    parser.add_argument("--check", action="store_true", help="only say whether they are current")
    args = parser.parse_args(argv)
    stale = []
    for kind, schema in (("study", study_schema()), ("space", space_schema())):
        path, text = FILES[kind], render(schema)
        if path.is_file() and path.read_text() == text:
            continue
        stale.append(path)
        if not args.check:
            path.write_text(text)
    for path in stale:
        print(f"{path}: {'stale' if args.check else 'written'}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
