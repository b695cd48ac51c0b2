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

Layout: :mod:`bnn.data.base` (the containers, checks and the tabular split),
:mod:`bnn.data.files` (shipped files and the sha256 check), :mod:`bnn.data.libsvm` (LIBSVM and
a1a), :mod:`bnn.data.graphs` (Cora, CiteSeer, Karate), :mod:`bnn.data.sklearn_sets` (breast
cancer, digits) and :mod:`bnn.data.registry` (:func:`get_dataset`).

Example:
    >>> ds = get_dataset("breast_cancer", seed=0, spins=True)
    >>> ds.x_train.shape[1], ds.num_classes
    (30, 2)
"""

from __future__ import annotations

from bnn.data.base import GraphDataset, TabularDataset, majority_rate, split_tabular
from bnn.data.files import SHIPPED_DATASETS, default_data_root, read_dataset_file
from bnn.data.graphs import load_karate, load_planetoid
from bnn.data.libsvm import (
    A1A_NUM_FEATURES,
    A1A_PAPER_FEATURES,
    A1A_REFERENCE_SEL3_COLUMNS,
    load_a1a,
    load_libsvm,
    parse_libsvm,
)
from bnn.data.registry import available_datasets, get_dataset
from bnn.data.sklearn_sets import load_breast_cancer, load_digits

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
