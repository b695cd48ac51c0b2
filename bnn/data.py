"""Offline datasets for the binary-network experiments.

Every loader returns either a :class:`TabularDataset` (train/val/test tensors) or a
:class:`GraphDataset` (one graph with node masks). Nothing is downloaded. The a1a and Planetoid
files ship inside the package (``bnn/datasets/``, provenance and licences in its
``PROVENANCE.md``) and are read with :mod:`importlib.resources`; their sha256 is checked on
every load. An explicit ``root`` (``data.root`` in a run config) or ``$QSGD_DATA_ROOT`` points
the loaders at your own copies instead, read as they are. Breast-cancer, digits and the Karate
club come from scikit-learn and networkx.

Bad data is refused when it is loaded, whatever trains on it afterwards: a malformed LIBSVM
line, a NaN or infinite value in a file or an array, an inconsistent ``.npz`` raise
:class:`qsgd.errors.DataError` naming the file (or dataset), the line or row and the token or
value.

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

import gzip
import hashlib
import io
import json
import os
import re
import warnings
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from numbers import Real
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from qsgd.errors import ConfigError, DataError

__all__ = [
    "A1A_NUM_FEATURES",
    "A1A_PAPER_FEATURES",
    "A1A_REFERENCE_SEL3_COLUMNS",
    "TabularDataset",
    "GraphDataset",
    "SHIPPED_DATASETS",
    "default_data_root",
    "read_dataset_file",
    "parse_libsvm",
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

#: The dataset files shipped as package data in ``bnn/datasets/``: the file name the loaders
#: ask for -> (file in the package, sha256 of its *uncompressed* bytes). ``.gz`` files are
#: decompressed in memory; the hash is checked on every load. Origins, licences, citations:
#: ``bnn/datasets/PROVENANCE.md``.
SHIPPED_DATASETS: dict[str, tuple[str, str]] = {
    "a1a": ("a1a.gz", "eb54c45f1bdb51286f803dd092eb8202b44637a858fc6c4e533a2d64a0d94b4e"),
    "a1a.t": ("a1a.t.gz", "0212d0c4a3996fe6fb6a0ab54033d9f4fa4b60369b6e3bb141821d9ffc40c04d"),
    "cora.npz": ("cora.npz", "6414685312ed18c1fabc9b08acd28d1e52a88190916f53a24ed6a4a11908bf70"),
    "citeseer.npz": (
        "citeseer.npz",
        "111877eb93866f465d0ebc5ef2ddbcc7414cee22605fe0b215b15da49ce2968e",
    ),
}

_PACKAGE_DATA_DIR = "datasets"

_DATA_HINT = (
    "a1a/a1a.t (LIBSVM) and cora.npz/citeseer.npz (Planetoid) ship inside the package "
    "(bnn/datasets/); this folder was chosen with root=... (data.root in a run config) or "
    "$QSGD_DATA_ROOT: put your copy there, or unset both to use the shipped files"
)


def default_data_root() -> Path | None:
    """Folder the file-based loaders read when no ``root`` is given.

    ``$QSGD_DATA_ROOT`` if set and not empty; else ``None``, meaning the copies shipped in the
    package (``bnn/datasets/``).
    """
    env = os.environ.get("QSGD_DATA_ROOT")
    return Path(env) if env else None


def read_dataset_file(
    filename: str, root: str | os.PathLike[str] | None = None
) -> tuple[str, bytes]:
    """The uncompressed bytes of one dataset file, from ``root``, ``$QSGD_DATA_ROOT`` or the package.

    Args:
        filename: ``"a1a"``, ``"a1a.t"``, ``"cora.npz"`` or ``"citeseer.npz"`` (the keys of
            :data:`SHIPPED_DATASETS`); under a ``root`` any file name.
        root: Folder holding your own copy, read as it is (no hash check; the loaders still
            validate the contents). ``None``: ``$QSGD_DATA_ROOT`` if set, else the copy shipped
            in ``bnn/datasets/``, decompressed and checked against its sha256.

    Returns:
        ``(source, data)``: where the bytes were read (a path, for messages) and the bytes.

    Raises:
        FileNotFoundError: the file is not in the folder (the message names the path), or the
            installed package lacks its shipped copy.
        DataError: a shipped copy is not valid gzip or its sha256 differs (the message names
            the file, the expected and the computed hash).
        ConfigError: no folder is chosen and ``filename`` is not a shipped file.

    Example:
        >>> source, data = read_dataset_file("a1a")
        >>> data.split(b"\\n", 1)[0][:8]
        b'-1 3:1 1'
    """
    base = Path(root) if root is not None else default_data_root()
    if base is not None:
        path = base / filename
        if not path.is_file():
            raise FileNotFoundError(f"dataset file not found: '{path}'. {_DATA_HINT}")
        return str(path), path.read_bytes()
    if filename not in SHIPPED_DATASETS:
        raise ConfigError(
            f"filename must be one of the shipped dataset files {sorted(SHIPPED_DATASETS)} "
            f"when no root is given (got {filename!r})"
        )
    packaged, expected = SHIPPED_DATASETS[filename]
    res = resources.files("bnn").joinpath(_PACKAGE_DATA_DIR, packaged)
    source = str(res)
    try:
        raw = res.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        raise FileNotFoundError(
            f"shipped dataset file missing: '{source}' is not in the installed package; "
            f"reinstall qsgd, or point data.root / $QSGD_DATA_ROOT at a folder holding {filename}"
        ) from None
    if packaged.endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(
                f"shipped dataset file '{source}' must be gzip data ({exc}); reinstall qsgd"
            ) from None
    got = hashlib.sha256(raw).hexdigest()
    if got != expected:
        raise DataError(
            f"shipped dataset file '{source}' is corrupt: the sha256 of its uncompressed bytes "
            f"must be {expected} (got {got}); reinstall qsgd, or point data.root / "
            "$QSGD_DATA_ROOT at a good copy"
        )
    return source, raw


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


# --------------------------------------------------------------------------- a1a


#: A colon followed by a second colon in the same token, by whitespace or by the end.
_COLON_BEFORE_SPACE = re.compile(r":(?:[^\s:]*:|\s|$)")
#: A colon right after whitespace (an empty index).
_SPACE_BEFORE_COLON = re.compile(r"\s:")


def _parse_numbers(text: str) -> np.ndarray | None:
    """Whitespace-separated numbers of ``text`` as float64 in one C pass, or ``None`` if any is not one."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        try:
            return np.fromstring(text, dtype=np.float64, sep=" ")
        except (ValueError, DeprecationWarning):
            return None


