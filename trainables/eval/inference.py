"""Landmarks from a model: the one inference path of training (valid), promotion (test),
``evaluate`` and ``predict``.

A batch of letterboxed images goes through the model (prepared for the device: channels_last on
CUDA) under the precision's autocast, the same numerics wherever a model is scored: validation
in training, and ``Precision.for_inference`` of the model's config for the test, candidates,
``predict`` and serving. Its heatmaps are decoded in float32 (a bf16 or fp16 heatmap would round
the sub-pixel step) and mapped back to original-image pixels, image by image. With test-time
augmentation every transform of a batch goes through one forward pass and one copy to the
host. Works with any model that maps a (B, 1, H, W) batch to (B, K, H/stride, W/stride)
heatmaps: an eager model from ``create_model`` or an exported program loaded from MLflow (pass
its ``stride``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from torch import nn

from trainables.data.dataset import LandmarkDataset
from trainables.data.letterbox import load_image
from trainables.eval import heatmap
from trainables.eval.ensemble import Ensemble
from trainables.eval.metrics import radial_errors
from trainables.eval.tta import TTA, unwarp_points, warp
from trainables.precision import Precision

# A batch: the letterboxed images and, per image, the map from input to original pixels.
Batch = tuple[torch.Tensor, Sequence[Callable[[np.ndarray], np.ndarray]]]


def predict(
    model: nn.Module,
    batches: Iterable[Batch],
    precision: Precision,
    stride: int | None = None,
    tta: TTA | None = None,
) -> list[np.ndarray]:
    """Landmarks (K, 2) in original-image pixels for every image of ``batches``, in order.

    With ``tta`` each batch also goes through the transforms it lists, all in one forward pass
    (a batch of B images is B x transforms samples; in eval mode each sample is its own);
    every transform's landmarks are mapped back to original pixels and their mean is the
    prediction.
    """
    stride = model.stride if stride is None else stride
    model = precision.prepare(model)
    try:
        model.eval()
    except NotImplementedError:
        pass  # a torch.export program: its graph keeps the mode it was exported in (eval)
    points: list[np.ndarray] = []
    with torch.no_grad():
        for images, to_original in batches:
            images = precision.batch(images)
            h, w = images.shape[-2:]
            matrices = [np.eye(3)] if tta is None else tta.matrices(w, h)
            warped = torch.cat([warp(images, matrix) for matrix in matrices])
            with precision.autocast():
                out = model(precision.batch(warped))  # channels_last again on CUDA
            xy = heatmap.from_heatmap(heatmap.decode(out.float()), stride).cpu().numpy()
            found = [
                [back(p) for back, p in zip(to_original, unwarp_points(part, m), strict=True)]
                for part, m in zip(np.split(xy, len(matrices)), matrices, strict=True)
            ]
            points.extend(np.mean(found, axis=0))  # over transforms, in original pixels
    return points


def predict_dataset(
    model: nn.Module,
    data: LandmarkDataset,
    precision: Precision,
    batch_size: int,
    tta: TTA | None = None,
) -> np.ndarray:
    """Landmarks (N, K, 2) in original-image pixels for every image of ``data`` (an
    ``Ensemble``: the mean of its members', each on ``data`` at its own size)."""
    if isinstance(model, Ensemble):
        return np.mean(
            [
                predict_dataset(member, data.resized(size), precision, batch_size, _tta(tta, flip))
                for member, size, flip in model.parts()
            ],
            axis=0,
        )
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False)
    batches = (
        (data.images(images, draws), [lambda p, i=i: data.to_original(i, p) for i in idx.tolist()])
        for images, _, idx, draws in loader
    )
    found = predict(model, batches, precision, tta=tta)
    return np.stack(found) if found else np.zeros((0, data.num_landmarks, 2))


def errors_mm(
    model: nn.Module, data: LandmarkDataset, precision: Precision, batch_size: int
) -> np.ndarray:
    """Radial errors (N, K) in mm on ``data``; NaN where a landmark is not annotated."""
    truth = np.stack([r.landmarks for r in data.records])
    sizes = np.array([r.pixel_size for r in data.records])
    return radial_errors(predict_dataset(model, data, precision, batch_size), truth, sizes)


def predict_images(
    model: nn.Module,
    paths: Sequence[Path | BinaryIO],
    image_size: int | str,
    precision: Precision | None = None,
    batch_size: int = 4,
    stride: int | None = None,
    tta: TTA | None = None,
) -> np.ndarray:
    """Landmarks (N, K, 2) in original-image pixels for each image file of ``paths``.

    ``image_size`` must be the size the model was trained at. ``precision`` (default fp32 on
    the model's device) says where the batches go; the model is moved there. An unreadable
    image raises ``DataError`` naming it.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if isinstance(model, Ensemble):  # each member at its own size, merged in original pixels
        found = []
        for member, size, flip in model.parts():
            for p in paths:
                if hasattr(p, "seek"):
                    p.seek(0)
            found.append(
                predict_images(member, paths, size, precision, batch_size, None, _tta(tta, flip))
            )
        return np.mean(found, axis=0)
    if precision is None:
        precision = Precision.resolve("fp32", next(model.parameters()).device)

    def batches() -> Iterable[Batch]:
        for start in range(0, len(paths), batch_size):
            chunk = paths[start : start + batch_size]
            # A file object (an image served over HTTP) is decoded as it is.
            loaded = [load_image(p if hasattr(p, "read") else Path(p), image_size) for p in chunk]
            images = np.stack([canvas for canvas, _ in loaded]).astype(np.float32) / 255.0
            yield torch.from_numpy(images).unsqueeze(1), [box.inverse for _, box in loaded]

    found = predict(model, batches(), precision, stride, tta)
    return np.stack(found) if found else np.zeros((0, 0, 2))


def _tta(tta: TTA | None, flip: bool) -> TTA | None:
    """An ensemble member's test-time augmentation: mirrored only if it trained with flips."""
    return None if tta is None else dataclasses.replace(tta, flip=tta.flip and flip)
