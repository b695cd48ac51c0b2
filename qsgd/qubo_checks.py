"""Argument checks of the QUBO builders (:mod:`qsgd.qubo`, :mod:`qsgd.sign_match_qubo`).

Errors name the argument, the layer (``name``, when given), the value and what was expected.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from qsgd.errors import ProblemError


def _where(name: str | None) -> str:
    return f" of {name!r}" if name else ""


def _as_float_array(value: Any, arg: str, name: str | None, dtype: Any = np.float64) -> np.ndarray:
    """``value`` as a ``dtype`` array (torch tensors are detached and moved to CPU; no copy when
    the value already has that dtype)."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu().numpy()
    try:
        arr = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise ProblemError(
            f"{arg}{_where(name)} must be a numeric array (got {type(value).__name__})"
        ) from exc
    return arr


def _check_finite(arr: np.ndarray, arg: str, name: str | None) -> None:
    if not np.all(np.isfinite(arr)):
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        raise ProblemError(
            f"{arg}{_where(name)} contains {bad} non-finite value(s) (NaN or inf) "
            f"out of {arr.size}; expected all finite"
        )


def _check_matrix(arr: np.ndarray, arg: str, name: str | None, dims: str) -> None:
    if arr.ndim != 2:
        raise ProblemError(
            f"{arg}{_where(name)} must have shape {dims} (got shape {arr.shape}, ndim {arr.ndim})"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ProblemError(
            f"{arg}{_where(name)} is empty: shape {arr.shape}, expected {dims} with both sizes >= 1"
        )


def _check_positive(value: Any, arg: str, *, allow_zero: bool = False) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{arg} must be a real number (got {value!r})") from exc
    ok = np.isfinite(x) and (x >= 0 if allow_zero else x > 0)
    if not ok:
        what = "a finite number >= 0" if allow_zero else "a finite number > 0"
        raise ValueError(f"{arg} must be {what} (got {value!r})")
    return x