def _number(token: str) -> float | None:
    out = _parse_numbers(token) if token and not token.isspace() else None
    return float(out[0]) if out is not None and out.size == 1 else None


def _libsvm_first_error(
    source: str, numbered: Sequence[tuple[int, str]], n_features: int
) -> DataError | None:
    """The error of the first bad line, token by token (only run once a file is known bad)."""

    def bad(lineno: int, what: str, token: str) -> DataError:
        return DataError(f"LIBSVM file '{source}', line {lineno}: {what} (got token {token!r})")

    for lineno, line in numbered:
        label, *tokens = line.split()
        if ":" in label:
            return bad(
                lineno, "the class label is missing: a line must start with one such as +1", label
            )
        lab = _number(label)
        if lab is None or not np.isfinite(lab) or lab != round(lab):
            return bad(lineno, "the class label must be an integer such as +1 or -1", label)
        for tok in tokens:
            idx_txt, colon, val_txt = tok.partition(":")
            if not colon or not idx_txt or not val_txt or ":" in val_txt:
                return bad(lineno, "a feature must be written 'index:value'", tok)
            idx = _number(idx_txt)
            if (
                idx is None
                or not np.isfinite(idx)
                or idx != round(idx)
                or not 1 <= idx <= n_features
            ):
                return bad(
                    lineno,
                    f"the feature index must be an integer in [1, n_features={n_features}]",
                    tok,
                )
            val = _number(val_txt)
            if val is None or not np.isfinite(val):
                return bad(lineno, "the feature value must be a finite number, not NaN or inf", tok)
    return None


