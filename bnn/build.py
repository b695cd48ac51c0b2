"""Build the pieces of a run from a :class:`bnn.config.RunConfig`: dataset, model, optimizer.

``build_dataset -> build_model -> build_optimizer`` is what :func:`bnn.runner.train_from_config`
and :func:`bnn.runner.evaluate_run` do before training or evaluating; seed the global RNGs
first (:func:`seed_everything`) for a reproducible initialisation.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from bnn.config import QPSBGDConfig, RunConfig
from qsgd.errors import ConfigError

__all__ = ["seed_everything", "build_dataset", "build_model", "build_optimizer"]


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, numpy's global RNG and torch's global RNG with ``seed``."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int (got {seed!r})")
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - seeds the global RNG on purpose
    torch.manual_seed(seed)


def build_dataset(cfg: RunConfig) -> Any:
    """Load ``cfg.data`` with :func:`bnn.data.get_dataset`.

    Raises:
        ConfigError: unknown dataset or bad option.
        FileNotFoundError: a dataset file is missing (the message names the path).
    """
    from bnn.data import get_dataset

    kwargs = dict(cfg.data.options)
    if cfg.data.root is not None:
        kwargs["root"] = cfg.data.root
    try:
        return get_dataset(cfg.data.name, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"data.options rejected by dataset {cfg.data.name!r}: {exc}") from None


def _is_graph(dataset: Any) -> bool:
    return hasattr(dataset, "edge_index")


def _model_factories() -> dict[str, tuple[Callable[..., nn.Module], bool]]:
    from bnn.models import BinaryCNN, BinaryGCN, BinaryMLP

    def mlp(ds: Any, m: Any) -> nn.Module:
        return BinaryMLP(ds.num_features, m.hidden, ds.num_classes, **_model_kwargs(m))

    def gcn(ds: Any, m: Any) -> nn.Module:
        return BinaryGCN(ds.num_features, m.hidden, ds.num_classes, **_model_kwargs(m))

    def cnn(ds: Any, m: Any) -> nn.Module:
        return BinaryCNN(ds.num_classes, **_model_kwargs(m))

    return {"mlp": (mlp, False), "gcn": (gcn, True), "cnn": (cnn, False)}


def _model_kwargs(m: Any) -> dict[str, Any]:
    return dict(
        binary=m.binary,
        first_layer_binary=m.first_layer_binary,
        last_layer_binary=m.last_layer_binary,
        batchnorm=m.batchnorm,
        **m.options,
    )


def build_model(cfg: RunConfig, dataset: Any) -> nn.Module:
    """Build ``cfg.model`` for ``dataset`` (input and output sizes from the dataset).

    Seed the global RNG first (:func:`seed_everything`) for a reproducible initialisation.

    Raises:
        ConfigError: the architecture does not fit the dataset, or a bad model option.
    """
    factory, needs_graph = _model_factories()[cfg.model.arch]
    if needs_graph != _is_graph(dataset):
        kind = "a graph" if _is_graph(dataset) else "a tabular"
        hint = "gcn" if _is_graph(dataset) else "mlp or cnn"
        raise ConfigError(
            f"model.arch {cfg.model.arch!r} does not fit data.name {cfg.data.name!r}, which is "
            f"{kind} dataset (expected model.arch = {hint})"
        )
    try:
        return factory(dataset, cfg.model)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"model options rejected: {exc}") from None


def build_optimizer(cfg: RunConfig, model: nn.Module) -> torch.optim.Optimizer:
    """Build ``cfg.optimizer`` over ``model`` with :func:`bnn.baselines.make_optimizer`.

    For ``qpsbgd`` the ``[annealer]`` section gives the backend and its options, and the
    annealer seed is ``annealer.seed`` or else ``train.seed``.

    Raises:
        ConfigError: unknown backend (lists the known ones) or an option the optimizer or the
            backend rejects.
    """
    from bnn.baselines import make_optimizer

    options = cfg.optimizer.constructor_options()
    if isinstance(cfg.optimizer, QPSBGDConfig):
        options.update(
            backend=cfg.annealer,  # QPSBGD splits it into sampler and run options
            seed=cfg.train.seed if cfg.annealer.seed is None else cfg.annealer.seed,
            layer_schedule="all",  # the fit loop applies train.schedule
        )
    try:
        return make_optimizer(cfg.optimizer.name, model, **options)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"optimizer {cfg.optimizer.name!r} rejected its options: {exc}") from None
