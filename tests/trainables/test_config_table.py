"""The README's table of trainable config keys is the one the config's declarations generate
(``python -m trainables.config_table``): a key, a default or a meaning changed in one place only
fails here."""

from __future__ import annotations

from tests.helpers import REPO
from trainables.config import TrainConfig
from trainables.config_table import HEADER, rows


def readme_table() -> list[str]:
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("### Trainable config keys") :]
    lines = section.splitlines()
    start = lines.index(HEADER[0])
    end = next(i for i in range(start, len(lines)) if not lines[i].startswith("|"))
    return lines[start:end]


def test_the_readme_key_table_is_the_generated_one():
    assert readme_table() == rows()


def test_every_key_has_a_row_and_a_meaning():
    listed = "".join(rows()[2:])
    for name, info in TrainConfig.model_fields.items():
        assert f"`{name}`" in listed and info.description, name
