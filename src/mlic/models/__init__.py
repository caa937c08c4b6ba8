"""Architectures: a registry, shared layers, one file per model."""

from mlic.models.registry import build_from_spec, create_model, list_models, model_spec, register_model

__all__ = ["build_from_spec", "create_model", "list_models", "model_spec", "register_model"]
