"""Several independent problems per QPU call, submitted together and resolved together.

A QPU call has a fixed overhead (queue, programming, readout) that dwarfs the anneal, and a
per-neuron problem of fan-in ``n`` uses only a small part of a Pegasus chip.
:class:`PackedQPUSampler` places ``k`` problems on disjoint regions of the working graph,
submits them as one problem, and splits the samples back per problem. It is registered as the
backends ``"mock-dwave-packed"`` and ``"dwave-packed"``, chosen from a config with
``[annealer] pack = true`` (see :class:`qsgd.config.AnnealerConfig`) or from
``QPSBGD(backend="mock-dwave", backend_options={"pack": True})``.

1. **Packing.** :func:`pack_clique_embeddings` finds a clique embedding of ``K_n`` with
   ``minorminer.busclique`` in the working graph, removes its qubits, and repeats on the rest
   until no further clique fits (:func:`qsgd.samplers.dwave.embedding_pack`). The list is cached
   per (working-graph hash, ``n``, seed) in memory and on disk, so a chip is packed once per
   problem size, across processes.
2. **One call per group, each problem scaled on its own.** The problems of a call are embedded
   together (``dwave.embedding.embed_bqm``); then, as dwave-system's
   ``ParallelEmbeddingComposite.sample_multiple`` does, each problem's embedded fields and
   couplings (chains included) are scaled by their own factor to fill the solver's ``h_range``
   and ``j_range``, so a problem with small coefficients is not squeezed by a neighbour with
   large ones. The scaling changes no sample: energies are recomputed from the original batch.
   A check asserts that no coupler of the call joins qubits of two different problems.
3. **Asynchronous.** All calls of a batch are submitted first (a ``DWaveSampler`` returns at
   once, with the answer behind a future) and resolved afterwards, so their round trips overlap:
   ``k`` calls take about one latency, not ``k``. The wait for each answer is bounded by the
   backend's ``timeout``.
4. **Splitting.** Each problem is unembedded from the shared samples with its own chains
   (majority vote on broken chains, ties to +1), and its own chain-break fraction is reported.

Why not ``ParallelEmbeddingComposite`` itself: its ``sample_multiple`` resolves the answer
before returning (no overlap of calls), takes a fixed number of embeddings per composite, and
drops the per-problem chain-break fractions; its per-problem scaling is reproduced here.

Chain strength: the couplings of a layer's problems are shared (one ``J``), so
``uniform_torque_compensation`` (dwave-system's default, prefactor 1.414) gives every problem
of a batch the same value before the per-problem scaling.

Example:
    >>> from qsgd.samplers import get_sampler
    >>> packed = get_sampler("mock-dwave-packed", topology_shape=[16])   # doctest: +SKIP
    >>> packed.capacity(32)                                               # doctest: +SKIP
    25
"""

from __future__ import annotations

import inspect
import math
import time
from typing import Any

import dimod
import numpy as np

from qsgd.errors import ConfigError, ProblemTooLargeError
from qsgd.ising import IsingBatch
from qsgd.samplers.base import BatchResult, Sampler
from qsgd.samplers.dwave import DWaveBackend, MockDWaveBackend, QPUBackend
from qsgd.samplers.embedding import _PACKS as _PACK_STORE
from qsgd.samplers.embedding import clear_embedding_cache, embedding_pack, graph_key_of
from qsgd.samplers.packed_calls import (  # noqa: F401  (_scale_per_problem: re-exported)
    Embedding,
    _chain_strength,
    _check_positive_int,
    _child_settings,
    _couplers,
    _fit_reads,
    _joint_bqm,
    _owners,
    _resolve_shared,
    _scale_per_problem,
    _shared_call,
    _shared_results,
    _unembed,
)
from qsgd.samplers.qpu_failures import (
    classify_qpu_failure,
    describe_failure,
    qpu_access_seconds,
    service_error,
)
from qsgd.samplers.registry import solve_batch

__all__ = [
    "PackedQPUSampler",
    "pack_clique_embeddings",
    "packing_cache_info",
    "clear_packing_cache",
    "calls_per_layer",
    "packed_dwave",
    "packed_mock_dwave",
]


