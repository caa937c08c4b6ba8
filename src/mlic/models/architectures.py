"""Imports every architecture module so its `@register_model` runs; add new models here."""

from mlic.models import baseline, cmasge, controls, mgsgn, mlgcn, msrn, sgfn  # noqa: F401
