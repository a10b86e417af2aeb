"""Damaged and unusual image files for the hostile dataset cases (``tests/bad_builds.py``'s
``corrupt`` applies them to a copy of a pristine dataset)."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from pathlib import Path

from PIL import Image


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, data) of each chunk of a PNG file."""
    chunks, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        chunks.append((data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return chunks


def png_bytes(chunks: list[tuple[bytes, bytes]]) -> bytes:
    """A PNG file of ``chunks``, each with its checksum computed."""
    out = [b"\x89PNG\r\n\x1a\n"]
    for kind, body in chunks:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        out.append(struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc))
    return b"".join(out)


def damaged_pixels(path_in_root: str) -> Callable[[Path], None]:
    """The PNG's compressed pixel data damaged, its checksums made right again: every chunk
    verifies, nothing decodes."""

    def change(root: Path) -> None:
        path = root / path_in_root
        chunks = png_chunks(path.read_bytes())
        for i, (kind, body) in enumerate(chunks):
            if kind == b"IDAT":
                middle = len(body) // 2
                chunks[i] = (kind, body[:middle] + bytes(b ^ 0xFF for b in body[middle:]))
                break
        path.write_bytes(png_bytes(chunks))

    return change


def without_iend(path_in_root: str) -> Callable[[Path], None]:
    """The PNG without its closing IEND chunk: the pixels decode, the file is incomplete."""

    def change(root: Path) -> None:
        path = root / path_in_root
        path.write_bytes(png_bytes([c for c in png_chunks(path.read_bytes()) if c[0] != b"IEND"]))

    return change


def second_image(name: str, split: str = "train") -> Callable[[Path], None]:
    """Another picture named ``name`` beside the split's images (``synth00000.jpg``)."""

    def change(root: Path) -> None:
        Image.new("L", (80, 100), 128).save(root / split / "Cephalograms" / name)

    return change


def dangling(name: str, target: str, split: str = "train") -> Callable[[Path], None]:
    """A symlink ``name`` among the split's images pointing at ``target`` (relative to it)."""

    def change(root: Path) -> None:
        (root / split / "Cephalograms" / name).symlink_to(target)

    return change
