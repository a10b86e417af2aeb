"""Kept so `from trainables.model import create_model, MODELS` works; see trainables.models."""

from __future__ import annotations

from trainables.models import MODELS, create_model

__all__ = ["MODELS", "create_model"]
