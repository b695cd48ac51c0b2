"""QPU backends: ``"dwave"`` (a real D-Wave QPU) and ``"mock-dwave"`` (the same code path offline).

Per-neuron problems of a layer have the same dense graph at every step, so one clique embedding
is computed per (working graph, problem size, embedding seed) and reused from memory and disk
(:mod:`qsgd.samplers.embedding`; its names are re-exported here). Samples are unembedded by dwave-system's ``FixedEmbeddingComposite``
with broken chains resolved by majority vote (never averaged into fractional spins); the mean
``chain_break_fraction`` is reported in ``SampleSet.info``.

Credentials are read only by dwave-cloud-client's own configuration chain (config file, or the
``DWAVE_API_TOKEN`` environment variable); qsgd never takes a token argument.

dwave-system is the optional extra ``dwave``: it is imported lazily, and its absence raises
:class:`~qsgd.errors.BackendUnavailableError` naming the install command.

Failures are told apart by exception type (:func:`classify_qpu_failure`, in
:mod:`qsgd.samplers.qpu_failures`). Only a connection
failure (timeout, refused or reset connection, DNS failure, polling timeout) is answered by a
configured ``fallback``; the fallback then solves every later problem of that backend object,
one warning is logged, and each result says ``info["solved_by"] = <fallback>``. An invalid
token (:class:`~qsgd.errors.QPUAuthenticationError`), an unknown solver
(:class:`~qsgd.errors.UnknownSolverError`) and a solver failure
(:class:`~qsgd.errors.SolverFailureError`) are raised even with a fallback. Every wait on the
QPU service is bounded by ``timeout``/``connect_timeout`` (see :class:`DWaveBackend`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import dimod
import numpy as np

from qsgd.checks import positive_int, positive_number
from qsgd.errors import ConfigError, CredentialsError
from qsgd.samplers.base import Sampler, check_options
from qsgd.samplers.embedding import (  # noqa: F401 - re-exported: the public import path
    CACHE_ENV,
    Embedding,
    _import_dwave,
    clear_embedding_cache,
    clique_embedding,
    disk_cache_info,
    embedding_cache_dir,
    embedding_cache_info,
    embedding_pack,
    graph_key_of,
    largest_clique_size,
    working_graph_key,
)
from qsgd.samplers.qpu_failures import (
    FAILURE_KINDS,
    classify_qpu_failure,
    describe_failure,
    qpu_access_seconds,
    service_error,
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

_CREDENTIALS_HINT = (
    "no D-Wave API token found: run `dwave config create` (writes the cloud-client config file) "
    "or set the DWAVE_API_TOKEN environment variable; qsgd never takes tokens in its own configs"
)


class QPUBackend(Sampler):
    """A structured QPU-like sampler behind a cached clique embedding.

    Args:
        child: A structured dimod sampler (``DWaveSampler`` or ``MockDWaveSampler``); ``None``
            when the QPU could not be reached and ``fallback`` takes over.
        solver_id: Cache key of the child's graph.
        embedding_seed: Seed of the clique-embedding search.
        fallback: Backend name (e.g. ``"neal"``) that solves the problems when the QPU cannot
            be reached (a connection failure: timeout, refused/reset connection, DNS failure),
            or ``None``. After the first connection failure every later problem of this
            backend object goes to the fallback (no further waits on a dead endpoint), and one
            warning is logged. Authentication failures, unknown solvers and solver failures are
            raised even with a fallback (see :func:`classify_qpu_failure`).
        fallback_options: Constructor options of the fallback backend.
        label: Backend name used in messages and in ``info["solved_by"]``.

    Run settings (keywords of ``sample``/``sample_batch``, listed in ``parameters``):
    ``num_reads`` (default :attr:`run_defaults`), ``chain_strength`` (absolute; ``None``:
    dwave-system's ``uniform_torque_compensation``, prefactor 1.414, of each problem) and
    ``annealing_time`` (microseconds; ``None``: the solver's default).

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
    #: Run settings used when ``sample`` is not given them.
    run_defaults: dict[str, Any] = {"num_reads": 100}

    def __init__(
        self,
        child: dimod.Sampler | None,
        *,
        solver_id: str,
        embedding_seed: int = 0,
        fallback: str | None = None,
        fallback_options: dict[str, Any] | None = None,
        label: str = "dwave",
    ) -> None:
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
        self.defaults: dict[str, Any] = dict(self.run_defaults)
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
        check_options(kwargs, self.parameters, backend=self.label, kind="run option")
        kw = {**self.defaults, **kwargs}
        _check_positive("num_reads", kw["num_reads"], integer=True)
        for key in ("chain_strength", "annealing_time"):
            if kw.get(key) is not None:
                _check_positive(key, kw[key])
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
                raise service_error(self.label, kind, exc, hint) from exc
            self._switch_to_fallback(describe_failure(exc))
            return self._run_fallback(bqm, kw)
        if relabel:
            ss = ss.relabel_variables(dict(enumerate(labels)), inplace=False)
        info = _qpu_info(ss, emb, float(chain_strength), hit, self.label)
        out = dimod.SampleSet(ss.record, ss.variables, info, ss.vartype)
        if bqm.vartype is not out.vartype:  # sampled as SPIN; same energies in the bqm's vartype
            out = out.change_vartype(bqm.vartype, inplace=False)
        return out


def _qpu_info(
    ss: dimod.SampleSet, emb: Embedding, chain_strength: float, hit: bool, label: str
) -> dict[str, Any]:
    """The ``info`` of one QPU call: its cost, chain breaks and embedding figures."""
    cbf = np.asarray(ss.record.chain_break_fraction, dtype=np.float64)
    occ = np.asarray(ss.record.num_occurrences, dtype=np.float64)
    chain_lengths = np.fromiter((len(c) for c in emb.values()), dtype=np.int64, count=len(emb))
    info = {k: v for k, v in ss.info.items() if k in ("timing", "problem_id")}
    info.update(
        qpu_calls=1,
        qpu_access_time=qpu_access_seconds(ss.info),
        chain_break_fraction=float(np.sum(cbf * occ) / np.sum(occ)),
        chain_strength=float(chain_strength),
        embedding_cache_hit=bool(hit),
        num_qubits=int(chain_lengths.sum()),
        max_chain_length=int(chain_lengths.max()),
        solved_by=label,
    )
    return info


def _check_positive(name: str, value: Any, *, integer: bool = False) -> None:
    (positive_int if integer else positive_number)(name, value)


DEFAULT_TIMEOUT = 60.0
"""Seconds ``"dwave"`` waits for an answer: per HTTP request, and for a problem's result."""

DEFAULT_CONNECT_TIMEOUT = 10.0
"""Seconds the ``"dwave"`` backend waits to open a connection to the QPU service."""

DEFAULT_HTTP_RETRIES = 1
"""Retries of a failed request (cloud-client ``http_retry_total``; its own default is 10)."""

_TIMEOUT_KEYS = ("request_timeout", "polling_timeout")


def _client_config(
    client_config: dict[str, Any] | None, solver: Any, timeout: float, connect_timeout: float
) -> dict[str, Any]:
    """The cloud-client keywords of ``DWaveSampler``: the user's, with every wait bounded.

    Raises:
        ConfigError: ``token``, ``request_timeout`` or ``polling_timeout`` in ``client_config``.
    """
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
        request_timeout=(connect_timeout, timeout),
        polling_timeout=timeout,
        # the server holds a long poll open this long; it must end before the read timeout
        poll_wait_time=min(30, int(timeout // 2)),
    )
    config.setdefault("http_retry_total", DEFAULT_HTTP_RETRIES)
    if solver is not None:
        config["solver"] = solver
    return config


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
        config = _client_config(client_config, solver, self.timeout, self.connect_timeout)
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
                raise service_error("dwave", kind, exc, hint) from exc
            child, solver_id = None, "unreachable"
            reason = describe_failure(exc)
        super().__init__(
            child,
            solver_id=solver_id,
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
    run_defaults: dict[str, Any] = {"num_reads": 20}

    def __init__(
        self,
        topology_type: str = "pegasus",
        topology_shape: list[int] | None = None,
        *,
        substitute: str = "tabu",
        num_sweeps: int = 1000,
        embedding_seed: int = 0,
        fallback: str | None = None,
        fallback_options: dict[str, Any] | None = None,
    ) -> None:
        _import_dwave()
        _check_positive("num_sweeps", num_sweeps, integer=True)
        if topology_type not in ("pegasus", "chimera", "zephyr"):
            raise ConfigError(
                f"topology_type must be 'pegasus', 'chimera' or 'zephyr' (got {topology_type!r})"
            )
        from qsgd.samplers.mock_chip import Substitute, seeded_mock_class

        child = seeded_mock_class()(
            topology_type=topology_type,
            topology_shape=topology_shape,
            substitute_sampler=Substitute(substitute, num_sweeps),
            parameter_warnings=False,
        )
        shape = child.properties["topology"]["shape"]
        super().__init__(
            child,
            solver_id=f"mock-{topology_type}-{'x'.join(map(str, shape))}",
            embedding_seed=embedding_seed,
            fallback=fallback,
            fallback_options=fallback_options,
            label="mock-dwave",
        )

    def _child_kwargs(self, kw: dict[str, Any]) -> dict[str, Any]:
        out = super()._child_kwargs(kw)
        out["seed"] = kw.get("seed")
        return out
