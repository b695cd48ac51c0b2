"""qsgd: quantum projected stochastic binary-gradient descent (QP-SBGD).

Data flow: per-layer quadratic model -> Ising/QUBO arrays (:mod:`qsgd.qubo`)
-> a named annealer backend (:mod:`qsgd.samplers`) -> binary update
(:mod:`qsgd.optimizer`) -> step statistics.

The public API is importable from here; everything but the errors is loaded on first use, so
``import qsgd.errors`` (and ``import qkernels``, which uses it) does not import dimod or torch.

Example:
    >>> from qsgd import QPSBGD, get_sampler, layer_ising, solve_batch
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from qsgd.errors import (
    BackendError,
    BackendUnavailableError,
    ConfigError,
    CredentialsError,
    DataError,
    ProblemError,
    ProblemTooLargeError,
    QSGDError,
    UnknownBackendError,
)

__version__ = "0.1.0"

#: Public name -> the module that defines it (imported lazily by ``__getattr__``).
_LAZY: dict[str, str] = {
    "IsingBatch": "qsgd.ising",
    "ising_energies": "qsgd.ising",
    "to_bqm": "qsgd.ising",
    "from_bqm": "qsgd.ising",
    "layer_ising": "qsgd.qubo",
    "sign_match_ising": "qsgd.qubo",
    "quadratic_model_ising": "qsgd.qubo",
    "brute_force": "qsgd.qubo",
    "get_sampler": "qsgd.samplers.registry",
    "solve_batch": "qsgd.samplers.registry",
    "available_backends": "qsgd.samplers.registry",
    "register_backend": "qsgd.samplers.registry",
    "compose": "qsgd.samplers.registry",
    "Sampler": "qsgd.samplers.base",
    "QPSBGD": "qsgd.optimizer",
    "AnnealerConfig": "qsgd.config",
    "BinaryLayer": "qsgd.binary",
    "sign_ste": "qsgd.binary",
}

__all__ = [
    "QPSBGD",
    "AnnealerConfig",
    "IsingBatch",
    "ising_energies",
    "to_bqm",
    "from_bqm",
    "layer_ising",
    "sign_match_ising",
    "quadratic_model_ising",
    "brute_force",
    "get_sampler",
    "solve_batch",
    "available_backends",
    "register_backend",
    "compose",
    "Sampler",
    "BinaryLayer",
    "sign_ste",
    "QSGDError",
    "ProblemError",
    "ConfigError",
    "DataError",
    "UnknownBackendError",
    "BackendUnavailableError",
    "BackendError",
    "ProblemTooLargeError",
    "CredentialsError",
    "__version__",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'qsgd' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


if TYPE_CHECKING:  # pragma: no cover - static analysers see the real names
    from qsgd.binary import BinaryLayer, sign_ste
    from qsgd.config import AnnealerConfig
    from qsgd.ising import IsingBatch, from_bqm, ising_energies, to_bqm
    from qsgd.optimizer import QPSBGD
    from qsgd.qubo import brute_force, layer_ising, quadratic_model_ising, sign_match_ising
    from qsgd.samplers.base import Sampler
    from qsgd.samplers.registry import (
        available_backends,
        compose,
        get_sampler,
        register_backend,
        solve_batch,
    )
