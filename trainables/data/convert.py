"""``data convert``: a dataset rewritten in the COCO keypoints or CSV format, images copied.

Every split is read as training reads it (``load_split``, with the image checks), so what is
written is what a study would have learned from; two annotators become their ``annotator``
choice (the mean by default). The dataset is written into a hidden folder beside ``out`` and
renamed to ``out`` once complete, so a conversion that fails half-way (a full disk, Ctrl-C)
leaves nothing at ``out``.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from trainables.data import coco, csv_table
from trainables.data.formats import load_split, symbols
from trainables.data.records import SPLITS, check_new_folder
from trainables.errors import ConfigError

WRITERS = {"coco": coco.write_split, "csv": csv_table.write_split}


def convert(src: Path, fmt: str, out: Path, to: str, annotator: str = "mean") -> dict[str, int]:
    """Images per split written to ``out`` (which must not exist yet) in format ``to``."""
    if to not in WRITERS:
        raise ConfigError(f"--to {to!r}: cephtune writes {', '.join(WRITERS)}")
    check_new_folder(out, "data convert")
    names = symbols(fmt, src)
    splits = {s: load_split(src, s, annotator, fmt, verify=True) for s in SPLITS}
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        for split, records in splits.items():
            WRITERS[to](partial, split, records, names)
        partial.rename(out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return {s: len(r) for s, r in splits.items()}
