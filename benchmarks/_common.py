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

__all__ = ["REPO_ROOT", "load_libsvm", "timed", "best_time", "emit", "machine"]

REPO_ROOT = Path(__file__).resolve().parent.parent


def load_libsvm(path: str | os.PathLike | None, num_features: int) -> tuple[np.ndarray, np.ndarray]:
    """Read a LIBSVM file with 1-based feature indices into dense arrays.

    Args:
        path: The file; ``None`` reads the ``a1a`` shipped in the package (``bnn/datasets/``,
            sha256-checked), or ``$QSGD_DATA_ROOT/a1a`` when that is set.
        num_features: Number of columns.

    Returns:
        ``(X, y)`` with ``X`` float64 of shape ``(rows, num_features)`` and ``y`` float64 ``(rows,)``.

    Raises:
        FileNotFoundError: the file does not exist (the message names the path).
        qsgd.errors.DataError: a malformed line or a NaN/inf value (file, line and token named).
    """
    from bnn.data import load_libsvm as _load_file
    from bnn.data import parse_libsvm, read_dataset_file

    if path is None:
        source, data = read_dataset_file("a1a")
        X, y = parse_libsvm(data, num_features, source=source)
    else:
        X, y = _load_file(path, num_features)
    return X.astype(np.float64), y.astype(np.float64)


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
