"""YAML files as checked mappings: a safe loader (no Python objects, no key given twice) and a
checker whose every error is one line naming the file, the key and the rule."""

from __future__ import annotations

import difflib
import math
from collections.abc import Hashable, Iterable
from pathlib import Path
from typing import Any

import yaml

from trainables.config import is_numeric_text
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


class Checker:
    """Validates one file's values; every error names the file and the key path."""

    def __init__(self, path: Path | str) -> None:
        self.path = path

    def fail(self, key: str, rule: str) -> ConfigError:
        return ConfigError(f"{self.path}: {key} {rule}")

    def keys(
        self, mapping: dict, allowed: Iterable[str], prefix: str = "", required: Iterable[str] = ()
    ) -> None:
        allowed = list(allowed)
        for key in mapping:
            if key not in allowed:
                hint = difflib.get_close_matches(str(key), allowed, n=1)
                tip = (
                    f" (did you mean {hint[0]!r}?)" if hint else f"; allowed: {', '.join(allowed)}"
                )
                raise ConfigError(f"{self.path}: unknown key '{prefix}{key}'{tip}")
        for key in required:
            if key not in mapping:
                raise ConfigError(f"{self.path}: missing required key '{prefix}{key}'")

    def mapping(self, value: Any, key: str) -> dict:
        if not isinstance(value, dict):
            raise self.fail(key, f"must be a mapping, got {value!r}")
        return value

    def integer(self, value: Any, key: str, minimum: int | None = None) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.fail(key, f"must be an integer, got {value!r}")
        if minimum is not None and value < minimum:
            raise self.fail(key, f"must be >= {minimum}, got {value}")
        return value

    def number(self, value: Any, key: str, positive: bool = False) -> float:
        if isinstance(value, str) and is_numeric_text(value):
            raise self.fail(
                key,
                f"must be a number, got the string {value!r} "
                "(YAML reads 1e-4 as text: write 1.0e-4)",
            )
        if (
            not isinstance(value, (int, float))
            or isinstance(value, bool)
            or not math.isfinite(value)
        ):
            raise self.fail(key, f"must be a finite number, got {value!r}")
        if positive and value <= 0:
            raise self.fail(key, f"must be > 0, got {value}")
        return float(value)

    def string(self, value: Any, key: str, choices: Iterable[str] | None = None) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(key, f"must be a non-empty string, got {value!r}")
        if choices is not None and value not in choices:
            raise self.fail(key, f"must be one of {', '.join(choices)}, got {value!r}")
        return value
