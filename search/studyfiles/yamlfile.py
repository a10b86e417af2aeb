"""YAML files as mappings: a safe loader (no Python objects, no key given twice) whose every
error is one line naming the file (the schemas check what the mapping holds)."""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path
from typing import Any

import yaml

from trainables.errors import ConfigError


class _SafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` (no Python objects: a ``!!python/...`` tag is an error) that also
    refuses a key given twice in one mapping, which plain YAML resolves silently (last wins)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):
                continue  # SafeLoader itself reports an unhashable key
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_mapping(path: Path) -> dict[str, Any]:
    """Parse a YAML file that must hold a mapping (safe loading: no arbitrary objects)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, not a YAML file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e.strerror})") from None
    try:
        data = yaml.load(text, Loader=_SafeLoader)  # a SafeLoader: no Python objects
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = " ".join(str(getattr(e, "problem", "") or "").split())
        detail = f": {problem}" if problem else ""
        raise ConfigError(f"{path}: not valid YAML{where}{detail}") from None
    if data is None:
        raise ConfigError(f"{path}: must be a YAML mapping, got an empty file")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must be a YAML mapping, got {type(data).__name__}")
    return data
