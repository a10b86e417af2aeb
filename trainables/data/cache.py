"""The shared preprocessing cache: every image decoded and letterboxed once per machine.

One entry per (dataset root, format, split, image size, image fingerprint) holds a uint8 array
``(N, H, W)`` in ``<key>.npy`` (opened with ``mmap_mode="r"``, so trials and DataLoader workers
share the page cache) and ``<key>.json`` with the ids, image paths and letterbox parameters.
Landmarks are not cached: they depend on the annotator and are cheap to read.

The fingerprint covers every image's path, size and mtime, so changed images give a new key.
Builders hold an ``fcntl.flock`` on ``<key>.lock`` and publish with ``os.replace``; the JSON is
written last and marks the entry complete, so readers never see a half-written array.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trainables.data.letterbox import Letterbox, load_image
from trainables.errors import DataError
from trainables.shape import Size

CACHE_VERSION = 4  # 2: rectangular inputs, sizes named WxH; 3: wide grey scaled, not clipped;
# 4: EXIF orientation applied
SUBDIR = "preprocessed"


def resolve_cache_dir(configured: str | Path | None = None) -> Path:
    """``configured``, else ``$CEPHTUNE_CACHE_DIR``, else ``$XDG_CACHE_HOME/cephtune``, else
    ``~/.cache/cephtune``."""
    if configured:
        return Path(configured).expanduser()
    if os.environ.get("CEPHTUNE_CACHE_DIR"):
        return Path(os.environ["CEPHTUNE_CACHE_DIR"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "cephtune"


@dataclass(frozen=True)
class ImageCache:
    """A complete cache entry: the array file and one letterbox per image, in input order."""

    path: Path
    ids: tuple[str, ...]
    boxes: tuple[Letterbox, ...]
    image_size: Size

    def open(self) -> np.ndarray:
        """The (N, H, W) uint8 array, memory-mapped read-only."""
        array = np.load(self.path, mmap_mode="r")
        width, height = self.image_size.width, self.image_size.height
        if array.shape != (len(self.ids), height, width):
            raise DataError(f"{self.path}: cache array has shape {array.shape}; delete it")
        return array


def fingerprint(images: Sequence[Path]) -> str:
    """Hash of every image's resolved path, byte size and mtime."""
    h = hashlib.sha1()
    for path in images:
        try:
            st = os.stat(path)
        except OSError as e:
            raise DataError(f"{path}: image unreadable ({e.strerror})") from None
        h.update(f"{Path(path).resolve()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def entry_name(root: Path | str, fmt: str, split: str, size: Size, fp: str) -> str:
    shape = f"{size.width}x{size.height}"
    key = json.dumps([CACHE_VERSION, str(Path(root).resolve()), fmt, split, shape, fp])
    return f"{fmt}-{split}-{shape}px-{hashlib.sha1(key.encode()).hexdigest()[:20]}"


def image_cache(
    images: Sequence[Path],
    image_size: Size | int | str,
    *,
    root: Path | str,
    fmt: str,
    split: str,
    cache_dir: str | Path | None = None,
) -> ImageCache:
    """The cache entry for ``images``, building it first if no process has yet."""
    if not images:
        raise DataError(f"{root}: no images to cache for split {split!r}")
    images = [Path(p) for p in images]
    image_size = Size.parse(image_size)  # (W, H) and "WxH" name one entry
    fp = fingerprint(images)
    folder = resolve_cache_dir(cache_dir) / SUBDIR
    name = entry_name(root, fmt, split, image_size, fp)
    found = _read_entry(folder, name, images, image_size, fp)
    if found is not None:
        return found
    for attempt in range(3):
        try:
            return _build_locked(folder, name, images, image_size, fp)
        except FileNotFoundError:
            # Someone deleted the cache folder while this entry was being built (clearing a
            # cache mid-study is allowed): build it again in a fresh folder.
            if attempt == 2:
                raise DataError(f"{folder}: the cache folder keeps disappearing") from None
    raise AssertionError("unreachable")


def _build_locked(folder: Path, name: str, images: list[Path], size: Size, fp: str) -> ImageCache:
    """Build the entry under its lock unless a concurrent builder finished it first."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = open(folder / f"{name}.lock", "a")
    except FileNotFoundError:
        raise
    except OSError as e:
        raise DataError(f"{folder}: cannot create the preprocessing cache ({e})") from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a concurrent builder finishes first, then we reuse
        found = _read_entry(folder, name, images, size, fp)
        if found is None:
            _build(folder, name, images, size, fp)
            found = _read_entry(folder, name, images, size, fp)
    if found is None:
        raise FileNotFoundError(folder / f"{name}.json")  # deleted right after it was written
    return found


def _read_entry(
    folder: Path, name: str, images: list[Path], size: Size, fp: str
) -> ImageCache | None:
    """The entry if complete and matching ``images``; None means (re)build it."""
    try:
        meta = json.loads((folder / f"{name}.json").read_text())
        boxes = tuple(Letterbox(float(a), float(b), int(c), int(d)) for a, b, c, d in meta["boxes"])
        ok = (
            meta["version"] == CACHE_VERSION
            and meta["fingerprint"] == fp
            and meta["image_size"] == size.value
            and meta["images"] == [str(p) for p in images]
            and len(boxes) == len(images)
            and (folder / f"{name}.npy").is_file()
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not ok:
        return None
    return ImageCache(folder / f"{name}.npy", tuple(meta["ids"]), boxes, size)


def _build(folder: Path, name: str, images: list[Path], size: Size, fp: str) -> None:
    """Decode every image into a temporary array, then publish array and metadata atomically."""
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".npy.tmp", dir=folder)
    os.close(fd)
    try:
        array = np.lib.format.open_memmap(
            tmp, mode="w+", dtype=np.uint8, shape=(len(images), size.height, size.width)
        )
        boxes = []
        for i, path in enumerate(images):
            array[i], box = load_image(path, size)
            boxes.append(box)
        array.flush()
        del array
        os.replace(tmp, folder / f"{name}.npy")
        meta: dict[str, Any] = {
            "version": CACHE_VERSION,
            "image_size": size.value,
            "fingerprint": fp,
            "ids": [p.stem for p in images],
            "images": [str(p) for p in images],
            "boxes": [[b.scale_x, b.scale_y, b.pad_x, b.pad_y] for b in boxes],
        }
        _write_atomic(folder / f"{name}.json", json.dumps(meta))
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise
