"""Where a study's data comes from: a local Aariz or ISBI folder, or the synthetic cache.

Synthetic datasets are generated once per (n, size, seed, generator version) under the cache
directory (``$CEPHTUNE_CACHE_DIR``, else ``$XDG_CACHE_HOME/cephtune``, else ``~/.cache/cephtune``)
and reused by every study and trial on the machine.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from search.studyfiles.study import DatasetSpec
from trainables.data.cache import resolve_cache_dir
from trainables.data.formats import load_split
from trainables.data.synth import SynthSpec, ensure_dataset
from trainables.errors import DataError
from trainables.eval.metrics import radial_errors, summarize


def prepare(spec: DatasetSpec, where: str = "dataset.root") -> Path:
    """A local Aariz-layout folder for ``spec``, generating synthetic data on first use.

    The train and valid splits are indexed and verified here, in the driver (every image file
    complete, every landmark on its image), so a broken dataset fails the study before anything
    is recorded. ``where`` names the key in a missing root's message (``studies/x.yaml:
    dataset.root``).
    """
    if spec.format != "synthetic":
        root = Path(spec.root)
        if not root.is_dir():
            raise DataError(f"{where}: {root}: dataset folder missing")
    else:
        synth = SynthSpec(n=spec.n, width=spec.size[0], height=spec.size[1], seed=spec.seed)
        root = resolve_cache_dir() / "synthetic" / synth.key()
        ensure_dataset(synth, root)
    for split in ("train", "valid"):
        load_split(root, split, spec.annotator, spec.loader_format, verify=True)
    return root.resolve()


def prepare_at(spec: DatasetSpec, root: str) -> None:
    """On a node of the cluster: the dataset the driver prepared at ``root``, at the same path
    here (synthetic data generated if missing), checked as ``prepare`` checks it."""
    if spec.format == "synthetic":
        synth = SynthSpec(n=spec.n, width=spec.size[0], height=spec.size[1], seed=spec.seed)
        ensure_dataset(synth, Path(root))
    for split in ("train", "valid"):
        load_split(Path(root), split, spec.annotator, spec.loader_format, verify=True)


def mean_shape_baseline(root: Path, annotator: str, fmt: str = "aariz") -> float:
    """Valid-split MRE (mm) of predicting every landmark at its train-set mean position."""
    train = load_split(root, "train", annotator, fmt)
    valid = load_split(root, "valid", annotator, fmt)
    mean = np.nanmean(np.stack([r.landmarks for r in train]), axis=0)
    truth = np.stack([r.landmarks for r in valid])
    sizes = np.array([r.pixel_size for r in valid])
    return summarize(radial_errors(np.broadcast_to(mean, truth.shape), truth, sizes))["mre_mm"]
