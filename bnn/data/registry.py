"""Datasets by name: :func:`get_dataset` and :func:`available_datasets`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bnn.data.base import GraphDataset, TabularDataset
from bnn.data.graphs import _PUBMED_MSG, load_karate, load_planetoid
from bnn.data.libsvm import load_a1a
from bnn.data.sklearn_sets import load_breast_cancer, load_digits
from qsgd.errors import ConfigError

__all__ = ["available_datasets", "get_dataset"]

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
