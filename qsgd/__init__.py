"""qsgd: quantum projected stochastic binary-gradient descent (QP-SBGD).

Data flow: per-layer quadratic model -> Ising/QUBO arrays (:mod:`qsgd.qubo`)
-> a named annealer backend (:mod:`qsgd.samplers`) -> binary update
(:mod:`qsgd.optimizer`) -> step statistics.
"""

from qsgd.errors import (
    BackendError,
    BackendUnavailableError,
    ConfigError,
    CredentialsError,
    ProblemError,
    ProblemTooLargeError,
    QSGDError,
    UnknownBackendError,
)
from qsgd.ising import IsingBatch, from_bqm, ising_energies, to_bqm

__version__ = "0.1.0"

__all__ = [
    "IsingBatch",
    "ising_energies",
    "to_bqm",
    "from_bqm",
    "QSGDError",
    "ProblemError",
    "ConfigError",
    "UnknownBackendError",
    "BackendUnavailableError",
    "BackendError",
    "ProblemTooLargeError",
    "CredentialsError",
    "__version__",
]
