"""An ensemble of landmark models that may differ in input size and heatmap stride.

Each member sees the image letterboxed at its own size; the members' landmarks are merged (the
mean) in original-image pixels, so sizes and strides never need to agree. The inference path
(``trainables.eval.inference``) recognises an ``Ensemble`` and does that; the module itself is
a container (so it pickles into the MLflow registry like a single model).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import nn

from trainables.shape import Size


class Ensemble(nn.Module):
    """``members`` with the input size each was trained at and whether it saw mirrored images
    (``aug_flip``: test-time augmentation mirrors only for those)."""

    def __init__(
        self, members: Sequence[nn.Module], sizes: Sequence[Size], flips: Sequence[bool]
    ) -> None:
        super().__init__()
        if not (len(members) == len(sizes) == len(flips) >= 1):
            raise ValueError("an ensemble needs one size and one flip flag per member, >= 1")
        self.members = nn.ModuleList(members)
        self.sizes = list(sizes)
        self.flips = list(flips)
        self.stride = int(members[0].stride)  # what the registry records; each keeps its own

    def parts(self) -> Iterator[tuple[nn.Module, Size, bool]]:
        yield from zip(self.members, self.sizes, self.flips, strict=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Never used: the members see different inputs (each its own letterbox)."""
        raise TypeError("an Ensemble predicts through trainables.eval.inference, not forward()")
