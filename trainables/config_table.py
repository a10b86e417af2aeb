"""The README's table of trainable config keys, generated from the config's declarations
(``python -m trainables.config_table`` prints it; ``tests/trainables/test_config_table.py``
fails when the README's differs).

One row per field, in declaration order; adjacent fields that share a meaning share a row (the
Adaptive Wing parameters). The default column shows each default as a config file writes it,
or the words a field gives for it (``null = auto``).
"""

from __future__ import annotations

from typing import Any

from trainables.config import TrainConfig
from trainables.schema import Shown

HEADER = ("| key | default | meaning |", "|---|---|---|")


def rows() -> list[str]:
    """The table's lines, header included."""
    groups: list[list[str]] = []
    fields = TrainConfig.model_fields
    for name, info in fields.items():
        if groups and fields[groups[-1][-1]].description == info.description:
            groups[-1].append(name)
        else:
            groups.append([name])
    lines = list(HEADER)
    for names in groups:
        keys = ", ".join(f"`{n}`" for n in names)
        meaning = (fields[names[0]].description or "").replace("|", "\\|")
        lines.append(f"| {keys} | {_default(names)} | {meaning} |")
    return lines


def _default(names: list[str]) -> str:
    fields = TrainConfig.model_fields
    words = [m.text for n in names for m in fields[n].metadata if isinstance(m, Shown)]
    if words:
        return words[0]
    values = [TrainConfig().to_dict()[n] for n in names]
    return ", ".join(_written(v) for v in values)


def _written(value: Any) -> str:
    """A default as YAML writes it: ``null``, ``true``, ``5e-4``, `` `hrnet` ``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return f"`{value}`" if value else '`""`'
    if isinstance(value, float) and value and abs(value) < 1e-3:
        mantissa, exponent = f"{value:e}".split("e")
        return f"{float(mantissa):g}e{int(exponent)}"
    return f"{value:g}" if isinstance(value, float) else str(value)


if __name__ == "__main__":
    print("\n".join(rows()))