def packing_cache_info() -> dict[str, int]:
    """Number of cached packings (``size``) and of embeddings they hold (``embeddings``)."""
    return {
        "size": len(_PACK_STORE),
        "embeddings": sum(len(v[0]) for v in _PACK_STORE.values()),
    }


def clear_packing_cache() -> None:
    """Forget all packings held in memory (the same store as the single-problem embeddings)."""
    clear_embedding_cache()


def pack_clique_embeddings(
    n: int,
    target_graph: Any,
    *,
    max_problems: int | None = None,
    solver_id: str | None = None,
    seed: int = 0,
) -> list[Embedding]:
    """Disjoint clique embeddings of ``K_n`` on ``target_graph``, found greedily and cached.

    Args:
        n: Spins per problem.
        target_graph: The working graph (a dwave-networkx Pegasus/Chimera/Zephyr graph, possibly
            with missing qubits).
        max_problems: Stop after this many (``None``: as many as fit).
        solver_id: Unused by the cache (kept for callers; the key is the graph's hash).
        seed: Seed of the clique search.

    Returns:
        Embeddings ``{spin: chain}``, pairwise disjoint, the first one being the clique embedding
        of the whole graph. Fewer than ``max_problems`` when no more fit (possibly none).

    Raises:
        ConfigError: ``n`` or ``max_problems`` is not a positive int.
    """
    _check_positive_int("n", n)
    if max_problems is not None:
        _check_positive_int("max_problems", max_problems)
    embs, _ = embedding_pack(
        int(n),
        graph_key=graph_key_of(target_graph),
        graph=target_graph,
        seed=int(seed),
        max_problems=max_problems,
    )
    return embs


def calls_per_layer(num_problems: int, problems_per_call: int) -> int:
    """QPU calls needed for ``num_problems`` problems at ``problems_per_call`` per call.

    Example:
        >>> calls_per_layer(128, 25)
        6
    """
    _check_positive_int("num_problems", num_problems)
    _check_positive_int("problems_per_call", problems_per_call)
    return math.ceil(num_problems / problems_per_call)