def parse_libsvm(
    data: bytes | str, n_features: int = 123, *, source: str = "<string>"
) -> tuple[np.ndarray, np.ndarray]:
    """Parse LIBSVM text (``<label> <idx>:<val> ...``, 1-based indices) into dense arrays.

    Column ``j`` of the result (0-based) holds LIBSVM feature ``j + 1``. Blank lines are
    skipped. Parsing is vectorised (all labels and all ``idx:val`` numbers are converted in one
    numpy call each, the structure is checked with string counts); only a file found bad is
    walked line by line, to name the first offending line and token.

    Args:
        data: The file's bytes (UTF-8) or text.
        n_features: Number of columns; an index outside ``1..n_features`` is an error.
        source: Name of the file in error messages.

    Returns:
        ``(x, y)``: ``float32`` features and ``int64`` labels as written (``-1``/``+1`` for a1a).

    Raises:
        DataError: no samples, not UTF-8, a missing or non-integer label, a token that is not
            ``index:value``, an index out of range, a non-numeric or NaN/inf value. The message
            names ``source``, the line number and the token.
        ValueError: ``n_features`` is not a positive int.

    Shape:
        x: ``(n, n_features)``; y: ``(n,)``.

    Example:
        >>> x, y = parse_libsvm("+1 1:1 3:0.5\\n-1 2:1\\n", n_features=3)
        >>> x.tolist(), y.tolist()
        ([[1.0, 0.0, 0.5], [0.0, 1.0, 0.0]], [1, -1])
    """
    if isinstance(n_features, bool) or not isinstance(n_features, int) or n_features < 1:
        raise ValueError(f"n_features must be a positive int (got {n_features!r})")
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(
                f"LIBSVM file '{source}' must be UTF-8 text (got byte {data[exc.start]:#04x} "
                f"at offset {exc.start})"
            ) from None
    else:
        text = data
    numbered = [(i, ln) for i, ln in enumerate(text.splitlines(), 1) if ln.strip()]
    if not numbered:
        raise DataError(f"LIBSVM file '{source}' holds no samples (got only blank lines)")
    parts = [ln.split(None, 1) for _, ln in numbered]
    labels_txt = " ".join(pt[0] for pt in parts)
    tails = [pt[1] if len(pt) > 1 else "" for pt in parts]
    joined = " ".join(tails)
    counts = np.fromiter((t.count(":") for t in tails), dtype=np.int64, count=len(tails))
    # no label holds a colon and every colon joins two non-empty parts of one token; then the
    # number count below is twice the colon count only if every token is exactly 'a:b'
    ok = (
        ":" not in labels_txt
        and not joined.startswith(":")
        and _COLON_BEFORE_SPACE.search(joined) is None
        and _SPACE_BEFORE_COLON.search(joined) is None
    )
    labels = _parse_numbers(labels_txt) if ok else None
    flat = _parse_numbers(joined.replace(":", " ")) if labels is not None else None
    ok = flat is not None and labels.size == len(parts) and flat.size == 2 * int(counts.sum())
    if ok:
        idx, vals = flat[0::2], flat[1::2]
        ok = bool(
            np.isfinite(labels).all()
            and (labels == np.round(labels)).all()
            and np.isfinite(vals).all()
            and (idx.size == 0 or (idx.min() >= 1 and idx.max() <= n_features))
            and (idx == np.round(idx)).all()
        )
    if not ok:
        raise _libsvm_first_error(source, numbered, n_features) or DataError(
            f"LIBSVM file '{source}' is malformed: expected lines '<label> <index>:<value> ...'"
        )
    x = np.zeros((len(parts), n_features), dtype=np.float32)
    rows = np.repeat(np.arange(len(parts)), counts)
    x[rows, idx.astype(np.int64) - 1] = vals
    return x, labels.astype(np.int64)


