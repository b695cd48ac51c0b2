"""Graph datasets: Cora and CiteSeer (Planetoid ``.npz`` shipped in the package), Karate club.

The Planetoid files are read through :func:`bnn.data.files.read_dataset_file`; Zachary's Karate
club comes from networkx.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
import zlib
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from bnn.data.base import GraphDataset, _check_seed, _to_spins_binary
from bnn.data.files import read_dataset_file
from qsgd.errors import ConfigError, DataError

__all__ = ["load_planetoid", "load_karate"]

_PUBMED_MSG = (
    "dataset 'pubmed' is not available offline: its feature file ind.pubmed.allx (about 7.5 MB) "
    "could not be obtained offline, so it is not shipped (see 'Not shipped' in "
    "bnn/datasets/PROVENANCE.md); use 'cora' or 'citeseer'"
)


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
