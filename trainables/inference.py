"""Landmarks on new images: letterbox, forward, decode, map back to original pixels.

Works with any model that maps a (B, 1, S, S) batch to (B, K, S/stride, S/stride) heatmaps: an
eager model from ``create_model`` or a ``torch.export`` program loaded from MLflow.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from trainables import heatmap
from trainables.letterbox import load_image


def predict_images(
    model: nn.Module,
    paths: Sequence[Path],
    image_size: int,
    batch_size: int = 4,
    device: torch.device | str | None = None,
    stride: int | None = None,
) -> np.ndarray:
    """Landmarks (N, K, 2) in original-image pixels for each image of ``paths``.

    ``image_size`` must be the size the model was trained at; ``stride`` defaults to
    ``model.stride`` (an exported program has none: pass it). ``device`` defaults to the
    model's own. An unreadable image raises ``DataError`` naming it.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    stride = model.stride if stride is None else stride
    if device is None:
        device = next(model.parameters()).device
    else:
        model = model.to(device)
    try:
        model.eval()
    except NotImplementedError:
        pass  # a torch.export program: its graph keeps the mode it was exported in (eval)
    preds: list[np.ndarray] = []
    with torch.no_grad():
        for start in range(0, len(paths), batch_size):
            loaded = [load_image(Path(p), image_size) for p in paths[start : start + batch_size]]
            images = np.stack([canvas for canvas, _ in loaded]).astype(np.float32) / 255.0
            batch = torch.from_numpy(images).unsqueeze(1).to(device)
            out = model(batch)
            xy = heatmap.from_heatmap(heatmap.decode(out), stride).cpu().numpy()
            preds.extend(box.inverse(points) for (_, box), points in zip(loaded, xy, strict=True))
    if not preds:
        return np.zeros((0, 0, 2))
    return np.stack(preds)