def load_libsvm(
    path: str | os.PathLike[str], n_features: int = 123
) -> tuple[np.ndarray, np.ndarray]:
    """Read a LIBSVM text file (plain, or gzip if its name ends in ``.gz``) into dense arrays.

    See :func:`parse_libsvm` for the format, the checks and the result. To read the a1a files
    shipped with the package, use :func:`read_dataset_file` (or :func:`load_a1a`).

    Args:
        path: The file, e.g. ``my_data/a1a``.
        n_features: Number of columns; an index above it is an error.

    Raises:
        FileNotFoundError: ``path`` does not exist (the message names it).
        DataError: the file is malformed or holds NaN/inf (file, line and token named).

    Shape:
        x: ``(n, n_features)``; y: ``(n,)``.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"LIBSVM file not found: '{p}'")
    data = p.read_bytes()
    if p.suffix == ".gz":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(
                f"LIBSVM file '{p}' must be gzip data, as its name says ({exc})"
            ) from None
    return parse_libsvm(data, n_features, source=str(p))


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
        root: Folder holding your own ``a1a`` and ``a1a.t`` (read as they are). ``None``:
            ``$QSGD_DATA_ROOT`` if set, else the copies shipped in the package (sha256-checked).
        features: ``"all"`` (123 columns) or a list of column indices.
        val_fraction: Fraction of ``a1a`` held out for validation, in ``[0, 1)``.
        seed: Seed of the validation split.
        spins: Map the binary features to ``±1`` with ``2 x - 1``; else keep ``{0, 1}``.

    Raises:
        FileNotFoundError: a file is missing from ``root`` (the message names the path).
        DataError: a malformed line or a NaN/inf value (file, line and token named), or a
            shipped copy whose sha256 does not match.

    Shape:
        x_*: ``(n, len(features))``; y_*: ``(n,)``.
    """
    seed = _check_seed(seed)
    val_fraction = _check_fraction("val_fraction", val_fraction, allow_zero=True)
    cols = _feature_columns(features, A1A_NUM_FEATURES)
    src_tr, data_tr = read_dataset_file("a1a", root)
    x_tr, y_tr = parse_libsvm(data_tr, A1A_NUM_FEATURES, source=src_tr)
    src_te, data_te = read_dataset_file("a1a.t", root)
    x_te, y_te = parse_libsvm(data_te, A1A_NUM_FEATURES, source=src_te)
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
            "files": [src_tr, src_te],
            "features": cols.tolist(),
            "val_fraction": val_fraction,
            "seed": seed,
            "spins": bool(spins),
        },
    )


# --------------------------------------------------------------------------- graphs

_PLANETOID = ("cora", "citeseer")

_PLANETOID_KEYS = (
    "x_indptr",
    "x_indices",
    "x_data",
    "x_shape",
    "labels",
    "label_valid",
    "edge_index",
    "train_mask",
    "val_mask",
    "test_mask",
)


