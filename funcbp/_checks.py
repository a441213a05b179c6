"""The shared checks of plain Python values: one message per kind of value.

Each returns the value (as the type it names) or raises ``ValueError`` naming
the argument, what was expected and what came. No JAX here: these run on the
settings of a run before anything is imported or compiled.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

__all__ = ["boolean", "finite", "integer", "is_int", "is_number", "one_of", "ratio"]


def is_int(value: Any) -> bool:
    """An int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A Python int or float that is not a bool (a traced array is not one)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def integer(name: str, value: Any, low: int = 1, high: int | None = None) -> int:
    """``value`` if it is an integer in ``[low, high]`` (no upper bound for None)."""
    if not is_int(value) or value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be an integer {bound}, got {value!r}")
    return value


def finite(name: str, value: Any, *, low: float = 0.0, strict: bool = True) -> float:
    """``value`` as a float if it is a finite number above ``low`` (or at it, if not strict)."""
    if not is_number(value) or not math.isfinite(value) or value < low or (strict and value == low):
        bound = f"> {low:g}" if strict else f">= {low:g}"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return float(value)


def ratio(name: str, value: Any, *, closed: bool = False) -> float:
    """``value`` as a float in [0, 1), or in [0, 1] when ``closed``."""
    if not is_number(value) or not (0 <= value <= 1 if closed else 0 <= value < 1):
        raise ValueError(f"{name} must be a ratio in [0, 1{']' if closed else ')'}, got {value!r}")
    return float(value)


def one_of(name: str, value: Any, options: Iterable[Any]) -> Any:
    """``value`` if it is one of ``options``."""
    options = tuple(options)
    if isinstance(value, bool) or value not in options:
        raise ValueError(f"{name} must be one of {', '.join(map(str, options))}, got {value!r}")
    return value


def boolean(name: str, value: Any) -> bool:
    """``value`` if it is True or False."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value
