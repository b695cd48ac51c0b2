"""The two dataset containers and the checks and splits every loader shares.

:class:`TabularDataset` (train/val/test tensors) and :class:`GraphDataset` (one graph with node
masks) validate their shapes and refuse NaN/inf when built; :func:`split_tabular` is the seeded
stratified split (standardised on train, optionally mapped to ``±1``) used by the scikit-learn
loaders.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from numbers import Real
from typing import Any

import numpy as np
import torch

from qsgd.errors import DataError

__all__ = ["TabularDataset", "GraphDataset", "majority_rate", "split_tabular"]


def _first_nonfinite(x: np.ndarray | torch.Tensor) -> tuple[int, float] | None:
    """``(row, value)`` of the first NaN/inf of a dense or sparse 1-D/2-D array, else ``None``.

    Vectorised: one ``isfinite`` pass; the row is only looked up when something is wrong.
    """
    if isinstance(x, torch.Tensor):
        if x.is_sparse:
            vals = x._values()
            bad = ~torch.isfinite(vals)
            if not bool(bad.any()):
                return None
            k = int(torch.nonzero(bad)[0, 0])
            return int(x._indices()[0, k]), float(vals[k])
        if not (x.is_floating_point() or x.is_complex()):
            return None
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.inexact):
        return None
    bad = ~np.isfinite(x)
    if not bad.any():
        return None
    where = np.argwhere(bad)[0]
    return int(where[0]), float(x[tuple(where)])


def _check_finite(what: str, x: np.ndarray | torch.Tensor) -> None:
    """Raise :class:`DataError` naming ``what`` and the row if ``x`` holds a NaN or an inf."""
    hit = _first_nonfinite(x)
    if hit is not None:
        row, value = hit
        raise DataError(f"{what} row {row} must hold finite numbers, not NaN or inf (got {value})")


def majority_rate(y: torch.Tensor | np.ndarray | Sequence[int]) -> float:
    """Fraction of the most frequent label in ``y`` (the accuracy of a constant classifier).

    Shape:
        y: ``(n,)`` integer labels, ``n >= 1``.

    Example:
        >>> majority_rate([0, 1, 1, 1])
        0.75
    """
    arr = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"y must be a non-empty 1-D array of labels (got shape {arr.shape})")
    _, counts = np.unique(arr, return_counts=True)
    return float(counts.max() / arr.size)


def _check_xy(name: str, x: torch.Tensor, y: torch.Tensor) -> None:
    if x.ndim != 2:
        raise ValueError(f"x_{name} must have shape (n, num_features) (got shape {tuple(x.shape)})")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(
            f"y_{name} must have shape ({x.shape[0]},) to match x_{name} of shape "
            f"{tuple(x.shape)} (got shape {tuple(y.shape)})"
        )


@dataclass
class TabularDataset:
    """A train/validation/test split of a feature matrix with class labels.

    Attributes:
        name: Dataset name.
        x_train, x_val, x_test: ``float32`` features (``±1`` when loaded with ``spins=True``).
        y_train, y_val, y_test: ``int64`` class indices.
        num_features: Number of input columns.
        num_classes: Number of classes.
        info: Provenance (seed, fractions, feature columns, preprocessing).

    Shape:
        x_*: ``(n_split, num_features)``; y_*: ``(n_split,)``. The validation split may be
        empty (``n_val == 0``).
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_features: int
    num_classes: int
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for split in ("train", "val", "test"):
            _check_xy(split, getattr(self, f"x_{split}"), getattr(self, f"y_{split}"))
            x = getattr(self, f"x_{split}")
            if x.shape[1] != self.num_features:
                raise ValueError(
                    f"x_{split} must have num_features={self.num_features} columns "
                    f"(got shape {tuple(x.shape)})"
                )
        if self.x_train.shape[0] == 0:
            raise ValueError("x_train must have at least one row (got 0)")
        for split in ("train", "val", "test"):
            _check_finite(f"dataset {self.name!r}: x_{split}", getattr(self, f"x_{split}"))

    @property
    def majority_rate(self) -> float:
        """Test accuracy of always predicting the most frequent *training* class."""
        labels, counts = torch.unique(self.y_train, return_counts=True)
        top = labels[torch.argmax(counts)]
        if self.y_test.numel() == 0:
            return float("nan")
        return float((self.y_test == top).float().mean())

    def __repr__(self) -> str:
        return (
            f"TabularDataset(name={self.name!r}, train={self.x_train.shape[0]}, "
            f"val={self.x_val.shape[0]}, test={self.x_test.shape[0]}, "
            f"num_features={self.num_features}, num_classes={self.num_classes})"
        )


