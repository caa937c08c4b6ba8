"""Architectures: a registry, shared layers, one file per model.

Importing the package registers every built-in architecture (each module's `@register_model`
runs on import, as timm's do); a new model is a module here and a line below.
"""

from mlic.models import baseline, cmasge, controls, mgsgn, mlgcn, msrn, sgfn  # noqa: F401 - imported for their @register_model
from mlic.models.registry import (
    build_from_spec,
    create_model,
    list_models,
    model_spec,
    register_model,
)

__all__ = ["build_from_spec", "create_model", "list_models", "model_spec", "register_model"]
