"""QPU backends: ``"dwave"`` (a real D-Wave QPU) and ``"mock-dwave"`` (the same code path offline).

Per-neuron problems of a layer have the same dense graph at every step, so one clique embedding
is computed per (problem size, solver, embedding seed) with ``minorminer.busclique`` and reused
from an in-process cache. Samples are unembedded by dwave-system's ``FixedEmbeddingComposite``
with broken chains resolved by majority vote (never averaged into fractional spins); the mean
``chain_break_fraction`` is reported in ``SampleSet.info``.

Credentials are read only by dwave-cloud-client's own configuration chain (config file, or the
``DWAVE_API_TOKEN`` environment variable); qsgd never takes a token argument.

dwave-system is the optional extra ``dwave``: it is imported lazily, and its absence raises
:class:`~qsgd.errors.BackendUnavailableError` naming the install command.

Failures are told apart by exception type (:func:`classify_qpu_failure`). Only a connection
failure (timeout, refused or reset connection, DNS failure, polling timeout) is answered by a
configured ``fallback``; the fallback then solves every later problem of that backend object,
one warning is logged, and each result says ``info["solved_by"] = <fallback>``. An invalid
token (:class:`~qsgd.errors.QPUAuthenticationError`), an unknown solver
(:class:`~qsgd.errors.UnknownSolverError`) and a solver failure
(:class:`~qsgd.errors.SolverFailureError`) are raised even with a fallback. Every wait on the
QPU service is bounded by ``timeout``/``connect_timeout`` (see :class:`DWaveBackend`).
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dimod
import numpy as np

from qsgd.errors import (
    BackendUnavailableError,
    ConfigError,
    CredentialsError,
    ProblemTooLargeError,
    QPUAuthenticationError,
    QPUServiceError,
    QPUUnreachableError,
    SolverFailureError,
    UnknownSolverError,
)

__all__ = [
    "QPUBackend",
    "DWaveBackend",
    "MockDWaveBackend",
    "clique_embedding",
    "embedding_cache_info",
    "clear_embedding_cache",
    "classify_qpu_failure",
    "FAILURE_KINDS",
    "DEFAULT_TIMEOUT",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_HTTP_RETRIES",
]

logger = logging.getLogger(__name__)

_INSTALL_HINT = "backend 'dwave' needs dwave-system: pip install 'qsgd[dwave]'"
_CREDENTIALS_HINT = (
    "no D-Wave API token found: run `dwave config create` (writes the cloud-client config file) "
    "or set the DWAVE_API_TOKEN environment variable; qsgd never takes tokens in its own configs"
)


def _import_dwave() -> tuple[Any, Any]:
    """``(dwave.system, minorminer.busclique)``, or BackendUnavailableError naming the extra."""
    try:
        import dwave.system as dsys
        import minorminer.busclique as busclique
    except ModuleNotFoundError as exc:
        raise BackendUnavailableError(_INSTALL_HINT) from exc
    return dsys, busclique


@dataclass
class _CacheStats:
    hits: int = 0
    misses: int = 0


_EMBEDDINGS: dict[tuple[int, str, int], dict[int, tuple[int, ...]]] = {}
_STATS = _CacheStats()


def embedding_cache_info() -> dict[str, int]:
    """Counters of the clique-embedding cache: ``hits``, ``misses`` and ``size``."""
    return {"hits": _STATS.hits, "misses": _STATS.misses, "size": len(_EMBEDDINGS)}


def clear_embedding_cache() -> None:
    """Forget all cached embeddings and reset the counters."""
    _EMBEDDINGS.clear()
    _STATS.hits = _STATS.misses = 0


def clique_embedding(
    n: int, target_graph: Any, solver_id: str, seed: int = 0
) -> tuple[dict[int, tuple[int, ...]], bool]:
    """A clique embedding of spins ``0..n-1`` into ``target_graph``, cached per (n, solver, seed).

    Args:
        n: Number of logical spins.
        target_graph: The QPU working graph (a dwave-networkx graph with topology attributes).
        solver_id: Identifies the graph in the cache (solver name, or the mock's topology).
        seed: Seed of minorminer's clique search.

    Returns:
        ``(embedding, cache_hit)``; ``embedding[i]`` is the chain of qubits of spin ``i``.

    Raises:
        ProblemTooLargeError: no clique of size ``n`` fits; names the largest that does and
            suggests ``max_block_vars``.
    """
    key = (int(n), str(solver_id), int(seed))
    if key in _EMBEDDINGS:
        _STATS.hits += 1
        return _EMBEDDINGS[key], True
    _, busclique = _import_dwave()
    emb = busclique.find_clique_embedding(int(n), target_graph, seed=int(seed), use_cache=False)
    if len(emb) != n:
        largest = len(busclique.busgraph_cache(target_graph).largest_clique())
        raise ProblemTooLargeError(
            f"a dense problem of {n} variables does not embed on solver {solver_id!r} "
            f"(largest clique embedding: {largest} variables); set max_block_vars <= {largest}"
        )
    _STATS.misses += 1
    emb = {int(v): tuple(int(q) for q in chain) for v, chain in emb.items()}
    _EMBEDDINGS[key] = emb
    return emb, False


# ------------------------------------------------------------------ failure classification
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


def _describe(exc: BaseException) -> str:
    """``Type: message``, plus the root cause when it differs (e.g. ``ConnectionRefusedError``)."""
    text = f"{type(exc).__name__}: {exc}"
    root = _exception_chain(exc)[-1]
    if root is not exc:
        text += f"; caused by {type(root).__name__}: {root}"
    return text


def _service_error(label: str, kind: str, exc: BaseException, hint: str = "") -> QPUServiceError:
    """The qsgd error for a QPU failure of ``kind`` (the fallback never answers these)."""
    got = f"(got {_describe(exc)})"
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


class QPUBackend(dimod.Sampler):
    """A structured QPU-like sampler behind a cached clique embedding.

    Args:
        child: A structured dimod sampler (``DWaveSampler`` or ``MockDWaveSampler``); ``None``
            when the QPU could not be reached and ``fallback`` takes over.
        solver_id: Cache key of the child's graph.
        chain_strength: Absolute chain strength, or ``None`` for dwave-system's
            ``uniform_torque_compensation`` (prefactor 1.414) of each problem.
        annealing_time: Default annealing time in microseconds (``None``: the solver's default).
        num_reads: Default reads per problem.
        embedding_seed: Seed of the clique-embedding search.
        fallback: Backend name (e.g. ``"neal"``) that solves the problems when the QPU cannot
            be reached (a connection failure: timeout, refused/reset connection, DNS failure),
            or ``None``. After the first connection failure every later problem of this
            backend object goes to the fallback (no further waits on a dead endpoint), and one
            warning is logged. Authentication failures, unknown solvers and solver failures are
            raised even with a fallback (see :func:`classify_qpu_failure`).
        fallback_options: Constructor options of the fallback backend.
        label: Backend name used in messages and in ``info["solved_by"]``.

    Attributes:
        fallback_solves: Problems solved by the fallback so far.
        unreachable_reason: Why the fallback took over (``None`` while the QPU answers).

    Shape:
        ``sample`` returns one SampleSet over the BQM's variables; ``info`` holds ``solved_by``
        (``label``, or the fallback's name when the fallback solved it), and on the QPU path
        ``chain_break_fraction`` (mean over reads), ``chain_strength``,
        ``embedding_cache_hit``, ``num_qubits`` and ``max_chain_length``.
    """

    _run_keys: tuple[str, ...] = ("num_reads", "chain_strength", "annealing_time")

    def __init__(
        self,
        child: dimod.Sampler | None,
        *,
        solver_id: str,
        chain_strength: float | None = None,
        annealing_time: float | None = None,
        num_reads: int = 100,
        embedding_seed: int = 0,
        fallback: str | None = None,
        fallback_options: dict[str, Any] | None = None,
        label: str = "dwave",
    ) -> None:
        _check_positive("num_reads", num_reads, integer=True)
        if chain_strength is not None:
            _check_positive("chain_strength", chain_strength)
        if annealing_time is not None:
            _check_positive("annealing_time", annealing_time)
        if fallback is not None:
            from qsgd.samplers.registry import available_backends

            if fallback not in available_backends() or fallback in ("dwave", "mock-dwave"):
                known = [b for b in available_backends() if b not in ("dwave", "mock-dwave")]
                raise ConfigError(
                    f"fallback must be one of {', '.join(known)} or None (got {fallback!r})"
                )
        self.child = child
        self.solver_id = solver_id
        self.label = label
        self.backend_name = label
        self.embedding_seed = int(embedding_seed)
        self.fallback = fallback
        self.fallback_options = dict(fallback_options or {})
        self._fallback_sampler: dimod.Sampler | None = None
        self._fallback_warned = False
        self.fallback_solves = 0
        self.unreachable_reason: str | None = None
        self.defaults: dict[str, Any] = {"num_reads": int(num_reads)}
        if chain_strength is not None:
            self.defaults["chain_strength"] = float(chain_strength)
        if annealing_time is not None:
            self.defaults["annealing_time"] = float(annealing_time)
        self._composites: dict[int, Any] = {}

    @property
    def parameters(self) -> dict[str, list]:
        return {k: [] for k in self._run_keys}

    @property
    def properties(self) -> dict[str, Any]:
        """``solver_id``, ``defaults`` and ``max_num_variables``: the largest dense problem that
        embeds on the chip (``None`` when the QPU is unreachable and the fallback solves)."""
        return {
            "solver_id": self.solver_id,
            "defaults": dict(self.defaults),
            "max_num_variables": self.max_num_variables(),
        }

    def max_num_variables(self) -> int | None:
        """Largest dense (clique) problem that embeds on the chip, or ``None`` without a chip."""
        if self.child is None:
            return None
        if getattr(self, "_max_vars", None) is None:
            _, busclique = _import_dwave()
            graph = self.child.to_networkx_graph()
            self._max_vars = len(busclique.busgraph_cache(graph).largest_clique())
        return self._max_vars

    def _composite(self, n: int) -> tuple[Any, bool, dict[int, tuple[int, ...]]]:
        dsys, _ = _import_dwave()
        emb, hit = clique_embedding(
            n, self.child.to_networkx_graph(), self.solver_id, self.embedding_seed
        )
        comp = self._composites.get(n)
        if comp is None:
            comp = dsys.FixedEmbeddingComposite(self.child, embedding=emb)
            self._composites[n] = comp
        return comp, hit, emb

    def _child_kwargs(self, kw: dict[str, Any]) -> dict[str, Any]:
        out = {"num_reads": kw["num_reads"]}
        if kw.get("annealing_time") is not None:
            out["annealing_time"] = kw["annealing_time"]
        return out

    def _switch_to_fallback(self, why: str) -> None:
        """Stop using the QPU for this object's lifetime; warn once (not once per problem)."""
        self.child = None
        self.unreachable_reason = why
        if not self._fallback_warned:
            self._fallback_warned = True
            logger.warning(
                "backend %r: QPU unreachable (%s); this and every later problem of this run is "
                "solved by fallback backend %r (recorded as solved_by=%r)",
                self.label,
                why,
                self.fallback,
                self.fallback,
            )

    def _run_fallback(self, bqm: dimod.BinaryQuadraticModel, kw: dict[str, Any]):
        from qsgd.samplers.registry import get_sampler

        if self._fallback_sampler is None:
            self._fallback_sampler = get_sampler(self.fallback, **self.fallback_options)
        accepted = set(self._fallback_sampler.parameters)
        ss = self._fallback_sampler.sample(bqm, **{k: v for k, v in kw.items() if k in accepted})
        ss.info["fallback"] = self.fallback
        ss.info["solved_by"] = self.fallback
        self.fallback_solves += 1
        return ss

    def _connection_hint(self) -> str:
        """Extra words for the unreachable message (the DWave backend names its timeouts)."""
        return ""

    def sample(self, bqm: dimod.BinaryQuadraticModel, **kwargs: Any) -> dimod.SampleSet:
        """Embed ``bqm`` with the cached clique embedding, sample, and unembed by majority vote.

        Raises:
            ConfigError: unknown run option.
            ProblemTooLargeError: the problem does not fit the chip.
            QPUUnreachableError: connection failure and no ``fallback`` set.
            QPUAuthenticationError: the token was rejected (even with a ``fallback``).
            UnknownSolverError: the solver is gone (even with a ``fallback``).
            SolverFailureError: the solver rejected or failed the problem (even with a
                ``fallback``).
        """
        unknown = sorted(set(kwargs) - set(self.parameters))
        if unknown:
            raise ConfigError(
                f"unknown run option {unknown[0]!r} for backend {self.label!r}; "
                f"accepted options: {', '.join(sorted(self.parameters))}"
            )
        kw = {**self.defaults, **kwargs}
        _check_positive("num_reads", kw["num_reads"], integer=True)
        if self.child is None:
            return self._run_fallback(bqm, kw)
        n = bqm.num_variables
        if n == 0:  # nothing to embed: the empty sample of every read, at the offset's energy
            empty = dimod.SampleSet.from_samples_bqm(
                (np.empty((kw["num_reads"], 0), dtype=np.int8), []), bqm
            )
            empty.info.update(chain_break_fraction=0.0, num_qubits=0, solved_by=self.label)
            return empty
        labels = list(bqm.variables)
        relabel = labels != list(range(n))
        src = (
            bqm.relabel_variables(dict(zip(labels, range(n), strict=True)), inplace=False)
            if relabel
            else bqm
        )
        if src.vartype is dimod.BINARY:
            src = src.spin
        comp, hit, emb = self._composite(n)
        chain_strength = kw.get("chain_strength")
        if chain_strength is None:
            from dwave.embedding.chain_strength import uniform_torque_compensation

            chain_strength = float(uniform_torque_compensation(src, emb))
        _check_positive("chain_strength", chain_strength)
        try:
            ss = comp.sample(
                src,
                chain_strength=chain_strength,
                chain_break_fraction=True,
                **self._child_kwargs(kw),
            )
            ss.resolve()
        except Exception as exc:
            found = classify_qpu_failure(exc)
            if found is None:
                raise  # not a QPU service failure: a local error, raised as it is
            kind, _ = found
            if kind != "connection" or self.fallback is None:
                hint = self._connection_hint() if kind == "connection" else ""
                raise _service_error(self.label, kind, exc, hint) from exc
            self._switch_to_fallback(_describe(exc))
            return self._run_fallback(bqm, kw)
        if relabel:
            ss = ss.relabel_variables(dict(enumerate(labels)), inplace=False)
        cbf = np.asarray(ss.record.chain_break_fraction, dtype=np.float64)
        occ = np.asarray(ss.record.num_occurrences, dtype=np.float64)
        chain_lengths = np.fromiter((len(c) for c in emb.values()), dtype=np.int64, count=n)
        info = {k: v for k, v in ss.info.items() if k in ("timing", "problem_id")}
        info.update(
            chain_break_fraction=float(np.sum(cbf * occ) / np.sum(occ)),
            chain_strength=float(chain_strength),
            embedding_cache_hit=bool(hit),
            num_qubits=int(chain_lengths.sum()),
            max_chain_length=int(chain_lengths.max()),
            solved_by=self.label,
        )
        out = dimod.SampleSet(ss.record, ss.variables, info, ss.vartype)
        if bqm.vartype is not out.vartype:  # sampled as SPIN; same energies in the bqm's vartype
            out = out.change_vartype(bqm.vartype, inplace=False)
        return out


def _check_positive(name: str, value: Any, *, integer: bool = False) -> None:
    kinds = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    if isinstance(value, bool) or not isinstance(value, kinds) or not value > 0:
        what = "a positive int" if integer else "a positive number"
        raise ConfigError(f"{name} must be {what} (got {value!r})")


DEFAULT_TIMEOUT = 60.0
"""Seconds ``"dwave"`` waits for an answer: per HTTP request, and for a problem's result."""

DEFAULT_CONNECT_TIMEOUT = 10.0
"""Seconds the ``"dwave"`` backend waits to open a connection to the QPU service."""

DEFAULT_HTTP_RETRIES = 1
"""Retries of a failed request (cloud-client ``http_retry_total``; its own default is 10)."""

_TIMEOUT_KEYS = ("request_timeout", "polling_timeout")


class DWaveBackend(QPUBackend):
    """``"dwave"``: a real D-Wave QPU through dwave-system's ``DWaveSampler``.

    Every wait on the QPU service is bounded: each HTTP request waits at most
    ``connect_timeout`` to connect and ``timeout`` for the answer, a failed request is retried
    at most ``http_retry_total`` times (default :data:`DEFAULT_HTTP_RETRIES`; settable in
    ``client_config``), and a submitted problem's result is polled for at most ``timeout``
    seconds. A request therefore gives up after about
    ``(1 + retries) * (connect_timeout + timeout)`` seconds; running out of time is a
    connection failure (``fallback`` applies).

    Args:
        solver: Solver name or feature filter passed to ``DWaveSampler`` (``None``: client default).
        client_config: Further cloud-client options (``region``, ``endpoint``, ``proxy``,
            ``http_retry_total``, ...). ``token`` is refused (credentials come only from the
            client's own config file or ``DWAVE_API_TOKEN``), and so are ``request_timeout``
            and ``polling_timeout`` (use ``timeout``/``connect_timeout``).
        timeout: Seconds to wait for an answer: read timeout of each request and polling
            timeout of each problem (default :data:`DEFAULT_TIMEOUT`).
        connect_timeout: Seconds to wait for a connection (default
            :data:`DEFAULT_CONNECT_TIMEOUT`).
        fallback: Backend that solves the problems after a connection failure (see
            :class:`QPUBackend`); every other failure is raised.
        **options: See :class:`QPUBackend` (chain_strength, annealing_time, num_reads,
            embedding_seed, fallback_options).

    Raises:
        BackendUnavailableError: dwave-system is not installed.
        CredentialsError: no API token configured; says how to configure one.
        QPUAuthenticationError: the token was rejected (even with a ``fallback``).
        UnknownSolverError: no solver matches ``solver`` (even with a ``fallback``).
        QPUUnreachableError: connection failure and no ``fallback`` set.

    Example:
        >>> sampler = get_sampler("dwave", timeout=30, fallback="neal")  # doctest: +SKIP
    """

    def __init__(
        self,
        solver: str | dict | None = None,
        client_config: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
        connect_timeout: float | None = None,
        chain_strength: float | None = None,
        annealing_time: float | None = None,
        num_reads: int = 100,
        embedding_seed: int = 0,
        fallback: str | None = None,
        fallback_options: dict[str, Any] | None = None,
        connect: Callable[..., dimod.Sampler] | None = None,
    ) -> None:
        timeout = DEFAULT_TIMEOUT if timeout is None else timeout
        connect_timeout = DEFAULT_CONNECT_TIMEOUT if connect_timeout is None else connect_timeout
        _check_positive("timeout", timeout)
        _check_positive("connect_timeout", connect_timeout)
        self.timeout = float(timeout)
        self.connect_timeout = float(connect_timeout)
        dsys, _ = _import_dwave()
        config = dict(client_config or {})
        if "token" in config:
            raise ConfigError(
                "client_config must not contain 'token': " + _CREDENTIALS_HINT.split(": ", 1)[1]
            )
        for key in _TIMEOUT_KEYS:
            if key in config:
                raise ConfigError(
                    f"client_config must not contain {key!r}: set the backend's timeout and "
                    f"connect_timeout (annealer.timeout, annealer.connect_timeout) instead "
                    f"(got {key}={config[key]!r})"
                )
        config.update(
            request_timeout=(self.connect_timeout, self.timeout),
            polling_timeout=self.timeout,
            # the server holds a long poll open this long; it must end before the read timeout
            poll_wait_time=min(30, int(self.timeout // 2)),
        )
        config.setdefault("http_retry_total", DEFAULT_HTTP_RETRIES)
        if solver is not None:
            config["solver"] = solver
        connect = connect or dsys.DWaveSampler
        self.fallback = fallback  # _connection_hint and the start-up path need these
        self.label = "dwave"
        child: dimod.Sampler | None
        try:
            child = connect(**config)
            solver_id = str(getattr(getattr(child, "solver", None), "name", "dwave"))
        except Exception as exc:
            found = classify_qpu_failure(exc)
            if found is None:
                if isinstance(exc, ValueError) and "token" in str(exc).lower():
                    raise CredentialsError(_CREDENTIALS_HINT) from exc
                raise
            kind = found[0]
            if kind != "connection" or fallback is None:
                hint = (
                    self._connection_hint()
                    if kind == "connection"
                    else (f" {solver!r}" if solver is not None else "")
                )
                raise _service_error("dwave", kind, exc, hint) from exc
            child, solver_id = None, "unreachable"
            reason = _describe(exc)
        super().__init__(
            child,
            solver_id=solver_id,
            chain_strength=chain_strength,
            annealing_time=annealing_time,
            num_reads=num_reads,
            embedding_seed=embedding_seed,
            fallback=fallback,
            fallback_options=fallback_options,
            label="dwave",
        )
        if child is None:  # warned once here; the solves then go quietly to the fallback
            self._switch_to_fallback(f"at start-up: {reason}")

    def _connection_hint(self) -> str:
        return (
            f" within timeout={self.timeout:g}s, connect_timeout={self.connect_timeout:g}s; "
            "raise annealer.timeout for a slow link"
        )


class MockDWaveBackend(QPUBackend):
    """``"mock-dwave"``: :class:`QPUBackend` over dwave-system's offline ``MockDWaveSampler``.

    The mock has the real Pegasus working graph, so embedding, chains, chain breaks and
    unembedding run exactly as for ``"dwave"``; the physics is replaced by a classical solver on
    the embedded problem (tabu search by default; simulated annealing with single-qubit moves
    rarely reaches the optimum through rigid chains), seeded per call, so runs are reproducible.

    Args:
        topology_type: ``"pegasus"`` (default; the 128-qubit Chimera default of the mock cannot
            embed dense 20-variable problems), ``"chimera"`` or ``"zephyr"``.
        topology_shape: Mock graph shape (``None``: the mock's default, Pegasus P3 with a
            24-variable largest clique).
        substitute: Solver of the embedded problem: ``"tabu"`` (default) or ``"neal"``.
        num_sweeps: Sweeps per read when ``substitute="neal"``.
        **options: See :class:`QPUBackend`.
    """

    _run_keys = ("num_reads", "chain_strength", "annealing_time", "seed")

    def __init__(
        self,
        topology_type: str = "pegasus",
        topology_shape: list[int] | None = None,
        *,
        substitute: str = "tabu",
        num_sweeps: int = 1000,
        chain_strength: float | None = None,
        annealing_time: float | None = None,
        num_reads: int = 20,
        embedding_seed: int = 0,
        fallback: str | None = None,
        fallback_options: dict[str, Any] | None = None,
    ) -> None:
        dsys, _ = _import_dwave()
        from dwave.samplers import SimulatedAnnealingSampler, TabuSampler
        from dwave.system.testing import MockDWaveSampler

        from qsgd.samplers.dimod_backends import ising_beta_range

        _check_positive("num_sweeps", num_sweeps, integer=True)
        if topology_type not in ("pegasus", "chimera", "zephyr"):
            raise ConfigError(
                f"topology_type must be 'pegasus', 'chimera' or 'zephyr' (got {topology_type!r})"
            )
        if substitute == "tabu":
            sub: dimod.Sampler = TabuSampler()

            def sub_kwargs(bqm: dimod.BinaryQuadraticModel, seed: int | None) -> dict[str, Any]:
                return {"num_restarts": 1, "timeout": 1000, "seed": seed}

        elif substitute == "neal":
            sub = SimulatedAnnealingSampler()

            def sub_kwargs(bqm: dimod.BinaryQuadraticModel, seed: int | None) -> dict[str, Any]:
                return {"num_sweeps": num_sweeps, "seed": seed, "beta_range": ising_beta_range(bqm)}

        else:
            raise ConfigError(f"substitute must be 'tabu' or 'neal' (got {substitute!r})")

        class _SeededMock(MockDWaveSampler):
            """The mock with a per-call ``seed`` for its substitute solver."""

            def sample(self, bqm, seed=None, **kwargs):  # type: ignore[override]
                kept = {k: v for k, v in kwargs.items() if k in self.mocked_parameters}
                self.substitute_kwargs = sub_kwargs(bqm, seed)
                return super().sample(bqm, **kept)

        child = _SeededMock(
            topology_type=topology_type,
            topology_shape=topology_shape,
            substitute_sampler=sub,
            parameter_warnings=False,
        )
        shape = child.properties["topology"]["shape"]
        super().__init__(
            child,
            solver_id=f"mock-{topology_type}-{'x'.join(map(str, shape))}",
            chain_strength=chain_strength,
            annealing_time=annealing_time,
            num_reads=num_reads,
            embedding_seed=embedding_seed,
            fallback=fallback,
            fallback_options=fallback_options,
            label="mock-dwave",
        )

    def _child_kwargs(self, kw: dict[str, Any]) -> dict[str, Any]:
        out = super()._child_kwargs(kw)
        out["seed"] = kw.get("seed")
        return out
