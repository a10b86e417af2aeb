"""Device and numeric precision: one code path for CUDA and CPU.

``torch.autocast(device_type, dtype)`` and ``torch.amp.GradScaler(device_type)`` both accept
"cpu", so the mixed-precision path tested on CPU (bf16) differs on a GPU only by the device.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch

from trainables.errors import ConfigError

PRECISIONS = ("auto", "fp32", "fp16", "bf16")
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class Precision:
    """Where the trial runs and in which dtype its forward pass computes."""

    device: torch.device
    name: str  # fp32 | fp16 | bf16, after resolving "auto"

    @classmethod
    def resolve(cls, requested: str, device: torch.device | None = None) -> Precision:
        if requested not in PRECISIONS:
            raise ConfigError(f"unknown precision {requested!r}; known: {', '.join(PRECISIONS)}")
        if device is None:
            device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        name = requested
        if requested == "auto":
            name = "fp16" if device.type == "cuda" else "fp32"
        if name == "fp16" and device.type == "cpu":
            raise ConfigError("precision fp16 needs CUDA; use bf16 or fp32 on CPU")
        return cls(device, name)

    def autocast(self) -> AbstractContextManager:
        if self.name == "fp32":
            return nullcontext()
        return torch.autocast(self.device.type, dtype=DTYPES[self.name])

    def scaler(self) -> torch.amp.GradScaler:
        """Loss scaling is needed for fp16 only (bf16 has fp32's exponent range)."""
        return torch.amp.GradScaler(self.device.type, enabled=self.name == "fp16")

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        model = model.to(self.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
            model = model.to(memory_format=torch.channels_last)
        return model

    def batch(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device, non_blocking=True)
        if self.device.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        return images
