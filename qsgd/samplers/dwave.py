"""QPU backends: ``"dwave"`` (a real D-Wave QPU) and ``"mock-dwave"`` (the same code path offline).

Per-neuron problems of a layer have the same dense graph at every step, so one clique embedding
is computed per (working graph, problem size, embedding seed) with ``minorminer.busclique`` and
reused: from memory, and from an on-disk cache (:func:`embedding_cache_dir`: ``$QSGD_CACHE_DIR``
or ``~/.cache/qsgd/embeddings``, atomic writes) so new processes and Dask workers skip the
search. The cache key is a hash of the working graph's qubits and couplers
(:func:`working_graph_key`), computed once per backend object; the chip graph is built only
when an embedding must be searched. Samples are unembedded by dwave-system's ``FixedEmbeddingComposite``
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

import contextlib
import errno
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
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
    "embedding_pack",
    "embedding_cache_info",
    "embedding_cache_dir",
    "disk_cache_info",
    "clear_embedding_cache",
    "working_graph_key",
    "graph_key_of",
    "CACHE_ENV",
    "classify_qpu_failure",
    "QPU_BACKENDS",
    "qpu_access_seconds",
    "FAILURE_KINDS",
    "DEFAULT_TIMEOUT",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_HTTP_RETRIES",
]

logger = logging.getLogger(__name__)

#: Registry names of the QPU backends (never a ``fallback``).
QPU_BACKENDS = ("dwave", "mock-dwave", "dwave-packed", "mock-dwave-packed")

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


Embedding = dict[int, tuple[int, ...]]


@dataclass
class _CacheStats:
    hits: int = 0
    misses: int = 0
    disk_hits: int = 0
    disk_writes: int = 0


# (working-graph key, n, seed) -> (disjoint clique embeddings found so far, search exhausted)
_PACKS: dict[tuple[str, int, int], tuple[list[Embedding], bool]] = {}
_STATS = _CacheStats()
_CACHE_VERSION = 1
_DISK_WARNED = False

#: Environment variable naming the cache folder (``off`` or empty: no disk cache).
CACHE_ENV = "QSGD_CACHE_DIR"


def embedding_cache_dir() -> Path | None:
    """Folder of the on-disk embedding cache, or ``None`` when it is switched off.

    ``$QSGD_CACHE_DIR/embeddings`` when :data:`CACHE_ENV` is set (``off`` or an empty value
    switches the disk cache off), else ``$XDG_CACHE_HOME/qsgd/embeddings``, else
    ``~/.cache/qsgd/embeddings``.
    """
    value = os.environ.get(CACHE_ENV)
    if value is not None:
        if value.strip().lower() in ("", "off", "none", "0"):
            return None
        return Path(value).expanduser() / "embeddings"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "qsgd" / "embeddings"


def working_graph_key(nodes: Any, edges: Any) -> str:
    """A hash of a working graph: SHA-256 of its sorted qubits and sorted couplers.

    Two solvers (or a solver before and after a qubit was taken offline) get the same key only
    when their working graphs are identical, so a cached embedding is valid wherever its key
    matches.
    """
    h = hashlib.sha256()
    h.update(np.asarray(sorted(int(q) for q in nodes), dtype=np.int64).tobytes())
    pairs = sorted((min(int(u), int(v)), max(int(u), int(v))) for u, v in edges)
    h.update(np.asarray(pairs, dtype=np.int64).reshape(-1).tobytes())
    return h.hexdigest()


def graph_key_of(target: Any) -> str:
    """:func:`working_graph_key` of a structured sampler (``nodelist``/``edgelist``) or a graph."""
    if hasattr(target, "nodelist") and hasattr(target, "edgelist"):
        return working_graph_key(target.nodelist, target.edgelist)
    return working_graph_key(target.nodes, target.edges)


def embedding_cache_info() -> dict[str, int]:
    """Counters of the clique-embedding cache: ``hits``, ``misses`` (searches run) and ``size``."""
    return {"hits": _STATS.hits, "misses": _STATS.misses, "size": len(_PACKS)}


def disk_cache_info() -> dict[str, Any]:
    """The disk cache's folder (``None``: off), and the loads and writes of this process."""
    folder = embedding_cache_dir()
    return {
        "dir": None if folder is None else str(folder),
        "disk_hits": _STATS.disk_hits,
        "disk_writes": _STATS.disk_writes,
    }