class PackedQPUSampler(Sampler, dimod.ComposedSampler):
    """Composite: solve a batch of problems with several problems per call of a QPU backend.

    Registered as the composite ``"pack"`` (:func:`qsgd.samplers.registry.compose`); its one
    child is the QPU backend.

    Args:
        backend: A :class:`~qsgd.samplers.dwave.QPUBackend` (``"dwave"`` or ``"mock-dwave"``)
            whose structured child sampler receives the packed problems.
        problems_per_call: Problems per call (``None``: as many as fit). More than fit raises
            :class:`ProblemTooLargeError` at solve time, naming how many fit.

    ``sample_batch`` run settings: ``num_reads``, ``chain_strength``, ``annealing_time`` (default:
    the backend's), ``seed`` (when the backend takes one; call ``c`` gets the ``c``-th child
    seed) and ``problems_per_call`` (overrides the constructor's).

    Shape:
        ``sample_batch`` returns ``samples`` ``(m, reads, n)`` int8, ``energies`` ``(m, reads)``
        and ``info["chain_break_fractions"]`` ``(m,)``.
    """

    def __init__(self, backend: QPUBackend, *, problems_per_call: int | None = None) -> None:
        if not isinstance(backend, QPUBackend):
            raise TypeError(
                f"backend must be a QPUBackend ('dwave' or 'mock-dwave') (got {type(backend).__name__})"
            )
        if problems_per_call is not None:
            _check_positive_int("problems_per_call", problems_per_call)
        self.backend = backend
        self.problems_per_call = problems_per_call
        self.backend_name = f"{backend.label}-packed"

    @property
    def children(self) -> list[dimod.Sampler]:
        return [self.backend]

    @property
    def parameters(self) -> dict[str, list]:
        return {**self.backend.parameters, "problems_per_call": []}

    @property
    def properties(self) -> dict[str, Any]:
        return {**self.backend.properties, "packed": True}

    def embeddings(self, n: int, max_problems: int | None = None) -> list[Embedding]:
        """Disjoint embeddings of ``K_n`` on this backend's chip (cached; no graph built on a hit)."""
        _check_positive_int("n", n)
        if max_problems is not None:
            _check_positive_int("max_problems", max_problems)
        embs, _ = embedding_pack(
            int(n),
            graph_key=self.backend.graph_key(),
            graph=self.backend.working_graph,
            seed=self.backend.embedding_seed,
            max_problems=max_problems,
        )
        return embs

    def capacity(self, n: int) -> int:
        """How many problems of ``n`` dense spins fit in one call (0: not even one)."""
        return len(self.embeddings(n))

    def sample(self, bqm: dimod.BinaryQuadraticModel, **parameters: Any) -> dimod.SampleSet:
        """One problem: the backend's single-problem path (recorded under this sampler's name)."""
        parameters.pop("problems_per_call", None)
        ss = self.backend.sample(bqm, **parameters)
        if ss.info.get("solved_by") == self.backend.label:
            ss.info["solved_by"] = self.backend_name
        return ss

    def _per_call(self, n: int, wanted: int | None, m: int) -> tuple[int, list[Embedding]]:
        if wanted is None:  # search no more embeddings than the batch can use
            embs = self.embeddings(n, max_problems=m)
            k = min(len(embs), m)
        else:
            _check_positive_int("problems_per_call", wanted)
            embs = self.embeddings(n, max_problems=wanted)
            k = wanted
            if len(embs) < wanted:
                fit = self.capacity(n)
                raise ProblemTooLargeError(
                    f"problems_per_call={wanted} problems of {n} variables do not fit on solver "
                    f"{self.backend.solver_id!r}: at most {fit} fit per call; "
                    f"set problems_per_call <= {fit}"
                )
        if k == 0:
            raise ProblemTooLargeError(
                f"a dense problem of {n} variables does not embed on solver "
                f"{self.backend.solver_id!r}; set max_block_vars to split it"
            )
        return k, embs[:k]

    def _run_settings(
        self, num_reads: Any, chain_strength: Any, annealing_time: Any
    ) -> dict[str, Any]:
        """The backend's defaults overridden by the given (not None) run settings.

        Raises:
            ConfigError: ``num_reads`` is not a positive int.
        """
        kw = dict(self.backend.defaults)
        for name, value in (
            ("num_reads", num_reads),
            ("chain_strength", chain_strength),
            ("annealing_time", annealing_time),
        ):
            if value is not None:
                kw[name] = value
        _check_positive_int("num_reads", kw["num_reads"])
        return kw

    def _fall_back_on(self, exc: Exception) -> bool:
        """Whether a failed batch goes to the backend's fallback (switched to now).

        False: ``exc`` is no QPU failure (the caller re-raises it).

        Raises:
            QPUUnreachableError, QPUAuthenticationError, UnknownSolverError,
            SolverFailureError: a QPU failure with no fallback to take it.
        """
        found = classify_qpu_failure(exc)
        if found is None:
            return False
        kind = found[0]
        if kind != "connection" or self.backend.fallback is None:
            hint = self.backend._connection_hint() if kind == "connection" else ""
            raise service_error(self.backend.label, kind, exc, hint) from exc
        self.backend._switch_to_fallback(describe_failure(exc))
        return True

    def _fallback_batch(
        self, batch: IsingBatch, kw: dict[str, Any], seed: int | None
    ) -> BatchResult:
        opts = {k: v for k, v in kw.items() if k in self.backend.parameters}
        if seed is not None and "seed" in self.backend.parameters:
            opts["seed"] = seed
        res = solve_batch(self.backend, batch, **opts)
        res.info.update(calls=0, qpu_calls=0, qpu_access_time=0.0, problems_per_call=0)
        return res

    def _calls(
        self,
        batch: IsingBatch,
        embs: list[Embedding],
        cs: float,
        kw: dict[str, Any],
        seeds: list[int | None],
    ) -> tuple[np.ndarray, np.ndarray, float, int, float]:
        """Submit one call per group of ``len(embs)`` problems, then resolve them all.

        Returns:
            ``samples`` ``(m, reads, n)`` (unsorted), per-problem chain-break fractions ``(m,)``,
            the summed QPU access time, the qubits of the largest call and the time the last
            call was submitted.
        """
        from dwave.embedding import embed_bqm

        m, n, k = batch.num_problems, batch.num_variables, len(embs)
        child, h_bound, j_bound, reads, child_kw, seeded = _child_settings(self.backend, kw)
        slot_of, var_of = _owners(embs)
        pending: list[tuple[np.ndarray, Any]] = []
        max_qubits = 0
        for c, start in enumerate(range(0, m, k)):  # submit every call first ...
            idx = np.arange(start, min(start + k, m))
            kk = len(idx)
            embedding = {j * n + v: chain for j in range(kk) for v, chain in embs[j].items()}
            source = _joint_bqm(batch, idx)
            target = embed_bqm(source, embedding, child.adjacency, chain_strength=cs)
            target = _scale_per_problem(target, slot_of, kk, h_bound, j_bound)
            max_qubits = max(max_qubits, target.num_variables)
            extra = {"seed": seeds[c]} if seeded else {}
            pending.append((idx, child.sample(target, **child_kw, **extra)))
        t_resolve = time.perf_counter()
        samples = np.empty((m, reads, n), dtype=np.int8)
        cbf = np.empty(m)
        access = 0.0
        for idx, response in pending:  # ... then resolve them together
            response.resolve()
            access += qpu_access_seconds(response.info)
            spins, broken = _unembed(response, slot_of, var_of, len(idx), n)
            for j, p in enumerate(idx):  # one assignment per problem of the call
                samples[p] = _fit_reads(spins[:, j, :], reads)
                cbf[p] = float(broken[:, j].mean()) if len(broken) else 0.0
        return samples, cbf, access, max_qubits, t_resolve

    def sample_batch(
        self,
        batch: IsingBatch,
        *,
        num_reads: int | None = None,
        chain_strength: float | None = None,
        annealing_time: float | None = None,
        seed: int | None = None,
        problems_per_call: int | None = None,
    ) -> BatchResult:
        """Solve the ``m`` problems of ``batch`` in ``ceil(m / k)`` calls of ``k`` problems.

        All calls are submitted before any is resolved (see the module docstring).

        Returns:
            Samples sorted by energy per problem, energies recomputed from ``batch``; ``info``
            with ``calls`` and ``qpu_calls`` (the same number), ``problems_per_call``,
            ``qpu_access_time`` (seconds, summed over calls from the solver's ``timing``; 0.0
            when it reports none), ``chain_break_fraction`` (mean over problems),
            ``chain_break_fractions`` (per problem, ``(m,)``), ``chain_strength``,
            ``num_qubits`` (largest call), ``submit_time``/``resolve_time`` and ``wall_time``.

        Raises:
            ProblemTooLargeError: ``problems_per_call`` more than fit (says how many fit), or one
                problem does not fit.
            ConfigError: a bad run setting.
            QPUUnreachableError, QPUAuthenticationError, UnknownSolverError,
            SolverFailureError: as for :class:`~qsgd.samplers.dwave.QPUBackend` (a connection
                failure goes to the backend's ``fallback`` when one is set).
        """
        from qsgd.samplers.base import problem_seeds

        t0 = time.perf_counter()
        if not isinstance(batch, IsingBatch):
            raise TypeError(f"batch must be an IsingBatch (got {type(batch).__name__})")
        kw = self._run_settings(num_reads, chain_strength, annealing_time)
        if self.backend.child is None:  # unreachable QPU: the backend's fallback, one by one
            return self._fallback_batch(batch, kw, seed)
        m, n = batch.num_problems, batch.num_variables
        k, embs = self._per_call(n, problems_per_call or self.problems_per_call, m)
        cs = _chain_strength(batch, embs[0], kw.get("chain_strength"))
        starts = list(range(0, m, k))
        seeds = [seed] if len(starts) == 1 else problem_seeds(seed, len(starts))
        t_submit = time.perf_counter()
        try:
            samples, cbf, access, max_qubits, t_resolve = self._calls(batch, embs, cs, kw, seeds)
        except Exception as exc:
            if not self._fall_back_on(exc):
                raise
            return self._fallback_batch(batch, kw, seed)
        t_done = time.perf_counter()
        energies = batch.energies(samples)
        order = np.argsort(energies, axis=1, kind="stable")
        samples = np.take_along_axis(samples, order[:, :, None], axis=1)
        energies = np.take_along_axis(energies, order, axis=1)
        info = {
            "backend": self.backend_name,
            "solved_by": self.backend_name,
            "calls": len(starts),
            "qpu_calls": len(starts),
            "qpu_access_time": float(access),
            "problems_per_call": k,
            "chain_break_fraction": float(cbf.mean()),
            "chain_break_fractions": cbf,
            "chain_strength": float(cs),
            "num_qubits": int(max_qubits),
            "submit_time": t_resolve - t_submit,
            "resolve_time": t_done - t_resolve,
            "wall_time": time.perf_counter() - t0,
        }
        return BatchResult(samples=samples, energies=energies, info=info)

    def sample_batches(
        self,
        batches: list[IsingBatch],
        *,
        seeds: list[int | None] | None = None,
        num_reads: int | None = None,
        chain_strength: float | None = None,
        annealing_time: float | None = None,
        problems_per_call: int | None = None,
    ) -> list[BatchResult]:
        """Solve the problems of several batches (e.g. every layer of a training step) together.

        Batches whose problems fit equally many per call are packed together: their problems,
        in order, fill calls of ``k`` slots sized for the largest of them (a problem of fewer
        spins uses the first chains of its slot's clique embedding, at no loss of capacity),
        so the layers of a step share calls instead of each leaving a partly filled last call.
        Each problem keeps its own couplings, chain strength (``uniform_torque_compensation``
        of its batch, or ``chain_strength``) and scaling. Every call is submitted before any
        is resolved.

        Args:
            batches: The batches; sizes may differ.
            seeds: One per batch (or None); call ``c`` gets the ``c``-th child of their seeds.
            num_reads, chain_strength, annealing_time, problems_per_call: as for
                :meth:`sample_batch`.

        Returns:
            One :class:`BatchResult` per batch (reads sorted by energy, energies from the
            batch) whose ``info`` holds the batch's share of the calls: ``qpu_calls`` (each call
            counted for the batch owning most of its problems, so the counts add up to the
            calls made), ``problems_per_call`` (problems in those calls per call),
            ``qpu_access_time`` (each call's time split by problems), ``chain_break_fraction``
            and ``chain_break_fractions`` (its problems), ``wall_time`` (split by spins), and
            ``shared_calls`` (the calls made for all batches).

        Raises:
            As :meth:`sample_batch`.
        """
        from dwave.embedding import embed_bqm

        from qsgd.samplers.base import problem_seeds

        t0 = time.perf_counter()
        batches = list(batches)
        for b in batches:
            if not isinstance(b, IsingBatch):
                raise TypeError(f"batches must hold IsingBatch objects (got {type(b).__name__})")
        seeds = [None] * len(batches) if seeds is None else list(seeds)
        if len(seeds) != len(batches):
            raise ConfigError(
                f"seeds must have one entry per batch ({len(batches)}) (got {len(seeds)})"
            )
        kw = self._run_settings(num_reads, chain_strength, annealing_time)
        if self.backend.child is None or not batches:
            return [self._fallback_batch(b, kw, s) for b, s in zip(batches, seeds, strict=True)]
        sizes = np.array([b.num_problems for b in batches])
        ns = np.array([b.num_variables for b in batches])
        wanted = problems_per_call or self.problems_per_call
        # groups of batches that fit equally many problems per call (slots of the group's largest n)
        fits = [self._per_call(int(n), wanted, int(sizes.sum()))[0] for n in ns]
        groups: dict[int, list[int]] = {}
        for b_i in np.argsort(ns, kind="stable"):
            groups.setdefault(fits[b_i], []).append(int(b_i))
        strengths = [
            _chain_strength(b, self.embeddings(b.num_variables, 1)[0], kw.get("chain_strength"))
            for b in batches
        ]
        given = [int(s) for s in seeds if s is not None]
        base = int(np.random.SeedSequence(given).generate_state(1)[0] >> 1) if given else None
        child, h_bound, j_bound, reads, child_kw, seeded = _child_settings(self.backend, kw)
        couplers = _couplers(batches)
        plans = self._shared_plans(groups, sizes, ns, wanted)
        num_calls = sum(-(-len(p[0]) // p[3]) for p in plans)
        call_seeds = problem_seeds(base, num_calls)
        pending = []
        try:
            c = 0
            for owner, local, n_max, k, embs, slot_of, var_of in plans:  # submit every call ...
                for start in range(0, len(owner), k):
                    slots = np.arange(start, min(start + k, len(owner)))
                    problems = [(int(owner[q]), int(local[q])) for q in slots]
                    source, chains, cs = _shared_call(
                        batches, couplers, strengths, problems, n_max, embs
                    )
                    target = embed_bqm(source, chains, child.adjacency, chain_strength=cs)
                    target = _scale_per_problem(target, slot_of, len(slots), h_bound, j_bound)
                    extra = {"seed": call_seeds[c]} if seeded else {}
                    c += 1
                    call = child.sample(target, **child_kw, **extra)
                    pending.append((owner[slots], local[slots], n_max, slot_of, var_of, call))
            resolved = _resolve_shared(pending, batches, reads)  # ... then resolve them
        except Exception as exc:
            if not self._fall_back_on(exc):
                raise
            return [self._fallback_batch(b, kw, s) for b, s in zip(batches, seeds, strict=True)]
        wall = time.perf_counter() - t0
        return _shared_results(
            batches, resolved, strengths, num_calls, self.backend_name, reads, wall
        )

    def _shared_plans(
        self, groups: dict[int, list[int]], sizes: np.ndarray, ns: np.ndarray, wanted: int | None
    ) -> list[tuple[np.ndarray, np.ndarray, int, int, list[Embedding], np.ndarray, np.ndarray]]:
        """The calls' layout for batches of ``sizes`` problems of ``ns`` spins.

        ``groups`` holds batches that fit equally many problems per call; a group's calls have
        slots of its largest ``n``.

        Returns:
            Per group: ``(owner, local, n_max, k, embs, slot_of, var_of)``: each problem's batch
            and index in it, the slot size, the problems per call, their embeddings and
            :func:`_owners` of these.
        """
        plans = []
        for members in (sorted(g) for g in groups.values()):
            n_max = int(ns[members].max())
            k, embs = self._per_call(n_max, wanted, int(sizes[members].sum()))
            owner = np.repeat(np.array(members), sizes[members])
            local = np.concatenate([np.arange(sizes[b_i]) for b_i in members])
            plans.append((owner, local, n_max, k, embs, *_owners(embs)))
        return plans


def _packed_factory(base: type[QPUBackend], name: str, **defaults: Any):
    """A registry factory: ``base(**options)`` wrapped in :class:`PackedQPUSampler`.

    ``defaults`` replace the base's defaults (keyword arguments only).
    """

    def factory(*args: Any, problems_per_call: int | None = None, **options: Any):
        for key, value in defaults.items():
            options.setdefault(key, value)
        return PackedQPUSampler(base(*args, **options), problems_per_call=problems_per_call)

    sig = inspect.signature(base)
    params = [
        p.replace(default=defaults[p.name]) if p.name in defaults else p
        for p in sig.parameters.values()
        if p.kind is not p.VAR_KEYWORD
    ]
    params.append(
        inspect.Parameter("problems_per_call", inspect.Parameter.KEYWORD_ONLY, default=None)
    )
    factory.__signature__ = sig.replace(parameters=params, return_annotation="PackedQPUSampler")  # type: ignore[attr-defined]
    factory._run_keys = (*base._run_keys, "problems_per_call")  # type: ignore[attr-defined]
    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = (
        f"``{base.__name__}(**options)`` behind :class:`PackedQPUSampler` (registry name "
        f"``{name.replace('packed_', '').replace('_', '-')}-packed``)."
    )
    return factory


#: ``"mock-dwave-packed"``: the mock on Pegasus P16 (the size of an Advantage QPU) by default,
#: since packing needs a full-size chip (the mock's own default, P3, holds two 16-spin cliques).
packed_mock_dwave = _packed_factory(MockDWaveBackend, "packed_mock_dwave", topology_shape=[16])
packed_dwave = _packed_factory(DWaveBackend, "packed_dwave")
