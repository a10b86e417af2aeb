"""A registered model as an MLflow pyfunc: ``mlflow models serve`` answers landmark requests.

``search.app.registry`` logs every promoted model with the pytorch flavor and points its
``python_function`` flavor at this module (``LOADER``), so ``mlflow.pyfunc.load_model`` and
``mlflow models serve -m models:/NAME@champion --env-manager local`` load a ``LandmarkService``:

    POST /invocations
    {"dataframe_records": [{"image": "<base64 PNG or JPEG>", "pixel_size_mm": 0.1}, ...]}
    -> {"predictions": [{"landmarks": {"A": {"x": 1209.3, "y": 850.1}, ...},
                         "pixel_size_mm": 0.1}, ...]}

one result per image, in original pixels, through the one inference path
(``trainables.eval.inference``). A model whose metadata lacks the keys
``trainables.artifacts.ModelMetadata`` requires is refused when it loads, in one line. mlflow is
imported only when a model is loaded, so the trainable never needs it.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
from pathlib import Path
from typing import Any

from PIL import Image

from trainables.artifacts import ModelMetadata
from trainables.errors import DataError
from trainables.eval.inference import predict_images
from trainables.precision import Precision
from trainables.shape import Size

LOADER = __name__  # the python_function flavor's loader_module


class LandmarkService:
    """``predict(records)``: landmarks per request row (``image``: base64 bytes of a PNG or
    JPEG; ``pixel_size_mm``, optional: echoed back, never assumed)."""

    def __init__(self, model: Any, metadata: ModelMetadata) -> None:
        self.model = model
        self.meta = metadata
        # Where and in which numerics it runs: the GPU when there is one, in the precision it
        # was validated in. A warm-up pass on a blank image before the first request pays the
        # CUDA context, cuDNN's algorithm search and the model's move to the device.
        self.precision = Precision.for_inference(metadata.precision)
        self.warm_up()

    def warm_up(self) -> None:
        blank = io.BytesIO()
        size = Size.parse(self.meta.image_size)
        Image.new("L", (size.width, size.height)).save(blank, format="PNG")
        self._landmarks([blank])

    def _landmarks(self, images: list[io.BytesIO]) -> Any:
        return predict_images(
            self.model, images, self.meta.image_size, self.precision, stride=self.meta.stride
        )

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        rows = data.to_dict("records") if hasattr(data, "to_dict") else list(data)
        images = []
        for i, row in enumerate(rows):
            text = row.get("image") if isinstance(row, dict) else None
            if not isinstance(text, str):
                raise DataError(f"row {i}: 'image' must be a base64 PNG or JPEG")
            try:
                images.append(io.BytesIO(base64.b64decode(text, validate=True)))
            except (binascii.Error, ValueError):
                raise DataError(f"row {i}: 'image' is not valid base64") from None
        preds = self._landmarks(images)
        results = []
        for row, xy in zip(rows, preds, strict=True):
            result: dict[str, Any] = {
                "landmarks": {
                    s: {"x": round(float(x), 2), "y": round(float(y), 2)}
                    for s, (x, y) in zip(self.meta.symbols, xy, strict=True)
                }
            }
            size = row.get("pixel_size_mm")
            if isinstance(size, (int, float)) and math.isfinite(size):
                result["pixel_size_mm"] = float(size)
            results.append(result)
        return results


def _load_pyfunc(data_path: str, model_config: dict | None = None) -> LandmarkService:
    """MLflow's pyfunc entry point: ``data_path`` is the model folder's ``data``. The metadata
    is checked before the network is unpickled."""
    import mlflow.pytorch
    from mlflow.models import Model

    folder = Path(data_path).parent
    meta = ModelMetadata.from_dict(Model.load(str(folder)).metadata, str(folder))
    model = mlflow.pytorch.load_model(str(folder), map_location="cpu")
    return LandmarkService(model, meta)