def clear_embedding_cache() -> None:
    """Forget all embeddings held in memory and reset the counters (the disk cache stays)."""
    _PACKS.clear()
    _LARGEST.clear()
    _STATS.hits = _STATS.misses = _STATS.disk_hits = _STATS.disk_writes = 0


def _disk_path(key: tuple[str, int, int]) -> Path | None:
    folder = embedding_cache_dir()
    if folder is None:
        return None
    graph, n, seed = key
    return folder / f"clique-{graph[:32]}-n{n}-s{seed}.json"


def _disk_load(key: tuple[str, int, int]) -> tuple[list[Embedding], bool] | None:
    """The cached packing of ``key`` from disk; ``None`` if absent, unreadable or not ours."""
    path = _disk_path(key)
    if path is None or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        if (data.get("version"), data.get("graph"), data.get("n"), data.get("seed")) != (
            _CACHE_VERSION,
            key[0],
            key[1],
            key[2],
        ):
            return None
        embs = [
            {v: tuple(int(q) for q in chain) for v, chain in enumerate(e)}
            for e in data["embeddings"]
        ]
        if any(len(e) != key[1] or not all(e.values()) for e in embs):
            return None
        return embs, bool(data["exhausted"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.debug("ignoring unreadable embedding cache file %s: %s", path, exc)
        return None


def _disk_save(key: tuple[str, int, int], embs: list[Embedding], exhausted: bool) -> None:
    """Write the packing of ``key`` atomically (temporary file, then ``os.replace``)."""
    global _DISK_WARNED
    path = _disk_path(key)
    if path is None:
        return
    data = {
        "version": _CACHE_VERSION,
        "graph": key[0],
        "n": key[1],
        "seed": key[2],
        "exhausted": bool(exhausted),
        "embeddings": [[list(e[v]) for v in range(key[1])] for e in embs],
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(data, fh)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        _STATS.disk_writes += 1
    except OSError as exc:  # a read-only home: work on without the disk cache
        if not _DISK_WARNED:
            _DISK_WARNED = True
            logger.warning(
                "cannot write the embedding cache %s (%s); embeddings are recomputed in every "
                "process (set %s to a writable folder, or to 'off')",
                path.parent,
                exc,
                CACHE_ENV,
            )


def embedding_pack(
    n: int,
    *,
    graph_key: str,
    graph: Any,
    seed: int = 0,
    max_problems: int | None = None,
) -> tuple[list[Embedding], bool]:
    """Disjoint clique embeddings of ``K_n`` on a working graph, from the cache when possible.

    The cache is keyed by ``(graph_key, n, seed)``: in memory, then on disk
    (:func:`embedding_cache_dir`), so a new process or a Dask worker reuses the search of an
    earlier one. ``graph`` is only built (called, when it is a callable) when the cached
    embeddings do not suffice, so a cache hit never rebuilds the chip graph.

    The search is greedy: ``minorminer.busclique.find_clique_embedding`` on the working graph,
    remove its qubits, repeat on the rest until ``max_problems`` are found or none fits. The
    first embedding is the one the single-problem path uses.

    Args:
        n: Spins per problem.
        graph_key: :func:`working_graph_key` of the working graph.
        graph: The working graph (a dwave-networkx graph), or a zero-argument callable building it.
        seed: Seed of the clique search.
        max_problems: Stop after this many (``None``: as many as fit).

    Returns:
        ``(embeddings, cache_hit)``; fewer than ``max_problems`` embeddings when no more fit.
    """
    key = (str(graph_key), int(n), int(seed))
    found, exhausted = _PACKS.get(key, ([], False))
    if not found and not exhausted:
        loaded = _disk_load(key)
        if loaded is not None:
            found, exhausted = loaded
            _PACKS[key] = loaded
            _STATS.disk_hits += 1
    if exhausted or (max_problems is not None and len(found) >= max_problems):
        _STATS.hits += 1
        return list(found[: max_problems or len(found)]), True
    _, busclique = _import_dwave()
    g = graph() if callable(graph) else graph
    g = g.copy()
    g.remove_nodes_from({q for emb in found for chain in emb.values() for q in chain})
    found = list(found)
    while max_problems is None or len(found) < max_problems:
        emb = busclique.find_clique_embedding(int(n), g, seed=int(seed), use_cache=False)
        if len(emb) != n:
            exhausted = True
            break
        emb = {int(v): tuple(int(q) for q in chain) for v, chain in emb.items()}
        found.append(emb)
        g.remove_nodes_from({q for chain in emb.values() for q in chain})
    _STATS.misses += 1
    _PACKS[key] = (found, exhausted)
    _disk_save(key, found, exhausted)
    return list(found), False


_LARGEST: dict[str, int] = {}


def largest_clique_size(graph_key: str, graph: Any) -> int:
    """Size of the largest dense problem that embeds on a working graph (cached like embeddings).

    Args:
        graph_key: :func:`working_graph_key` of the graph.
        graph: The working graph, or a zero-argument callable building it (called on a miss).
    """
    if graph_key in _LARGEST:
        return _LARGEST[graph_key]
    folder = embedding_cache_dir()
    path = None if folder is None else folder / f"largest-{graph_key[:32]}.json"
    if path is not None and path.is_file():
        try:
            data = json.loads(path.read_text())
            if data.get("graph") == graph_key and int(data["largest"]) >= 0:
                _LARGEST[graph_key] = int(data["largest"])
                return _LARGEST[graph_key]
        except (OSError, ValueError, KeyError, TypeError):
            pass
    _, busclique = _import_dwave()
    g = graph() if callable(graph) else graph
    size = len(busclique.busgraph_cache(g).largest_clique())
    _LARGEST[graph_key] = size
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
            with os.fdopen(fd, "w") as fh:
                json.dump({"version": _CACHE_VERSION, "graph": graph_key, "largest": size}, fh)
            os.replace(tmp, path)
        except OSError:
            pass  # _disk_save warns once about an unwritable folder
    return size


def clique_embedding(
    n: int,
    target_graph: Any,
    solver_id: str | None = None,
    seed: int = 0,
    *,
    graph_key: str | None = None,
) -> tuple[Embedding, bool]:
    """A clique embedding of spins ``0..n-1`` into ``target_graph``, cached per (graph, n, seed).

    Args:
        n: Number of logical spins.
        target_graph: The QPU working graph (a dwave-networkx graph with topology attributes),
            or a zero-argument callable building it (called only on a cache miss).
        solver_id: Named in the error message (the cache is keyed by the graph, not the name).
        seed: Seed of minorminer's clique search.
        graph_key: :func:`working_graph_key` of the graph (computed from ``target_graph``
            when not given).

    Returns:
        ``(embedding, cache_hit)``; ``embedding[i]`` is the chain of qubits of spin ``i``.

    Raises:
        ProblemTooLargeError: no clique of size ``n`` fits; names the largest that does and
            suggests ``max_block_vars``.
    """
    if graph_key is None:
        target_graph = target_graph() if callable(target_graph) else target_graph
        graph_key = graph_key_of(target_graph)
    embs, hit = embedding_pack(
        n, graph_key=graph_key, graph=target_graph, seed=seed, max_problems=1
    )
    if not embs:
        _, busclique = _import_dwave()
        g = target_graph() if callable(target_graph) else target_graph
        largest = len(busclique.busgraph_cache(g).largest_clique())
        raise ProblemTooLargeError(
            f"a dense problem of {n} variables does not embed on solver {solver_id!r} "
            f"(largest clique embedding: {largest} variables); set max_block_vars <= {largest}"
        )
    return embs[0], hit


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
        ``embedding_cache_hit``, ``num_qubits``, ``max_chain_length``, ``qpu_calls`` (1) and
        ``qpu_access_time`` (seconds, from the solver's ``timing``; 0.0 when it reports none).
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

            if fallback not in available_backends() or fallback in QPU_BACKENDS:
                known = [b for b in available_backends() if b not in QPU_BACKENDS]
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
            self._max_vars = largest_clique_size(self.graph_key(), self.working_graph)
        return self._max_vars

    def graph_key(self) -> str:
        """:func:`working_graph_key` of the child's working graph (computed once per object)."""
        if getattr(self, "_graph_key", None) is None:
            self._graph_key = graph_key_of(self.child)
        return self._graph_key

    def working_graph(self) -> Any:
        """The child's working graph as a networkx graph (built once per object, when needed)."""
        if getattr(self, "_working_graph", None) is None:
            self._working_graph = self.child.to_networkx_graph()
        return self._working_graph

    def _composite(self, n: int) -> tuple[Any, bool, dict[int, tuple[int, ...]]]:
        dsys, _ = _import_dwave()
        emb, hit = clique_embedding(
            n,
            self.working_graph,  # built only on a cache miss
            self.solver_id,
            self.embedding_seed,
            graph_key=self.graph_key(),
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
            empty.info.update(
                chain_break_fraction=0.0,
                num_qubits=0,
                qpu_calls=0,
                qpu_access_time=0.0,
                solved_by=self.label,
            )
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
            qpu_calls=1,
            qpu_access_time=qpu_access_seconds(ss.info),
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
                parts = [set(c) for c in dimod.connected_components(bqm)]
                if len(parts) <= 1:
                    self.substitute_kwargs = sub_kwargs(bqm, seed)
                    return super().sample(bqm, **kept)
                return self._sample_parts(bqm, parts, seed, kept)

            def _sample_parts(self, bqm, parts, seed, kept):
                """Each connected part solved on its own, as a QPU anneals them in parallel.

                Several problems packed into one call are disjoint parts of one BQM; a
                classical substitute run on the union would spread its effort over all of them
                and do worse per problem than the hardware, which anneals every qubit at once.
                """
                from qsgd.samplers.registry import problem_seeds

                linear, (row, col, quad), _ = bqm.to_numpy_vectors(
                    variable_order=list(bqm.variables)
                )
                labels = list(bqm.variables)
                comp_of = np.empty(len(labels), dtype=np.int64)
                index = {v: i for i, v in enumerate(labels)}
                for c, part in enumerate(parts):
                    comp_of[[index[v] for v in part]] = c
                columns, blocks, info = [], [], None
                for c, part_seed in enumerate(problem_seeds(seed, len(parts))):
                    cols = np.flatnonzero(comp_of == c)
                    pos = np.full(len(labels), -1, dtype=np.int64)
                    pos[cols] = np.arange(len(cols))
                    keep = comp_of[row] == c
                    sub = dimod.BinaryQuadraticModel.from_numpy_vectors(
                        linear[cols],
                        (pos[row[keep]], pos[col[keep]], quad[keep]),
                        0.0,
                        bqm.vartype,
                        variable_order=[labels[i] for i in cols],
                    )
                    self.substitute_kwargs = sub_kwargs(sub, part_seed)
                    ss = super().sample(sub, **kept)
                    if info is None:
                        info = dict(ss.info)
                    rec = ss.record.sample
                    if np.any(ss.record.num_occurrences != 1):
                        rec = np.repeat(rec, ss.record.num_occurrences, axis=0)
                    blocks.append(rec[:, [ss.variables.index(labels[i]) for i in cols]])
                    columns.append(cols)
                reads = min(len(b) for b in blocks)
                arr = np.empty((reads, len(labels)), dtype=np.int8)
                for cols, block in zip(columns, blocks, strict=True):
                    arr[:, cols] = block[:reads]
                out = dimod.SampleSet.from_samples_bqm((arr, labels), bqm)
                out.info.update(info or {})
                return out

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
