"""Checks for architecture knobs: a bad value is a ConfigError naming `models.<arch>.<knob>`.

Builders call these before constructing anything, so a typo in params.yaml fails in a second
with the field to fix instead of deep inside a layer with a shape error.
"""

from __future__ import annotations

from typing import Any, get_args

from mlic.errors import ConfigError


def require_choice(arch: str, knob: str, value: object, choices: Any) -> None:
    """`choices` is the knob's `Literal[...]` type, so the allowed values are written once."""
    allowed = get_args(choices)
    if value not in allowed:
        raise ConfigError(
            f"{knob} must be one of {', '.join(repr(c) for c in allowed)}, got {value!r}",
            field=f"models.{arch}.{knob}",
            fix=f"set models.{arch}.{knob} to one of {', '.join(map(str, allowed))}",
        )


def require_count(arch: str, **knobs: object) -> None:
    """Widths, heads, groups: whole numbers of at least 1 (a YAML `512.0` would fail later in
    `nn.Linear` with a message about tensor sizes)."""
    for knob, value in knobs.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(
                f"{knob} must be a whole number >= 1, got {value!r}",
                field=f"models.{arch}.{knob}",
                fix=f"set models.{arch}.{knob} to a positive integer",
            )


def require_weight(arch: str, **knobs: object) -> None:
    """Loss weights: numbers of at least 0 (0 turns the term off)."""
    for knob, value in knobs.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ConfigError(
                f"{knob} must be a number >= 0, got {value!r}",
                field=f"models.{arch}.{knob}",
                fix=f"set models.{arch}.{knob} to 0 or more",
            )


def require_range(arch: str, knob: str, value: float, low: float, high: float) -> None:
    """Inclusive range check (weights, probabilities)."""
    if not low <= value <= high:
        raise ConfigError(
            f"{knob} must lie in [{low}, {high}], got {value!r}",
            field=f"models.{arch}.{knob}",
            fix=f"set models.{arch}.{knob} between {low} and {high}",
        )


def require_divisible(arch: str, knob: str, value: int, divisor_knob: str, divisor: int) -> None:
    """Multi-head layers split a width evenly over heads."""
    if value % divisor:
        raise ConfigError(
            f"{knob}={value} is not divisible by {divisor_knob}={divisor}",
            field=f"models.{arch}.{knob}",
            fix=f"make models.{arch}.{knob} a multiple of {divisor_knob}",
        )