def _read_planetoid_npz(source: str, data: bytes) -> dict[str, Any]:
    """Arrays of a Planetoid ``.npz`` (schema in ``bnn/datasets/PROVENANCE.md``), validated.

    Raises:
        DataError: not an ``.npz``, a missing or unreadable array, an inconsistent CSR matrix,
            NaN/inf features (the node is named), non-integer labels or edges.
    """

    def bad(what: str) -> DataError:
        return DataError(f"Planetoid file '{source}': {what}")

    try:
        z = np.load(io.BytesIO(data), allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise bad(f"must be a numpy .npz archive ({exc})") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise bad(f"must be a numpy .npz archive (got a single {type(z).__name__})")
    with z:
        missing = [k for k in _PLANETOID_KEYS if k not in z.files]
        if missing:
            raise bad(f"must hold the arrays {list(_PLANETOID_KEYS)} (missing {missing})")
        try:
            out = {k: z[k] for k in _PLANETOID_KEYS}
            meta = json.loads(str(z["meta"])) if "meta" in z.files else {}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            raise bad(f"has an unreadable array ({type(exc).__name__}: {exc})") from None
    for key in ("x_indptr", "x_indices", "x_shape", "labels", "edge_index"):
        if not np.issubdtype(out[key].dtype, np.integer):
            raise bad(f"{key} must hold integers (got dtype {out[key].dtype})")
    shape = out["x_shape"]
    if shape.shape != (2,) or shape.min() < 0:
        raise bad(f"x_shape must be (num_nodes, num_features) (got {shape.tolist()})")
    n, d = (int(v) for v in shape)
    indptr = out["x_indptr"].astype(np.int64)
    cols = out["x_indices"].astype(np.int64)
    raw = out["x_data"]
    if (
        indptr.shape != (n + 1,)
        or indptr[0] != 0
        or (np.diff(indptr) < 0).any()
        or raw.ndim != 1
        or cols.shape != raw.shape
        or indptr[-1] != cols.size
    ):
        raise bad(
            f"x_indptr/x_indices/x_data must form a CSR matrix of shape ({n}, {d}) "
            f"(got shapes {indptr.shape}, {cols.shape}, {raw.shape})"
        )
    if cols.size and (cols.min() < 0 or cols.max() >= d):
        raise bad(f"x_indices must lie in [0, {d}) (got [{cols.min()}, {cols.max()}])")
    try:
        vals = raw.astype(np.float32)
    except (TypeError, ValueError):
        raise bad(f"x_data must hold numbers (got dtype {raw.dtype})") from None
    nonfinite = ~np.isfinite(vals)
    if nonfinite.any():
        k = int(np.argmax(nonfinite))
        node = int(np.searchsorted(indptr, k, side="right") - 1)
        raise bad(
            f"the features of node (row) {node} must be finite numbers, not NaN or inf "
            f"(got {raw[k]!r} at column {cols[k]})"
        )
    out.update(
        n=n,
        d=d,
        indptr=indptr,
        cols=cols,
        vals=vals,
        meta=meta,
        labels=out["labels"].astype(np.int64),
        edge_index=out["edge_index"].astype(np.int64),
    )
    return out


def load_planetoid(
    name_or_path: str | os.PathLike[str],
    root: str | os.PathLike[str] | None = None,
    *,
    sparse: bool = False,
    spins: bool = False,
) -> GraphDataset:
    """Cora or CiteSeer with the Planetoid public split, from the ``.npz`` files shipped in the package.

    Args:
        name_or_path: ``"cora"``, ``"citeseer"`` or a path to an ``.npz`` with the same schema
            (``bnn/datasets/PROVENANCE.md``).
        root: Folder holding your own ``<name>.npz`` (read as it is). ``None``:
            ``$QSGD_DATA_ROOT`` if set, else the copy shipped in the package (sha256-checked).
        sparse: Return ``x`` as a ``torch.sparse_coo`` tensor (binary bag-of-words).
        spins: Map the binary features to ``±1`` (``2 x - 1``, dense only).

    Raises:
        FileNotFoundError: the file is missing (the message names the path).
        ConfigError: an unknown name, ``"pubmed"`` (not available offline) or ``sparse`` with
            ``spins``.
        DataError: a malformed file or NaN/inf features (the file and the node are named), or
            a shipped copy whose sha256 does not match.

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
        source, data = read_dataset_file(f"{name}.npz", root)
    elif text.endswith(".npz"):
        path = Path(text)
        name = path.stem
        if not path.is_file():
            raise FileNotFoundError(f"Planetoid file not found: '{path}'")
        source, data = str(path), path.read_bytes()
    else:
        raise ConfigError(
            f"name_or_path must be one of {list(_PLANETOID)} or a path to an .npz (got {text!r})"
        )
    a = _read_planetoid_npz(source, data)
    n, d, cols, vals = a["n"], a["d"], a["cols"], a["vals"]
    rows = np.repeat(np.arange(n), np.diff(a["indptr"]))
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
    labels = a["labels"]
    try:
        return GraphDataset(
            name=name,
            x=x,
            y=torch.as_tensor(labels),
            edge_index=torch.as_tensor(a["edge_index"]),
            train_mask=torch.as_tensor(a["train_mask"]),
            val_mask=torch.as_tensor(a["val_mask"]),
            test_mask=torch.as_tensor(a["test_mask"]),
            num_classes=int(labels.max()) + 1 if labels.size else 0,
            label_valid=torch.as_tensor(a["label_valid"]),
            info={"path": source, "spins": bool(spins), "sparse": bool(sparse), "meta": a["meta"]},
        )
    except DataError:
        raise
    except ValueError as exc:
        raise DataError(f"Planetoid file '{source}': {exc}") from None


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
    "dataset 'pubmed' is not available offline: its feature file ind.pubmed.allx (about 7.5 MB) "
    "could not be obtained offline, so it is not shipped (see 'Not shipped' in "
    "bnn/datasets/PROVENANCE.md); use 'cora' or 'citeseer'"
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
