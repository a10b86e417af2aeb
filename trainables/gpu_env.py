"""The environment a GPU trial needs from Ray, checked by the driver and by the trial (torch-free).

Each trial must see only the GPU Ray gave it: ``trainables.device`` takes ``cuda`` and index 0 to
be that GPU, which holds while Ray sets ``CUDA_VISIBLE_DEVICES`` per actor.
"""

from __future__ import annotations

from collections.abc import Mapping

from trainables.errors import ConfigError

# With it set, Ray leaves CUDA_VISIBLE_DEVICES alone, so every trial would see all GPUs and train
# on (and cap) GPU 0, which is what "cuda" and index 0 mean here.
NOSET = "RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES"


def check_gpu_isolation(environ: Mapping[str, str], where: str) -> None:
    """Refuse GPU trials under ``NOSET``: each trial must see only the GPU Ray gave it."""
    value = environ.get(NOSET, "")
    if value not in ("", "0"):
        raise ConfigError(
            f"{where}: {NOSET}={value} is set, so Ray would not give each trial its own GPU "
            "and every trial would train on GPU 0; unset it to run GPU trials"
        )
