"""Exception types of qsgd. Each names the parameter, the value and what was expected."""

from __future__ import annotations

__all__ = [
    "QSGDError",
    "ProblemError",
    "ConfigError",
    "DataError",
    "UnknownBackendError",
    "BackendUnavailableError",
    "BackendError",
    "ProblemTooLargeError",
    "CredentialsError",
    "QPUServiceError",
    "QPUUnreachableError",
    "QPUAuthenticationError",
    "UnknownSolverError",
    "SolverFailureError",
]


class QSGDError(Exception):
    """Base class of every error raised on purpose by qsgd."""


class ProblemError(QSGDError, ValueError):
    """An Ising/QUBO problem or its inputs are malformed (shape, non-finite values, empty)."""


class ConfigError(QSGDError, ValueError):
    """A configuration value is unknown, of the wrong type or out of range."""


class DataError(QSGDError, ValueError):
    """A dataset file or array is malformed or corrupt (bad LIBSVM token, NaN/inf, hash mismatch).

    The message names the file (or dataset), where in it (line, row) and what was found.
    """


class UnknownBackendError(ConfigError, KeyError):
    """An annealer backend name is not registered; the message lists the known names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class BackendUnavailableError(QSGDError, ImportError):
    """A backend needs an optional dependency that is not installed; says which extra to install."""


class BackendError(QSGDError, RuntimeError):
    """A backend failed while solving; the message says which backend and why."""


class ProblemTooLargeError(QSGDError, ValueError):
    """A problem has more variables than a backend accepts (exact solver, QPU after embedding)."""


class CredentialsError(QSGDError, RuntimeError):
    """A QPU backend has no credentials; the message says how to configure them."""


class QPUServiceError(BackendError):
    """The QPU cloud service answered with an error, or could not be reached.

    Subclasses say which; only :class:`QPUUnreachableError` (a connection failure) is ever
    answered by a configured ``fallback`` backend, every other one is raised even with a fallback.
    """


class QPUUnreachableError(QPUServiceError):
    """A connection failure (timeout, refused/reset connection, DNS) and no ``fallback`` set."""


class QPUAuthenticationError(QPUServiceError, CredentialsError):
    """The QPU service rejected the API token (invalid, expired or without access)."""


class UnknownSolverError(QPUServiceError):
    """No solver matches the requested name/features, or the endpoint has no such resource."""


class SolverFailureError(QPUServiceError):
    """The solver rejected or failed the problem (bad problem, solver error, limits, 5xx)."""