@dataclass
class GraphDataset:
    """One graph with node features, node labels and node masks (transductive split).

    Attributes:
        name: Dataset name.
        x: Node features, ``float32`` dense or a ``torch.sparse_coo`` tensor.
        y: ``int64`` node labels.
        edge_index: ``int64`` edges, both directions of every undirected edge, no self loops.
        train_mask, val_mask, test_mask: ``bool`` node masks (disjoint).
        num_classes: Number of classes.
        label_valid: ``bool``, False where a node has no real label (CiteSeer's padded nodes).
        info: Provenance.

    Shape:
        x: ``(N, D)``; y, masks, label_valid: ``(N,)``; edge_index: ``(2, E)``.
    """

    name: str
    x: torch.Tensor
    y: torch.Tensor
    edge_index: torch.Tensor
    train_mask: torch.Tensor
    val_mask: torch.Tensor
    test_mask: torch.Tensor
    num_classes: int
    label_valid: torch.Tensor | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.x.ndim != 2:
            raise ValueError(f"x must have shape (N, D) (got shape {tuple(self.x.shape)})")
        n = self.x.shape[0]
        if self.y.ndim != 1 or self.y.shape[0] != n:
            raise ValueError(
                f"y must have shape ({n},) to match x of shape {tuple(self.x.shape)} "
                f"(got shape {tuple(self.y.shape)})"
            )
        _check_finite(f"dataset {self.name!r}: x (node features)", self.x)
        if self.label_valid is None:
            self.label_valid = torch.ones(n, dtype=torch.bool)
        for mname in ("train_mask", "val_mask", "test_mask", "label_valid"):
            m = getattr(self, mname)
            if m.dtype != torch.bool or m.shape != (n,):
                raise ValueError(
                    f"{mname} must be a bool tensor of shape ({n},) "
                    f"(got {m.dtype} of shape {tuple(m.shape)})"
                )
        ei = self.edge_index
        if ei.ndim != 2 or ei.shape[0] != 2:
            raise ValueError(f"edge_index must have shape (2, E) (got shape {tuple(ei.shape)})")
        if ei.numel() and (int(ei.min()) < 0 or int(ei.max()) >= n):
            raise ValueError(
                f"edge_index entries must lie in [0, {n}) "
                f"(got range [{int(ei.min())}, {int(ei.max())}])"
            )

    @property
    def num_nodes(self) -> int:
        """Number of nodes ``N``."""
        return int(self.x.shape[0])

    @property
    def num_features(self) -> int:
        """Number of node features ``D``."""
        return int(self.x.shape[1])

    @property
    def num_edges(self) -> int:
        """Number of directed edges ``E`` (twice the undirected count)."""
        return int(self.edge_index.shape[1])

    @property
    def majority_rate(self) -> float:
        """Accuracy on the test nodes of always predicting the most frequent training class."""
        labels, counts = torch.unique(self.y[self.train_mask], return_counts=True)
        top = labels[torch.argmax(counts)]
        return float((self.y[self.test_mask] == top).float().mean())

    def __repr__(self) -> str:
        return (
            f"GraphDataset(name={self.name!r}, num_nodes={self.num_nodes}, "
            f"num_features={self.num_features}, num_edges={self.num_edges}, "
            f"num_classes={self.num_classes}, train={int(self.train_mask.sum())}, "
            f"val={int(self.val_mask.sum())}, test={int(self.test_mask.sum())})"
        )


# --------------------------------------------------------------------------- helpers


def _check_fraction(name: str, value: float, *, allow_zero: bool) -> float:
    ok = isinstance(value, Real) and not isinstance(value, bool)
    lo_ok = ok and (value >= 0 if allow_zero else value > 0)
    if not (lo_ok and value < 1):
        rng = "[0, 1)" if allow_zero else "(0, 1)"
        raise ValueError(f"{name} must be a float in {rng} (got {value!r})")
    return float(value)


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int (got {seed!r})")
    return int(seed)


