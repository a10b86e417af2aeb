"""HTML pieces of the study report: escaped tables, sections and value formatting."""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:70em;color:#222;padding:0 1em}
h1{margin-bottom:.2em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0;font-size:.92em}
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}
thead th{background:#f2f2f2}table.kv th{background:#fafafa;font-weight:600}
td{font-variant-numeric:tabular-nums}img{max-width:100%}
figure{display:inline-block;margin:.5em}figcaption{font-size:.85em;color:#555}
.note{color:#555}
"""


def section(title: str, body: str) -> str:
    return f"<section><h2>{esc(title)}</h2>\n{body}\n</section>"


def kv(rows: Iterable[tuple[str, Any]]) -> str:
    cells = "".join(f"<tr><th>{esc(k)}</th><td>{esc(fmt(v))}</td></tr>" for k, v in rows)
    return f'<table class="kv">{cells}</table>'


def table(head: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    top = "".join(f"<th>{esc(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{esc(fmt(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{top}</tr></thead><tbody>{body}</tbody></table>"


def fmt(value: Any) -> str:
    """Numbers to 4 significant digits, containers as JSON, None as a dash."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def pct(value: Any) -> str | None:
    """An SDR fraction (0–1, as ``trainables.eval.metrics`` computes it) as a percentage."""
    return f"{value:.1%}" if isinstance(value, int | float) else None


def when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def esc(value: Any) -> str:
    return html.escape(str(value))
