"""LIBSVM text files and the a1a (Adult) dataset.

:func:`parse_libsvm` turns LIBSVM text into dense arrays in a vectorised pass (a file found bad
is walked line by line to name the offending line and token); :func:`load_a1a` builds the
train/val/test split from the shipped ``a1a`` / ``a1a.t`` files.
"""

from __future__ import annotations

import gzip
import os
import re
import warnings
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from bnn.data.base import (
    TabularDataset,
    _check_fraction,
    _check_seed,
    _stratified_split,
    _tensors,
    _to_spins_binary,
)
from bnn.data.files import read_dataset_file
from qsgd.errors import DataError

__all__ = [
    "A1A_NUM_FEATURES",
    "A1A_PAPER_FEATURES",
    "A1A_REFERENCE_SEL3_COLUMNS",
    "parse_libsvm",
    "load_libsvm",
    "load_a1a",
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
