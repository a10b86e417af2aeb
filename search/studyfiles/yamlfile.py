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


# What a study, space or config file may be: a few hundred bytes to a few kilobytes written by
# hand. The bounds refuse a file built to exhaust the reader (an alias bomb expands 100 bytes
# into billions of nodes; 20,000 nested lists overflow Python's stack) before it is built.
MAX_BYTES = 1_000_000
MAX_NODES = 100_000  # counted with every alias expanded
MAX_DEPTH = 64


def _bounded(path: Path, root: yaml.Node | None) -> None:
    """Refuse a node graph that nests deeper than ``MAX_DEPTH``, expands (aliases counted
    at every use) to more than ``MAX_NODES``, or refers to itself."""
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, int, bool]] = [] if root is None else [(root, 1, False)]
    open_ids: set[int] = set()
    while stack:
        node, depth, done = stack.pop()
        if depth > MAX_DEPTH:
            raise ConfigError(f"{path}: nests deeper than {MAX_DEPTH} levels")
        children = _children(node)
        if done:
            open_ids.discard(id(node))
            sizes[id(node)] = 1 + sum(sizes[id(c)] for c in children)
            if sizes[id(node)] > MAX_NODES:
                raise ConfigError(
                    f"{path}: expands to more than {MAX_NODES} values (aliases counted at "
                    "every use)"
                )
            continue
        if id(node) in sizes:
            continue
        if id(node) in open_ids:
            raise ConfigError(f"{path}: an alias refers to the value that holds it")
        open_ids.add(id(node))
        stack.append((node, depth, True))
        stack.extend((c, depth + 1, False) for c in children if id(c) not in sizes)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


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
    if len(text) > MAX_BYTES:
        raise ConfigError(
            f"{path}: {len(text)} characters; a study, space or config file is at most {MAX_BYTES}"
        )
    try:
        _bounded(path, yaml.compose(text, Loader=_SafeLoader))
        data = yaml.load(text, Loader=_SafeLoader)  # a SafeLoader: no Python objects
    except RecursionError:
        raise ConfigError(f"{path}: nests deeper than {MAX_DEPTH} levels") from None
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
