"""Small helpers shared by the benchmark scripts (not part of the library).

Every benchmark prints human-readable lines and, as its last line, one JSON object
(:func:`emit`) so results can be compared across commits.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["REPO_ROOT", "default_data_path", "load_libsvm", "timed", "best_time", "emit", "machine"]

REPO_ROOT = Path(__file__).resolve().parent.parent


def default_data_path(name: str) -> Path:
    """``../shared/data/NAME`` relative to the repository root."""
    return (REPO_ROOT / ".." / "shared" / "data" / name).resolve()


def load_libsvm(path: str | os.PathLike, num_features: int) -> tuple[np.ndarray, np.ndarray]:
    """Read a LIBSVM file with 1-based feature indices into dense arrays.

    Returns:
        ``(X, y)`` with ``X`` float64 of shape ``(rows, num_features)`` and ``y`` float64 ``(rows,)``.

    Raises:
        FileNotFoundError: the file does not exist (the message names the path and ``--data``).
        ValueError: a feature index exceeds ``num_features``.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"data file {str(p)!r} not found: pass its path with --data")
    rows, cols, vals, labels = [], [], [], []
    with p.open() as fh:
        for r, line in enumerate(fh):
            parts = line.split()
            if not parts:
                continue
            labels.append(float(parts[0]))
            for item in parts[1:]:
                idx, val = item.split(":")
                rows.append(r)
                cols.append(int(idx) - 1)
                vals.append(float(val))
    cols_a = np.asarray(cols, dtype=np.int64)
    if cols_a.size and cols_a.max() >= num_features:
        raise ValueError(
            f"feature index {int(cols_a.max()) + 1} in {str(p)!r} exceeds num_features={num_features}"
        )
    X = np.zeros((len(labels), num_features))
    X[np.asarray(rows, dtype=np.int64), cols_a] = np.asarray(vals)
    return X, np.asarray(labels)


@contextmanager
def timed() -> Iterator[dict[str, float]]:
    """``with timed() as t: ...`` then ``t["s"]`` holds the elapsed wall time in seconds."""
    out: dict[str, float] = {}
    t0 = time.perf_counter()
    try:
        yield out
    finally:
        out["s"] = time.perf_counter() - t0


def best_time(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Smallest wall time of ``repeats`` calls of ``fn`` and the last result (noisy shared CPUs)."""
    best, res = float("inf"), None
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        res = fn()
        best = min(best, time.perf_counter() - t0)
    return best, res


def machine() -> dict[str, Any]:
    """A short description of where the benchmark ran."""
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }


def emit(record: dict[str, Any]) -> None:
    """Print ``record`` as the one-line JSON object that ends every benchmark's output."""
    print(json.dumps(record, sort_keys=False, default=float))
