"""Argument checks shared by the packages, with the house error text ``'name' must be … (got …)``.

Example:
    >>> positive_int("num_reads", 4)
    4
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any

from qsgd.errors import ConfigError

__all__ = ["positive_int", "positive_number"]


def positive_int(name: str, value: Any) -> int:
    """``value`` as an ``int`` if it is an integer ``>= 1`` (``bool`` is not an integer here).

    Raises:
        ConfigError: (a ``ValueError``) naming ``name`` and the value otherwise.
    """
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise ConfigError(f"{name} must be a positive int (got {value!r})")
    return int(value)


def positive_number(name: str, value: Any) -> float:
    """``value`` as a ``float`` if it is a real number ``> 0`` (``bool`` is not a number here).

    Raises:
        ConfigError: (a ``ValueError``) naming ``name`` and the value otherwise.

    Example:
        >>> positive_number("chain_strength", 2)
        2.0
    """
    if isinstance(value, bool) or not isinstance(value, Real) or not value > 0:
        raise ConfigError(f"{name} must be a positive number (got {value!r})")
    return float(value)
