"""scikit-learn's bundled datasets (breast cancer, 8x8 digits), split by :func:`~bnn.data.base.split_tabular`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bnn.data.base import TabularDataset, split_tabular

__all__ = ["load_breast_cancer", "load_digits"]


def load_breast_cancer(
    seed: int = 0,
    *,
    test_fraction: float = 0.2,
    val_fraction: float = 0.1,
    spins: bool = False,
) -> TabularDataset:
    """scikit-learn's Breast Cancer Wisconsin (569 x 30, 2 classes), split and standardised.

    See :func:`split_tabular` for the split and the ``±1`` mapping (sign of the standardised
    value). No file is needed.
    """
    from sklearn.datasets import load_breast_cancer as _load

    bunch = _load()
    return split_tabular(
        bunch.data,
        bunch.target.astype(np.int64),
        name="breast_cancer",
        seed=seed,
        test_fraction=test_fraction,
        val_fraction=val_fraction,
        spins=spins,
    )


def load_digits(
    seed: int = 0,
    classes: Sequence[int] | None = None,
    *,
    test_fraction: float = 0.2,
    val_fraction: float = 0.1,
    spins: bool = False,
) -> TabularDataset:
    """scikit-learn's 8x8 handwritten digits (1797 x 64, 10 classes), split and standardised.

    Args:
        seed: Seed of the splits.
        classes: Keep only these digits, relabelled ``0 .. len(classes) - 1`` in the given
            order (e.g. ``(3, 8)`` for a binary task); ``None`` keeps all ten.
        test_fraction: See :func:`split_tabular`.
        val_fraction: See :func:`split_tabular`.
        spins: ``±1`` inputs as the sign of the standardised pixel values.
    """
    from sklearn.datasets import load_digits as _load

    bunch = _load()
    x, y = bunch.data, bunch.target.astype(np.int64)
    if classes is not None:
        cl = np.asarray(list(classes))
        if (
            cl.ndim != 1
            or cl.size < 2
            or not np.issubdtype(cl.dtype, np.integer)
            or cl.min() < 0
            or cl.max() > 9
            or np.unique(cl).size != cl.size
        ):
            raise ValueError(
                f"classes must be at least two distinct digits in 0..9 (got {classes!r})"
            )
        keep = np.isin(y, cl)
        lut = np.full(10, -1, dtype=np.int64)
        lut[cl] = np.arange(cl.size)
        x, y = x[keep], lut[y[keep]]
    return split_tabular(
        x,
        y,
        name="digits",
        seed=seed,
        test_fraction=test_fraction,
        val_fraction=val_fraction,
        spins=spins,
        info={"classes": None if classes is None else [int(c) for c in classes]},
    )
