"""Offline datasets for the binary-network experiments.

Every loader returns either a :class:`TabularDataset` (train/val/test tensors) or a
:class:`GraphDataset` (one graph with node masks). Nothing is downloaded: the a1a and
Planetoid files are read from a data folder (``../shared/data`` beside the repository by
default, or ``$QSGD_DATA_ROOT``, or an explicit ``root``), and breast-cancer, digits and the
Karate club come from scikit-learn and networkx.

Spin inputs. Binary networks expect inputs in ``{-1, +1}``. With ``spins=True``:

* binary ``{0, 1}`` features (a1a, Planetoid bag-of-words, one-hot) become ``2 x - 1``;
* real features (breast-cancer, digits) are first standardised with the *training*
  statistics and then replaced by their sign, with ``sign(0) = +1``.

Labels are always class indices (``int64``, ``0 .. num_classes - 1``); a1a's ``-1/+1``
becomes ``0/1``.

Example:
    >>> ds = get_dataset("breast_cancer", seed=0, spins=True)
    >>> ds.x_train.shape[1], ds.num_classes
    (30, 2)
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from numbers import Real
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from qsgd.errors import ConfigError

__all__ = [
    "A1A_NUM_FEATURES",
    "A1A_PAPER_FEATURES",
    "A1A_REFERENCE_SEL3_COLUMNS",
    "TabularDataset",
    "GraphDataset",
    "default_data_root",
    "load_libsvm",
    "load_a1a",
    "load_planetoid",
    "load_karate",
    "load_breast_cancer",
    "load_digits",
    "split_tabular",
    "majority_rate",
    "get_dataset",
    "available_datasets",
]

#: Number of LIBSVM features of a1a/a1a.t (indices 1..123 in the file).
A1A_NUM_FEATURES = 123

#: The three columns the reference QP-SBGD code selects with ``sel=3`` **in its own
#: convention**: its ``data_to_matrix`` builds ``x[i, j] = 1 if j in row`` for ``j = 0..122``
#: with LIBSVM's 1-based keys, so its column ``j`` is LIBSVM feature ``j`` (its column 0 is
#: always zero and feature 123 is dropped).
A1A_REFERENCE_SEL3_COLUMNS: tuple[int, ...] = (6, 22, 36)

#: The same three features in *our* convention, where column ``j`` (0-based) is LIBSVM
#: feature ``j + 1``: pass ``features=A1A_PAPER_FEATURES`` to :func:`load_a1a` to get the
#: inputs of the paper's 2-layer a1a experiment.
A1A_PAPER_FEATURES: tuple[int, ...] = tuple(c - 1 for c in A1A_REFERENCE_SEL3_COLUMNS)

_DATA_HINT = (
    "a1a/a1a.t are LIBSVM binary datasets and cora.npz/citeseer.npz Planetoid graphs, expected "
    "e.g. in ../shared/data/ beside the repository (see its MANIFEST.md); pass root=... or set "
    "QSGD_DATA_ROOT"
)


def default_data_root() -> Path:
    """Folder the file-based loaders read when no ``root`` is given.

    ``$QSGD_DATA_ROOT`` if set, else ``<repository>/../shared/data``.
    """
    env = os.environ.get("QSGD_DATA_ROOT")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"


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


# --------------------------------------------------------------------------- a1a


def load_libsvm(
    path: str | os.PathLike[str], n_features: int = 123
) -> tuple[np.ndarray, np.ndarray]:
    """Read a LIBSVM text file (``<label> <idx>:<val> ...``, 1-based indices) into dense arrays.

    Column ``j`` of the result (0-based) holds LIBSVM feature ``j + 1``. Parsing is
    vectorised: all ``idx:val`` tokens of the file are converted in one numpy call.

    Args:
        path: The file, e.g. ``../shared/data/a1a``.
        n_features: Number of columns; an index above it is an error.

    Returns:
        ``(x, y)``: ``float32`` features and ``int64`` labels as written in the file
        (``-1``/``+1`` for a1a).

    Raises:
        FileNotFoundError: ``path`` does not exist (the message says where a1a is expected).
        ValueError: malformed lines, non-integer labels or indices out of ``1..n_features``.

    Shape:
        x: ``(n, n_features)``; y: ``(n,)``.
    """
    if isinstance(n_features, bool) or not isinstance(n_features, int) or n_features < 1:
        raise ValueError(f"n_features must be a positive int (got {n_features!r})")
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"LIBSVM file not found: '{p}'. {_DATA_HINT}")
    lines = [ln for ln in p.read_text().splitlines() if ln.strip()]
    if not lines:
        raise ValueError(f"LIBSVM file '{p}' holds no samples")
    parts = [ln.split(None, 1) for ln in lines]
    tails = [pt[1] if len(pt) > 1 else "" for pt in parts]
    try:
        labels = np.array([pt[0] for pt in parts], dtype=np.float64)
        counts = np.array([t.count(":") for t in tails], dtype=np.int64)
        flat = np.array(" ".join(tails).replace(":", " ").split(), dtype=np.float64)
    except ValueError as exc:
        raise ValueError(f"LIBSVM file '{p}' is malformed: {exc}") from exc
    if flat.size != 2 * counts.sum():
        raise ValueError(
            f"LIBSVM file '{p}' is malformed: expected 'index:value' tokens after each label"
        )
    if not np.all(labels == np.round(labels)):
        raise ValueError(f"LIBSVM file '{p}' must hold integer class labels")
    idx, vals = flat[0::2], flat[1::2]
    if idx.size and (not np.all(idx == np.round(idx)) or idx.min() < 1 or idx.max() > n_features):
        raise ValueError(
            f"LIBSVM file '{p}' has feature indices in [{idx.min():g}, {idx.max():g}]; "
            f"expected integers in [1, n_features={n_features}]"
        )
    x = np.zeros((len(lines), n_features), dtype=np.float32)
    rows = np.repeat(np.arange(len(lines)), counts)
    x[rows, idx.astype(np.int64) - 1] = vals
    return x, labels.astype(np.int64)


def _feature_columns(features: str | Sequence[int], n: int) -> np.ndarray:
    if isinstance(features, str):
        if features != "all":
            raise ValueError(
                f"features must be 'all' or a list of column indices (got {features!r})"
            )
        return np.arange(n)
    cols = np.asarray(list(features))
    if (
        cols.ndim != 1
        or cols.size == 0
        or not np.issubdtype(cols.dtype, np.integer)
        or cols.min() < 0
        or cols.max() >= n
        or np.unique(cols).size != cols.size
    ):
        raise ValueError(
            f"features must be 'all' or distinct column indices in [0, {n}) (got {features!r})"
        )
    return cols.astype(np.int64)


def load_a1a(
    root: str | os.PathLike[str] | None = None,
    *,
    features: Literal["all"] | Sequence[int] = "all",
    val_fraction: float = 0.1,
    seed: int = 0,
    spins: bool = True,
) -> TabularDataset:
    """The LIBSVM Adult data: ``a1a`` (1605 rows) for training, ``a1a.t`` (30956) for testing.

    A seeded, stratified validation split of ``val_fraction`` is carved from ``a1a``; the test
    set is the whole of ``a1a.t``. Labels ``-1/+1`` become classes ``0/1``. Column ``j``
    (0-based) is LIBSVM feature ``j + 1``; the reference code's ``sel=3`` columns
    (6, 22, 36 in its 1-based convention) are :data:`A1A_PAPER_FEATURES` = ``(5, 21, 35)``.

    Args:
        root: Folder holding ``a1a`` and ``a1a.t`` (default :func:`default_data_root`).
        features: ``"all"`` (123 columns) or a list of column indices.
        val_fraction: Fraction of ``a1a`` held out for validation, in ``[0, 1)``.
        seed: Seed of the validation split.
        spins: Map the binary features to ``±1`` with ``2 x - 1``; else keep ``{0, 1}``.

    Raises:
        FileNotFoundError: a file is missing (the message names the path).

    Shape:
        x_*: ``(n, len(features))``; y_*: ``(n,)``.
    """
    base = Path(root) if root is not None else default_data_root()
    seed = _check_seed(seed)
    val_fraction = _check_fraction("val_fraction", val_fraction, allow_zero=True)
    cols = _feature_columns(features, A1A_NUM_FEATURES)
    x_tr, y_tr = load_libsvm(base / "a1a", A1A_NUM_FEATURES)
    x_te, y_te = load_libsvm(base / "a1a.t", A1A_NUM_FEATURES)
    y_tr, y_te = (y_tr > 0).astype(np.int64), (y_te > 0).astype(np.int64)
    x_tr, x_te = x_tr[:, cols], x_te[:, cols]
    if spins:
        x_tr, x_te = _to_spins_binary(x_tr), _to_spins_binary(x_te)
    train, val = _stratified_split(y_tr, val_fraction, seed, "val_fraction")
    xt, yt, xv, yv, xs, ys = _tensors(x_tr[train], y_tr[train], x_tr[val], y_tr[val], x_te, y_te)
    return TabularDataset(
        name="a1a",
        x_train=xt,
        y_train=yt,
        x_val=xv,
        y_val=yv,
        x_test=xs,
        y_test=ys,
        num_features=int(cols.size),
        num_classes=2,
        info={
            "root": str(base),
            "features": cols.tolist(),
            "val_fraction": val_fraction,
            "seed": seed,
            "spins": bool(spins),
        },
    )


# --------------------------------------------------------------------------- graphs

_PLANETOID = ("cora", "citeseer")


def load_planetoid(
    name_or_path: str | os.PathLike[str],
    root: str | os.PathLike[str] | None = None,
    *,
    sparse: bool = False,
    spins: bool = False,
) -> GraphDataset:
    """Cora or CiteSeer with the Planetoid public split, from the ``.npz`` files of MANIFEST.md.

    Args:
        name_or_path: ``"cora"``, ``"citeseer"`` (read ``root/<name>.npz``) or a path to an
            ``.npz`` with the same schema.
        root: Data folder for a name (default :func:`default_data_root`).
        sparse: Return ``x`` as a ``torch.sparse_coo`` tensor (binary bag-of-words).
        spins: Map the binary features to ``±1`` (``2 x - 1``, dense only).

    Raises:
        FileNotFoundError: the file is missing (the message names the path).
        ConfigError: an unknown name, ``"pubmed"`` (not available offline) or ``sparse`` with
            ``spins``.

    Shape:
        x: ``(N, D)``; y and masks: ``(N,)``; edge_index: ``(2, E)``.
    """
    text = str(name_or_path)
    if text.lower() == "pubmed":
        raise ConfigError(_PUBMED_MSG)
    if sparse and spins:
        raise ConfigError("sparse=True and spins=True cannot be combined (±1 features are dense)")
    if text.lower() in _PLANETOID:
        name = text.lower()
        path = (Path(root) if root is not None else default_data_root()) / f"{name}.npz"
    elif text.endswith(".npz"):
        path = Path(text)
        name = path.stem
    else:
        raise ConfigError(
            f"name_or_path must be one of {list(_PLANETOID)} or a path to an .npz (got {text!r})"
        )
    if not path.is_file():
        raise FileNotFoundError(f"Planetoid file not found: '{path}'. {_DATA_HINT}")
    with np.load(path, allow_pickle=False) as z:
        n, d = (int(v) for v in z["x_shape"])
        indptr = z["x_indptr"].astype(np.int64)
        cols = z["x_indices"].astype(np.int64)
        vals = z["x_data"].astype(np.float32)
        labels = z["labels"].astype(np.int64)
        label_valid = z["label_valid"].astype(bool)
        edge_index = z["edge_index"].astype(np.int64)
        masks = [z[k].astype(bool) for k in ("train_mask", "val_mask", "test_mask")]
        meta = json.loads(str(z["meta"])) if "meta" in z.files else {}
    if indptr.shape != (n + 1,) or cols.shape != vals.shape or indptr[-1] != cols.size:
        raise ValueError(f"Planetoid file '{path}' has an inconsistent CSR feature matrix")
    rows = np.repeat(np.arange(n), np.diff(indptr))
    if sparse:
        x = torch.sparse_coo_tensor(
            torch.as_tensor(np.stack([rows, cols])),
            torch.as_tensor(vals),
            (n, d),
            check_invariants=True,
        ).coalesce()
    else:
        dense = np.zeros((n, d), dtype=np.float32)
        dense[rows, cols] = vals
        x = torch.as_tensor(_to_spins_binary(dense) if spins else dense)
    return GraphDataset(
        name=name,
        x=x,
        y=torch.as_tensor(labels),
        edge_index=torch.as_tensor(edge_index),
        train_mask=torch.as_tensor(masks[0]),
        val_mask=torch.as_tensor(masks[1]),
        test_mask=torch.as_tensor(masks[2]),
        num_classes=int(labels.max()) + 1,
        label_valid=torch.as_tensor(label_valid),
        info={"path": str(path), "spins": bool(spins), "sparse": bool(sparse), "meta": meta},
    )


def load_karate(
    seed: int = 0,
    *,
    features: Literal["identity", "degree"] = "identity",
    extra_per_class: int = 0,
    val_per_class: int = 2,
    spins: bool = False,
) -> GraphDataset:
    """Zachary's Karate club (networkx) as a semi-supervised node classification task.

    Labels are the ``club`` attribute: ``"Mr. Hi"`` is class 0, ``"Officer"`` class 1. The
    edges are unweighted (networkx's ``weight`` attribute is ignored). Split: node 0 (Mr. Hi)
    and node 33 (the Officer) are always labelled; ``extra_per_class`` further seeded nodes
    per class join the training set, ``val_per_class`` seeded nodes per class form the
    validation set, and all other nodes are the test set.

    Args:
        seed: Seed of the extra training and validation nodes.
        features: ``"identity"`` (one-hot node id, 34 features) or ``"degree"`` (one-hot of
            the node degree over the distinct degrees present).
        extra_per_class: Extra labelled training nodes per class (``>= 0``).
        val_per_class: Validation nodes per class (``>= 0``).
        spins: Map the one-hot features to ``±1`` (``2 x - 1``).

    Shape:
        x: ``(34, D)``; y and masks: ``(34,)``; edge_index: ``(2, 156)``.
    """
    import networkx as nx

    seed = _check_seed(seed)
    for nm, v in (("extra_per_class", extra_per_class), ("val_per_class", val_per_class)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"{nm} must be a non-negative int (got {v!r})")
    if features not in ("identity", "degree"):
        raise ValueError(f"features must be 'identity' or 'degree' (got {features!r})")
    g = nx.karate_club_graph()
    n = g.number_of_nodes()
    clubs = nx.get_node_attributes(g, "club")
    y = np.array([0 if clubs[i] == "Mr. Hi" else 1 for i in range(n)], dtype=np.int64)
    und = np.array(list(g.edges()), dtype=np.int64).T
    both = np.concatenate([und, und[::-1]], axis=1)
    both = both[:, both[0] != both[1]]
    order = np.lexsort((both[1], both[0]))
    edge_index = both[:, order]
    if features == "identity":
        x = np.eye(n, dtype=np.float32)
    else:
        deg = np.bincount(edge_index[0], minlength=n)
        levels, inv = np.unique(deg, return_inverse=True)
        x = np.eye(levels.size, dtype=np.float32)[inv]
    if spins:
        x = _to_spins_binary(x)
    rng = np.random.default_rng(seed)
    train = np.zeros(n, dtype=bool)
    train[[0, n - 1]] = True
    val = np.zeros(n, dtype=bool)
    for c in (0, 1):
        cand = rng.permutation(np.flatnonzero((y == c) & ~train))
        need = extra_per_class + val_per_class
        if need > cand.size:
            raise ValueError(
                f"extra_per_class + val_per_class must be at most {cand.size} "
                f"(got {extra_per_class} + {val_per_class})"
            )
        train[cand[:extra_per_class]] = True
        val[cand[extra_per_class:need]] = True
    test = ~(train | val)
    return GraphDataset(
        name="karate",
        x=torch.as_tensor(x),
        y=torch.as_tensor(y),
        edge_index=torch.as_tensor(edge_index),
        train_mask=torch.as_tensor(train),
        val_mask=torch.as_tensor(val),
        test_mask=torch.as_tensor(test),
        num_classes=2,
        info={
            "seed": seed,
            "features": features,
            "extra_per_class": extra_per_class,
            "val_per_class": val_per_class,
            "spins": bool(spins),
        },
    )


# --------------------------------------------------------------------------- scikit-learn


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


# --------------------------------------------------------------------------- registry

_PUBMED_MSG = (
    "dataset 'pubmed' is not available offline: the PubMed feature file ind.pubmed.allx "
    "(about 7.5 MB) is missing from every stored snapshot (files of 4 MiB or more are dropped), "
    "see 'Not included' in ../shared/data/MANIFEST.md; use 'cora' or 'citeseer'"
)

_REGISTRY: dict[str, Callable[..., TabularDataset | GraphDataset]] = {
    "a1a": load_a1a,
    "cora": lambda **kw: load_planetoid("cora", **kw),
    "citeseer": lambda **kw: load_planetoid("citeseer", **kw),
    "karate": load_karate,
    "breast_cancer": load_breast_cancer,
    "digits": load_digits,
}


def available_datasets() -> list[str]:
    """Names accepted by :func:`get_dataset`."""
    return sorted(_REGISTRY)


def get_dataset(name: str, **kwargs: Any) -> TabularDataset | GraphDataset:
    """Load a dataset by name; ``kwargs`` go to its loader.

    Example:
        >>> get_dataset("karate", seed=1).num_nodes
        34

    Raises:
        ConfigError: unknown name (lists the known ones) or ``"pubmed"`` (says why).
    """
    key = str(name).lower()
    if key == "pubmed":
        raise ConfigError(_PUBMED_MSG)
    if key not in _REGISTRY:
        raise ConfigError(f"unknown dataset {name!r}; known datasets: {available_datasets()}")
    return _REGISTRY[key](**kwargs)
