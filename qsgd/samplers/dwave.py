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
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dimod
import numpy as np

from qsgd.errors import (
    BackendError,
    BackendUnavailableError,
    ConfigError,
    CredentialsError,
    ProblemTooLargeError,
)

__all__ = [
    "QPUBackend",
    "DWaveBackend",
    "MockDWaveBackend",
    "clique_embedding",
    "embedding_cache_info",
    "clear_embedding_cache",
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


def _is_unreachable(exc: BaseException) -> bool:
    """True for network/solver-availability failures (``RequestTimeout`` is an ``OSError``)."""
    if isinstance(exc, OSError):
        return True
    try:
        from dwave.cloud import exceptions as cloud_exc
    except ModuleNotFoundError:  # pragma: no cover - dwave-system pulls the cloud client
        return False
    types = tuple(
        getattr(cloud_exc, name)
        for name in ("SolverError", "SAPIError", "Timeout", "PollingTimeout", "SolverOfflineError")
        if hasattr(cloud_exc, name)
    )
    return isinstance(exc, types)


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
        fallback: Backend name used when the QPU is unreachable (e.g. ``"neal"``), or ``None``.
        fallback_options: Constructor options of the fallback backend.
        label: Backend name used in messages.

    Shape:
        ``sample`` returns one SampleSet over the BQM's variables; ``info`` holds
        ``chain_break_fraction`` (mean over reads), ``chain_strength``, ``embedding_cache_hit``,
        ``num_qubits`` and ``max_chain_length``.
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
        return {"solver_id": self.solver_id, "defaults": dict(self.defaults)}

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

    def _run_fallback(self, bqm: dimod.BinaryQuadraticModel, kw: dict[str, Any], why: str):
        from qsgd.samplers.registry import get_sampler

        logger.warning(
            "QPU backend %r unreachable (%s): solving with fallback backend %r instead",
            self.label,
            why,
            self.fallback,
        )
        if self._fallback_sampler is None:
            self._fallback_sampler = get_sampler(self.fallback, **self.fallback_options)
        accepted = set(self._fallback_sampler.parameters)
        ss = self._fallback_sampler.sample(bqm, **{k: v for k, v in kw.items() if k in accepted})
        ss.info["fallback"] = self.fallback
        return ss

    def sample(self, bqm: dimod.BinaryQuadraticModel, **kwargs: Any) -> dimod.SampleSet:
        """Embed ``bqm`` with the cached clique embedding, sample, and unembed by majority vote.

        Raises:
            ConfigError: unknown run option.
            ProblemTooLargeError: the problem does not fit the chip.
            BackendError: the QPU is unreachable and no ``fallback`` is set.
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
            return self._run_fallback(bqm, kw, "no connection at start-up")
        n = bqm.num_variables
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
            if not _is_unreachable(exc):
                raise
            if self.fallback is None:
                raise BackendError(
                    f"backend {self.label!r}: QPU unreachable ({type(exc).__name__}: {exc}); "
                    "set fallback='neal' to continue on a classical backend"
                ) from exc
            return self._run_fallback(bqm, kw, f"{type(exc).__name__}: {exc}")
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
        )
        return dimod.SampleSet(ss.record, ss.variables, info, ss.vartype)


def _check_positive(name: str, value: Any, *, integer: bool = False) -> None:
    kinds = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    if isinstance(value, bool) or not isinstance(value, kinds) or not value > 0:
        what = "a positive int" if integer else "a positive number"
        raise ConfigError(f"{name} must be {what} (got {value!r})")


class DWaveBackend(QPUBackend):
    """``"dwave"``: a real D-Wave QPU through dwave-system's ``DWaveSampler``.

    Args:
        solver: Solver name or feature filter passed to ``DWaveSampler`` (``None``: client default).
        client_config: Further cloud-client options (``region``, ``endpoint``, ``request_timeout``,
            ...); a ``token`` key is refused, credentials come only from the client's own config.
        fallback: Backend used (with a loud ``logging.warning``) when the QPU is unreachable.
        **options: See :class:`QPUBackend` (chain_strength, annealing_time, num_reads,
            embedding_seed, fallback_options).

    Raises:
        BackendUnavailableError: dwave-system is not installed.
        CredentialsError: no API token configured; says how to configure one.
        BackendError: the QPU is unreachable and no ``fallback`` is set.
    """

    def __init__(
        self,
        solver: str | dict | None = None,
        client_config: dict[str, Any] | None = None,
        *,
        chain_strength: float | None = None,
        annealing_time: float | None = None,
        num_reads: int = 100,
        embedding_seed: int = 0,
        fallback: str | None = None,
        fallback_options: dict[str, Any] | None = None,
        connect: Callable[..., dimod.Sampler] | None = None,
    ) -> None:
        dsys, _ = _import_dwave()
        config = dict(client_config or {})
        if "token" in config:
            raise ConfigError(
                "client_config must not contain 'token': " + _CREDENTIALS_HINT.split(": ", 1)[1]
            )
        if solver is not None:
            config["solver"] = solver
        connect = connect or dsys.DWaveSampler
        child: dimod.Sampler | None
        try:
            child = connect(**config)
            solver_id = str(getattr(getattr(child, "solver", None), "name", "dwave"))
        except ValueError as exc:
            if "token" in str(exc).lower():
                raise CredentialsError(_CREDENTIALS_HINT) from exc
            raise
        except Exception as exc:
            if not _is_unreachable(exc):
                raise
            if fallback is None:
                raise BackendError(
                    f"backend 'dwave': QPU unreachable ({type(exc).__name__}: {exc}); "
                    "set fallback='neal' to continue on a classical backend"
                ) from exc
            logger.warning(
                "backend 'dwave': QPU unreachable (%s: %s); every solve will use fallback %r",
                type(exc).__name__,
                exc,
                fallback,
            )
            child, solver_id = None, "unreachable"
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
