"""Training samples: letterboxed images and landmarks of one split, as torch tensors.

Splits are indexed by ``trainables.data.formats``. ``LandmarkDataset`` serves images from the
shared preprocessing cache (``trainables.data.cache``) with optional augmentation
(``trainables.data.augment``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainables.data.augment import AugmentConfig, apply, draw
from trainables.data.cache import ImageCache, image_cache
from trainables.data.formats import symbols
from trainables.data.letterbox import Letterbox
from trainables.data.records import Record
from trainables.shape import Size

__all__ = ["LandmarkDataset"]

NO_DRAWS = torch.zeros(0)  # the draws of a sample that is not augmented


class LandmarkDataset(torch.utils.data.Dataset):
    """Letterboxed images from the shared cache with landmarks in input pixels.

    ``__getitem__(i)`` returns ``(image (1, H, W), coords (K, 2) float32 in input pixels with
    NaN for missing, i, draws)``. Without ``augment`` the image is float32 in [0, 1] and
    ``draws`` empty. With it the image is the cached uint8 and ``draws`` its augmentation's row
    (``trainables.data.augment.draw``), from a generator seeded by ``(seed, epoch, i)``, with
    the landmarks already warped: ``augment.apply`` warps and jitters the batch where the step
    runs (``images``). Call ``set_epoch(epoch)`` before ``iter(loader)`` each epoch and the
    samples are the same for any ``num_workers``. The epoch
    lives in shared memory, so persistent workers see it too. The cache array is memory-mapped
    lazily in each process, so the dataset pickles cheaply to DataLoader workers.
    """

    def __init__(
        self,
        records: Sequence[Record],
        image_size: Size | int | str,
        *,
        fmt: str,
        root: Path | str,
        split: str,
        cache_dir: str | Path | None = None,
        augment: AugmentConfig | None = None,
        seed: int = 0,
    ) -> None:
        self.records = list(records)
        self.symbols = symbols(fmt, root)
        self.num_landmarks = len(self.symbols)
        self.image_size = image_size = Size.parse(image_size)
        self.augment = augment
        self.seed = seed
        # In shared memory so that set_epoch reaches persistent DataLoader workers too.
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self._cache: ImageCache = image_cache(
            [r.image for r in self.records],
            image_size,
            root=root,
            fmt=fmt,
            split=split,
            cache_dir=cache_dir,
        )
        self._rebuild = {"root": root, "fmt": fmt, "split": split, "cache_dir": cache_dir}
        self.boxes: list[Letterbox] = list(self._cache.boxes)
        self.coords = np.stack(
            [box.forward(r.landmarks) for r, box in zip(self.records, self.boxes, strict=True)]
        ).astype(np.float32)
        self._images: np.ndarray | None = None

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draws of ``epoch``; call it before ``iter(loader)``."""
        self._epoch.fill_(epoch)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int, torch.Tensor]:
        image = self._array()[i]
        coords = self.coords[i]
        if self.augment is None:
            out = torch.from_numpy(image.astype(np.float32) / 255.0)
            return out.unsqueeze(0), torch.from_numpy(coords.copy()), i, NO_DRAWS
        rng = np.random.default_rng([self.seed % 2**32, self.epoch, i])
        row, coords = draw(self.augment, coords, (image.shape[-1], image.shape[-2]), rng)
        out = torch.from_numpy(np.array(image))  # out of the read-only memory map
        return out.unsqueeze(0), torch.from_numpy(coords), i, torch.from_numpy(row)

    def images(self, images: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
        """A loaded batch as the model's input, float32 in [0, 1] on the batch's device: warped
        and jittered by its draws when this split is augmented (``augment.apply``)."""
        return apply(images, draws, self.augment)

    def resized(self, image_size: Size | int | str) -> LandmarkDataset:
        """The same records at another input size, without augmentation (an ensemble member's
        view of the split)."""
        if Size.parse(image_size) == self.image_size and self.augment is None:
            return self
        return LandmarkDataset(self.records, image_size, seed=self.seed, **self._rebuild)

    def to_original(self, i: int, xy: np.ndarray) -> np.ndarray:
        """Map input-pixel points of image ``i`` back to its original pixels."""
        return self.boxes[i].inverse(xy)

    def _array(self) -> np.ndarray:
        if self._images is None:
            try:
                self._images = self._cache.open()
            except FileNotFoundError:
                # The cache folder was cleared since construction: rebuild the same entry.
                self._cache = image_cache(
                    [r.image for r in self.records], self.image_size, **self._rebuild
                )
                self._images = self._cache.open()
        return self._images

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_images"] = None  # each worker process maps the file itself
        return state
