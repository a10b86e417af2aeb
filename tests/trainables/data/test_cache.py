"""The shared preprocessing cache: built once, reused, rebuilt on change, safe under races."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from trainables.data import cache
from trainables.data.dataset import LandmarkDataset
from trainables.data.formats import load_split
from trainables.data.synth import SynthSpec, write_dataset
from trainables.errors import DataError


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    return write_dataset(
        SynthSpec(n=6, width=64, height=80, seed=0), tmp_path_factory.mktemp("s") / "d"
    )


def build(root: Path, cache_dir: Path, size: int = 32) -> LandmarkDataset:
    records = load_split(root, "train", "mean")
    return LandmarkDataset(
        records, size, fmt="aariz", root=root, split="train", cache_dir=cache_dir
    )


def stack(data: LandmarkDataset) -> np.ndarray:
    return np.stack([data[i][0].numpy() for i in range(len(data))])


def entries(cache_dir: Path) -> list[str]:
    folder = cache_dir / cache.SUBDIR
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".lock"))


def test_cache_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("CEPHTUNE_CACHE_DIR", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.resolve_cache_dir(tmp_path / "cfg") == tmp_path / "cfg"
    assert cache.resolve_cache_dir(None) == tmp_path / "env"
    monkeypatch.delenv("CEPHTUNE_CACHE_DIR")
    assert cache.resolve_cache_dir() == tmp_path / "xdg" / "cephtune"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.resolve_cache_dir() == tmp_path / "home" / ".cache" / "cephtune"


def refuse(path, size):
    raise AssertionError(f"decoded {path} although the cache holds it")


def test_built_once_then_reused_without_decoding(synth, tmp_path, monkeypatch):
    first = build(synth, tmp_path / "c")
    names = entries(tmp_path / "c")
    assert len(names) == 2 and names[0].endswith(".json") and names[1].endswith(".npy")
    monkeypatch.setattr(cache, "load_image", refuse)
    second = build(synth, tmp_path / "c")
    np.testing.assert_array_equal(stack(first), stack(second))
    assert second.boxes == first.boxes
    folder = tmp_path / "c" / cache.SUBDIR
    with pytest.raises(AssertionError, match="decoded"):
        build(synth, tmp_path / "c", size=64)  # another image size is another entry
    assert not any(p.name.endswith(".tmp") for p in folder.iterdir())


def test_rebuilt_when_an_image_changes_or_the_cache_is_deleted(synth, tmp_path):
    root = Path(shutil.copytree(synth, tmp_path / "d"))
    before = stack(build(root, tmp_path / "c"))
    image = sorted((root / "train" / "Cephalograms").iterdir())[0]
    Image.fromarray(np.full((80, 64), 255, dtype=np.uint8)).save(image)
    os.utime(image, ns=(time.time_ns(), time.time_ns() + 10**9))
    after = stack(build(root, tmp_path / "c"))
    assert after[0].max() == 1.0 and not np.array_equal(before[0], after[0])
    np.testing.assert_array_equal(before[1:], after[1:])
    assert len(entries(tmp_path / "c")) == 4  # the stale entry stays until the folder is cleared
    data = build(root, tmp_path / "c")
    shutil.rmtree(tmp_path / "c")
    np.testing.assert_array_equal(stack(data), after)  # reopened lazily: rebuilt on demand
    np.testing.assert_array_equal(stack(build(root, tmp_path / "c")), after)


def slow_counting_decode(counter: Path):
    decode = cache.load_image

    def load(path, size):
        with open(counter, "a") as f:
            f.write(f"{path}\n")
        time.sleep(0.05)
        return decode(path, size)

    return load


def build_in_child(root: Path, cache_dir: Path, barrier, out: Path) -> None:
    barrier.wait()
    np.save(out, stack(build(root, cache_dir)))


def test_concurrent_builders_build_once_and_agree(synth, tmp_path, monkeypatch):
    counter = tmp_path / "decoded.txt"
    monkeypatch.setattr(cache, "load_image", slow_counting_decode(counter))
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(2)
    outs = [tmp_path / f"out{i}.npy" for i in range(2)]
    procs = [
        ctx.Process(target=build_in_child, args=(synth, tmp_path / "c", barrier, out))
        for out in outs
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    np.testing.assert_array_equal(np.load(outs[0]), np.load(outs[1]))
    assert len(counter.read_text().splitlines()) == 4  # 4 train images, decoded once in all


def test_corrupt_image_is_an_error_and_leaves_no_cache(synth, tmp_path):
    root = Path(shutil.copytree(synth, tmp_path / "d"))
    bad = sorted((root / "train" / "Cephalograms").iterdir())[2]
    bad.write_bytes(bad.read_bytes()[:40])
    with pytest.raises(DataError, match=f"{bad.name}: unreadable image"):
        build(root, tmp_path / "c")
    assert entries(tmp_path / "c") == []
