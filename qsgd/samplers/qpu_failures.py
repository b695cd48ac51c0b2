"""QPU service failures told apart by exception type, and the qsgd error raised for each.

Only a connection failure (timeout, refused or reset connection, DNS failure, polling timeout) is
ever answered by a backend's ``fallback``; an invalid token, an unknown solver, a TLS failure
and a solver failure are raised as their own :class:`~qsgd.errors.QPUServiceError` subclasses.
"""

from __future__ import annotations

import errno
from typing import Any

from qsgd.errors import (
    QPUAuthenticationError,
    QPUServiceError,
    QPUUnreachableError,
    SolverFailureError,
    UnknownSolverError,
)

__all__ = [
    "FAILURE_KINDS",
    "classify_qpu_failure",
    "describe_failure",
    "service_error",
    "qpu_access_seconds",
]

#: Kinds of QPU service failures; only ``"connection"`` is ever answered by a ``fallback``.
FAILURE_KINDS = ("connection", "authentication", "unknown_solver", "tls", "solver_failure")


def _exception_chain(exc: BaseException) -> list[BaseException]:
    """``exc`` followed by its ``__cause__``/``__context__`` ancestors (cycle-safe, at most 32)."""
    chain: list[BaseException] = []
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen and len(chain) < 32:
        chain.append(cur)
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return chain


def _failure_types() -> dict[str, tuple[type[BaseException], ...]]:
    """Exception types of each failure kind, in the order they are tested on one exception."""
    import socket
    import ssl

    import requests
    import urllib3

    try:
        from dwave.cloud import exceptions as cloud
        from dwave.cloud.api import exceptions as api
    except ModuleNotFoundError:  # pragma: no cover - dwave-system pulls the cloud client
        cloud = api = None

    def _get(mod: Any, *names: str) -> tuple[type[BaseException], ...]:
        return tuple(getattr(mod, n) for n in names if mod is not None and hasattr(mod, n))

    return {
        "authentication": _get(api, "ResourceAuthenticationError", "ResourceAccessForbiddenError"),
        "problem_not_found": _get(cloud, "ProblemNotFoundError"),
        "unknown_solver": _get(api, "ResourceNotFoundError")
        + _get(cloud, "SolverNotFoundError", "UnsupportedSolverError"),
        "tls": (requests.exceptions.SSLError, ssl.SSLError, urllib3.exceptions.SSLError),
        "connection": _get(api, "RequestTimeout")
        + _get(cloud, "PollingTimeout")
        + (
            requests.exceptions.ConnectionError,  # refused, reset, DNS, max retries
            requests.exceptions.Timeout,  # connect and read timeouts
            urllib3.exceptions.TimeoutError,
            urllib3.exceptions.NewConnectionError,
            urllib3.exceptions.ProtocolError,  # connection aborted/reset mid-response
            urllib3.exceptions.MaxRetryError,
            ConnectionError,  # builtin: refused, reset, aborted, broken pipe
            TimeoutError,  # also socket.timeout
            socket.gaierror,  # DNS failure
            socket.herror,
        ),
        "solver_failure": _get(
            cloud,
            "SolverError",
            "ProblemError",
            "InvalidProblemError",
            "ProblemUploadError",
            "CanceledFutureError",
        )
        + _get(api, "RequestError"),
    }


_NETWORK_ERRNOS = frozenset(
    getattr(errno, name)
    for name in ("ENETUNREACH", "EHOSTUNREACH", "ENETDOWN", "EHOSTDOWN", "ETIMEDOUT")
    if hasattr(errno, name)
)


def classify_qpu_failure(exc: BaseException) -> tuple[str, BaseException] | None:
    """Which kind of QPU service failure ``exc`` is, judged by exception type.

    The chain ``exc``, ``exc.__cause__``/``__context__``, ... is walked from the top; the first
    exception of a known type decides, testing ``authentication`` (invalid token, access
    denied), ``unknown_solver``, ``tls``, ``connection`` (timeouts, refused/reset connections,
    DNS failures, polling timeouts) and ``solver_failure`` (any other SAPI error: problem
    rejected, solver error, limits exceeded, server error) in that order. dwave-cloud-client's
    errors all derive from ``OSError`` (via ``requests.RequestException``), so an ``OSError``
    test alone would call an invalid token a network failure.

    Args:
        exc: The exception raised by the cloud client or dwave-system.

    Returns:
        ``(kind, culprit)`` with ``kind`` in :data:`FAILURE_KINDS` and the exception that decided
        it, or ``None`` when ``exc`` is not a QPU service failure (a bug or a local error: it is
        re-raised unchanged).

    Example:
        >>> classify_qpu_failure(ConnectionRefusedError(111, "Connection refused"))[0]
        'connection'
        >>> classify_qpu_failure(KeyError("x")) is None
        True
    """
    types = _failure_types()
    order = ("authentication", "problem_not_found", "unknown_solver", "tls", "connection")
    for e in _exception_chain(exc):
        for kind in (*order, "solver_failure"):
            if types[kind] and isinstance(e, types[kind]):
                return ("solver_failure" if kind == "problem_not_found" else kind), e
        if type(e) is OSError and e.errno in _NETWORK_ERRNOS:  # e.g. "No route to host"
            return "connection", e
    return None


def describe_failure(exc: BaseException) -> str:
    """``Type: message``, plus the root cause when it differs (e.g. ``ConnectionRefusedError``)."""
    text = f"{type(exc).__name__}: {exc}"
    root = _exception_chain(exc)[-1]
    if root is not exc:
        text += f"; caused by {type(root).__name__}: {root}"
    return text


def service_error(label: str, kind: str, exc: BaseException, hint: str = "") -> QPUServiceError:
    """The qsgd error for a QPU failure of ``kind`` (the fallback never answers these)."""
    got = f"(got {describe_failure(exc)})"
    if kind == "authentication":
        return QPUAuthenticationError(
            f"backend {label!r}: authentication failed — check the token "
            f"(dwave config create / DWAVE_API_TOKEN) {got}"
        )
    if kind == "unknown_solver":
        return UnknownSolverError(
            f"backend {label!r}: unknown solver{hint} — no solver at the endpoint matches it; "
            f"`dwave solvers` lists the available ones {got}"
        )
    if kind == "tls":
        return QPUServiceError(
            f"backend {label!r}: TLS failure talking to the QPU service — check the endpoint, "
            f"proxy and certificates {got}"
        )
    if kind == "connection":
        return QPUUnreachableError(
            f"backend {label!r}: QPU unreachable (connection failure{hint}); set fallback='neal' "
            f"to continue on a classical backend {got}"
        )
    return SolverFailureError(
        f"backend {label!r}: solver failure — the QPU service rejected or failed the problem {got}"
    )


def qpu_access_seconds(info: Any) -> float:
    """QPU access time in seconds from a sample set's ``info["timing"]`` (0.0 when absent).

    SAPI reports ``timing["qpu_access_time"]`` in microseconds; samplers without timing
    (the mock) give 0.0.
    """
    timing = info.get("timing") if isinstance(info, dict) else None
    if not isinstance(timing, dict):
        return 0.0
    value = timing.get("qpu_access_time")
    try:
        return max(float(value), 0.0) * 1e-6
    except (TypeError, ValueError):
        return 0.0
