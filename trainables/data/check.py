"""Inspect a dataset folder and report every problem found, not just the first.

Errors are what makes ``load_split`` (with ``verify``, as a study's driver runs it) refuse the
dataset: a missing folder or pixel size, an unreadable image, a missing or malformed annotation,
an unknown symbol, a point outside its image. Warnings load but need a human look: landmarks
missing from an annotation (scored as missing) and byte-identical images in two splits (a
train/test leak) or twice in one split.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from trainables.data.formats import get_format
from trainables.data.records import SPLITS, SplitIndex, inspect_image
from trainables.errors import DataError, one_line


@dataclass
class CheckReport:
    """What ``check_dataset`` found; ``ok`` means every split loads."""

    root: str
    fmt: str
    num_landmarks: int
    counts: dict[str, int] = field(default_factory=dict)  # images per split
    landmarks_per_image: dict[str, list[int]] = field(default_factory=dict)  # split -> [min, max]
    pixel_size_mm: list[float] | None = None  # [min, max] over all images
    bit_depths: dict[str, int] = field(default_factory=dict)  # "16-bit grey" -> images
    turned: int = 0  # images an EXIF orientation turns or mirrors (read as shown)
    unreadable: list[str] = field(default_factory=list)
    leaks: list[list[str]] = field(default_factory=list)  # byte-identical images across splits
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}

    def summary_lines(self) -> list[str]:
        counts = ", ".join(f"{s} {n}" for s, n in self.counts.items()) or "none"
        lines = [f"{self.root} ({self.fmt}, {self.num_landmarks} landmarks): images {counts}"]
        for split, (low, high) in self.landmarks_per_image.items():
            lines.append(f"  {split}: {low}-{high} landmarks annotated per file")
        if self.pixel_size_mm:
            low, high = self.pixel_size_mm
            lines.append(f"  pixel size {low:g}-{high:g} mm")
        if self.bit_depths:
            kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.bit_depths.items()))
            lines.append(f"  pixels: {kinds} (each read onto one 8-bit grey scale)")
        if self.turned:
            lines.append(
                f"  {self.turned} images have an EXIF orientation: read turned as it says, as "
                "a browser shows them (their landmarks must be in that frame)"
            )
        lines.append(
            f"  {len(self.unreadable)} unreadable images, {len(self.leaks)} cross-split duplicates"
        )
        lines += [f"ERROR {one_line(e)}" for e in self.errors]
        lines += [f"WARNING {one_line(w)}" for w in self.warnings]
        lines.append("OK" if self.ok else f"FAILED: {len(self.errors)} errors")
        return lines


def check_dataset(root: Path | str, fmt: str) -> CheckReport:
    """Check every split of the ``fmt`` dataset at ``root``."""
    reader = get_format(fmt)
    root = Path(root)
    report = CheckReport(str(root), fmt, 0)
    if not root.is_dir():
        report.errors.append(f"{root}: dataset folder missing")
        return report
    try:
        names = reader.landmarks(root)
    except DataError as e:
        report.errors.append(str(e))
        return report
    report.num_landmarks = len(names)
    hashes: dict[str, list[tuple[str, Path]]] = defaultdict(list)
    sizes: list[float] = []
    for split in SPLITS:
        try:
            index = reader.index(root, split)
        except DataError as e:
            report.errors.append(str(e))
            continue
        report.counts[split] = len(index.images)
        sizes += _check_pixel_sizes(index, report)
        dims: dict[Path, tuple[int, int]] = {}
        for _, image in index.images:
            found = _check_image(image, report)
            if found:
                hashes[found[0]].append((split, image))
                dims[image] = found[1]
        counts = _check_annotations(names, index, dims, report)
        if counts:
            report.landmarks_per_image[split] = [min(counts), max(counts)]
    if sizes:
        report.pixel_size_mm = [min(sizes), max(sizes)]
    for group in hashes.values():
        if len(group) > 1:
            paths = [str(p) for _, p in group]
            if len({s for s, _ in group}) > 1:
                report.leaks.append(paths)
                report.warnings.append(f"byte-identical images across splits: {', '.join(paths)}")
            else:
                report.warnings.append(f"byte-identical images in one split: {', '.join(paths)}")
    return report


def _check_pixel_sizes(index: SplitIndex, report: CheckReport) -> list[float]:
    try:
        known = index.pixel_sizes()
    except DataError as e:
        if str(e) not in report.errors:  # one CSV serves every split
            report.errors.append(str(e))
        return []
    found = []
    for ceph_id, image in index.images:
        if ceph_id in known:
            found.append(known[ceph_id])
        else:
            report.errors.append(
                f"{image}: no pixel size for id {ceph_id!r} in {index.pixel_size_source}"
            )
    return found


def _check_image(path: Path, report: CheckReport) -> tuple[str, tuple[int, int]] | None:
    """SHA-1 of the file bytes and (width, height), after the check ``start`` makes
    (``inspect_image``: the two never disagree on an image)."""
    try:
        size, kind, turn = inspect_image(path)
        digest = hashlib.sha1(path.read_bytes()).hexdigest()
    except (DataError, OSError) as e:
        report.unreadable.append(str(path))
        report.errors.append(str(e) if isinstance(e, DataError) else f"{path}: unreadable ({e})")
        return None
    report.bit_depths[kind] = report.bit_depths.get(kind, 0) + 1
    report.turned += turn != 1
    return digest, size


def _check_annotations(
    names: tuple[str, ...],
    index: SplitIndex,
    dims: dict[Path, tuple[int, int]],
    report: CheckReport,
) -> list[int]:
    """Check every annotator's landmarks of every image; returns landmarks present per image."""
    counts = []
    for source in index.annotations.values():
        try:
            source.check()
        except DataError as e:
            report.errors.append(str(e))
            continue
        for ceph_id, image in index.images:
            try:
                path, marks = source.read(ceph_id)
            except DataError as e:
                report.errors.append(str(e))
                continue
            extra = sorted(set(marks) - set(names))
            if extra:
                report.errors.append(f"{path}: unknown landmark symbols {', '.join(extra)}")
            missing = [s for s in names if s not in marks]
            if missing:
                report.warnings.append(f"{path}: landmarks missing: {', '.join(missing)}")
            counts.append(len(set(marks) & set(names)))
            if image in dims:
                width, height = dims[image]
                outside = [
                    s for s, (x, y) in marks.items() if not (0 <= x < width and 0 <= y < height)
                ]
                if outside:
                    report.errors.append(
                        f"{path}: landmarks outside the {width}x{height} image: "
                        + ", ".join(outside)
                    )
    return counts
