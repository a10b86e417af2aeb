"""Device and numeric precision: one code path for CUDA and CPU.

``torch.autocast(device_type, dtype)`` and ``torch.amp.GradScaler(device_type)`` both accept
"cpu", so the mixed-precision path tested on CPU (bf16) differs on a GPU only by the device.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch

from trainables.config import PRECISIONS
from trainables.device import unusable_gpus
from trainables.errors import ConfigError

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def choose_precision(requested: str, device_type: str, native_bf16: bool) -> str:
    """The dtype a run computes in, from what was asked, the device and whether the GPU does
    bf16 natively (compute capability >= 8.0: A100, H100, RTX 30xx and later).

    ``auto`` is bf16 on such a GPU (fp32's exponent range: no loss scaling, no overflow), fp16
    with a GradScaler on an older GPU, fp32 on CPU. An explicit bf16 on an older GPU (T4, V100)
    is refused rather than run emulated at a fraction of fp16's speed; fp16 needs CUDA.
    """
    if requested not in PRECISIONS:
        raise ConfigError(f"unknown precision {requested!r}; known: {', '.join(PRECISIONS)}")
    if requested == "auto":
        if device_type == "cuda":
            return "bf16" if native_bf16 else "fp16"
        return "fp32"
    if requested == "fp16" and device_type != "cuda":
        raise ConfigError("precision fp16 needs CUDA; use bf16 or fp32 on CPU")
    if requested == "bf16" and device_type == "cuda" and not native_bf16:
        raise ConfigError(
            "precision bf16: this GPU has no native bf16 (compute capability < 8.0), so it "
            "would run emulated and slow; use fp16 or auto"
        )
    return requested


def native_bf16(device: torch.device) -> bool:
    """Whether a CUDA ``device`` computes bf16 in hardware (compute capability 8.0, Ampere, or
    later), asked of that device, not of the current one; False for a CPU, where bf16 autocast
    is allowed when asked for (it is the tested stand-in for the GPU path)."""
    if device.type != "cuda":
        return False
    major, _ = torch.cuda.get_device_capability(device)
    return major >= 8


def default_device() -> torch.device:
    """CUDA when this process sees a GPU: the standalone ``train`` and ``promote`` paths. A Ray
    trial uses ``trainables.device.trial_device`` instead, from the resources it was given.
    A GPU the driver lists but torch cannot use is refused with the reason, never passed over
    for the CPU in silence (``CUDA_VISIBLE_DEVICES=`` asks for the CPU)."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    reason = unusable_gpus()
    if reason:
        raise ConfigError(f"{reason}; or set CUDA_VISIBLE_DEVICES= to run on the CPU")
    return torch.device("cpu")


@dataclass(frozen=True)
class Precision:
    """Where the run computes and in which dtype its forward pass does."""

    device: torch.device
    name: str  # fp32 | fp16 | bf16, after resolving "auto"

    @classmethod
    def resolve(cls, requested: str, device: torch.device | None = None) -> Precision:
        device = default_device() if device is None else torch.device(device)
        return cls(device, choose_precision(requested, device.type, native_bf16(device)))

    @classmethod
    def for_inference(cls, trained: str = "auto") -> Precision:
        """Where a trained model is run outside training (``promote``'s test and candidates'
        valid errors, ``predict``, serving): the GPU when this process has one, in the
        precision its config asked for (``trained``) resolved there, as validation in
        training resolved it: a model is ranked on valid and scored on test in the same
        numerics (``auto``: bf16 on a GPU with native bf16, fp32 on a CPU). Where this device
        cannot run what training ran (fp16 on a CPU, bf16 on a GPU without it), ``auto``."""
        device = default_device()
        try:
            return cls.resolve(trained, device)
        except ConfigError:
            return cls.resolve("auto", device)

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