def _stratified_split(
    y: np.ndarray, fraction: float, seed: int, name: str
) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(keep, held_out)`` with ``held_out`` a seeded stratified ``fraction`` of rows."""
    idx = np.arange(y.shape[0])
    if fraction == 0:
        return idx, idx[:0]
    from sklearn.model_selection import train_test_split

    try:
        keep, held = train_test_split(idx, test_size=fraction, random_state=seed, stratify=y)
    except ValueError as exc:  # too few rows of some class for the requested fraction
        raise ValueError(
            f"{name}={fraction!r} cannot be split stratified from {y.shape[0]} rows: {exc}"
        ) from exc
    return np.sort(keep), np.sort(held)


def _to_spins_binary(x: np.ndarray) -> np.ndarray:
    return (2.0 * x - 1.0).astype(np.float32)


def _sign_spins(x: np.ndarray) -> np.ndarray:
    return np.where(x >= 0, 1.0, -1.0).astype(np.float32)


def _tensors(*arrays: np.ndarray) -> list[torch.Tensor]:
    out = []
    for a in arrays:
        dtype = torch.int64 if np.issubdtype(a.dtype, np.integer) else torch.float32
        out.append(torch.as_tensor(np.ascontiguousarray(a), dtype=dtype))
    return out


def split_tabular(
    x: np.ndarray,
    y: np.ndarray,
    *,
    name: str = "tabular",
    seed: int = 0,
    test_fraction: float = 0.2,
    val_fraction: float = 0.1,
    standardize: bool = True,
    spins: bool = False,
    info: dict[str, Any] | None = None,
) -> TabularDataset:
    """Seeded stratified train/val/test split of real features, standardised on train.

    The test split is ``test_fraction`` of all rows; the validation split is ``val_fraction``
    of the remaining (training) rows. Standardisation uses the training mean and standard
    deviation (columns with zero deviation are only centred). With ``spins=True`` every
    value is replaced by the sign of its standardised value (``sign(0) = +1``).

    Args:
        x: Features.
        y: Integer class labels ``0 .. C-1``.
        name: Name stored in the dataset.
        seed: Seed of both splits.
        test_fraction: Fraction of rows held out for testing, in ``(0, 1)``.
        val_fraction: Fraction of the training rows held out for validation, in ``[0, 1)``.
        standardize: Standardise with training statistics.
        spins: Map to ``±1`` (implies standardisation first).
        info: Extra provenance merged into ``TabularDataset.info``.

    Shape:
        x: ``(n, d)``; y: ``(n,)``.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y)
    if x.ndim != 2:
        raise ValueError(f"x must have shape (n, num_features) (got shape {x.shape})")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(
            f"y must have shape ({x.shape[0]},) to match x of shape {x.shape} (got shape {y.shape})"
        )
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"y must hold integer class labels (got dtype {y.dtype})")
    _check_finite(f"dataset {name!r}: x", x)
    seed = _check_seed(seed)
    test_fraction = _check_fraction("test_fraction", test_fraction, allow_zero=False)
    val_fraction = _check_fraction("val_fraction", val_fraction, allow_zero=True)
    rest, test = _stratified_split(y, test_fraction, seed, "test_fraction")
    tr_local, va_local = _stratified_split(y[rest], val_fraction, seed + 1, "val_fraction")
    train, val = rest[tr_local], rest[va_local]
    if standardize or spins:
        mean = x[train].mean(axis=0)
        std = x[train].std(axis=0)
        std = np.where(std > 0, std, 1.0)
        x = (x - mean) / std
    x = _sign_spins(x) if spins else x.astype(np.float32)
    y = y.astype(np.int64)
    xt, yt, xv, yv, xs, ys = _tensors(x[train], y[train], x[val], y[val], x[test], y[test])
    meta = {
        "seed": seed,
        "test_fraction": test_fraction,
        "val_fraction": val_fraction,
        "standardize": bool(standardize or spins),
        "spins": bool(spins),
    }
    meta.update(info or {})
    return TabularDataset(
        name=name,
        x_train=xt,
        y_train=yt,
        x_val=xv,
        y_val=yv,
        x_test=xs,
        y_test=ys,
        num_features=int(x.shape[1]),
        num_classes=int(y.max()) + 1,
        info=meta,
    )
