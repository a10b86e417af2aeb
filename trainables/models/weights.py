"""The pretrained weights a study's trials load, fetched before the study starts.

On each node of the cluster, once per backbone a trial can draw with ``pretrained: true``, the
model is built as a trial builds it: timm downloads the ImageNet weights into its cache there
(or reads ``pretrained_file``). A node that cannot get them fails the start in one line (what is
missing, the cache, ``pretrained_file``) instead of failing every trial, and trials that start
together do not all download the same file at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from trainables.config import TrainConfig
from trainables.models import create_model


def fetch(configs: Sequence[dict[str, Any]]) -> None:
    """Build each of ``configs`` (model, backbone, pretrained, pretrained_file) with its weights;
    the first that cannot load them raises its ``ConfigError``."""
    from huggingface_hub.utils import logging as hub_logging

    hub_logging.set_verbosity_error()  # its retry lines; the error says what failed
    for values in configs:
        create_model(TrainConfig.from_dict(dict(values), where="pretrained weights"), 1)
