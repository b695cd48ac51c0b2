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

from qsgd.errors import BackendError, ConfigError, ProblemTooLargeError
from qsgd.ising import IsingBatch, to_bqm
from qsgd.samplers.base import BatchResult, Sampler
from qsgd.samplers.dwave import DWaveBackend, MockDWaveBackend, QPUBackend
from qsgd.samplers.embedding import _PACKS as _PACK_STORE
from qsgd.samplers.embedding import clear_embedding_cache, embedding_pack, graph_key_of
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

Embedding = dict[int, tuple[int, ...]]


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


def _check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{name} must be a positive int (got {value!r})")
    return int(value)


def _symmetric_bound(rng: Any, default: float) -> float:
    """The largest magnitude allowed in both directions by a ``[lo, hi]`` range property."""
    try:
        lo, hi = float(rng[0]), float(rng[1])
    except (TypeError, ValueError, IndexError, KeyError):
        return default
    bound = min(-lo, hi)
    return bound if bound > 0 else default


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
        child = self.backend.child
        props = getattr(child, "properties", {}) or {}
        h_bound = _symmetric_bound(props.get("h_range"), 1.0)
        j_bound = _symmetric_bound(props.get("j_range"), 1.0)
        reads = int(kw["num_reads"])
        child_kw: dict[str, Any] = {"num_reads": reads}
        if kw.get("annealing_time") is not None:
            child_kw["annealing_time"] = kw["annealing_time"]
        seeded = "seed" in self.backend.parameters
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
        kw = dict(self.backend.defaults)
        for name, value in (
            ("num_reads", num_reads),
            ("chain_strength", chain_strength),
            ("annealing_time", annealing_time),
        ):
            if value is not None:
                kw[name] = value
        _check_positive_int("num_reads", kw["num_reads"])
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
            found = classify_qpu_failure(exc)
            if found is None:
                raise
            kind = found[0]
            if kind != "connection" or self.backend.fallback is None:
                hint = self.backend._connection_hint() if kind == "connection" else ""
                raise service_error(self.backend.label, kind, exc, hint) from exc
            self.backend._switch_to_fallback(describe_failure(exc))
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
        kw = dict(self.backend.defaults)
        for name, value in (
            ("num_reads", num_reads),
            ("chain_strength", chain_strength),
            ("annealing_time", annealing_time),
        ):
            if value is not None:
                kw[name] = value
        _check_positive_int("num_reads", kw["num_reads"])
        if self.backend.child is None or not batches:
            return [self._fallback_batch(b, kw, s) for b, s in zip(batches, seeds, strict=True)]
        nb = len(batches)
        sizes = np.array([b.num_problems for b in batches])
        ns = np.array([b.num_variables for b in batches])
        total = int(sizes.sum())
        wanted = problems_per_call or self.problems_per_call
        # groups of batches that fit equally many problems per call (slots of the group's largest n)
        fits = [self._per_call(int(n), wanted, total)[0] for n in ns]
        groups: dict[int, list[int]] = {}
        for b_i in np.argsort(ns, kind="stable"):
            groups.setdefault(fits[b_i], []).append(int(b_i))
        strengths = [
            _chain_strength(b, self.embeddings(b.num_variables, 1)[0], kw.get("chain_strength"))
            for b in batches
        ]
        given = [int(s) for s in seeds if s is not None]
        base = int(np.random.SeedSequence(given).generate_state(1)[0] >> 1) if given else None
        child = self.backend.child
        props = getattr(child, "properties", {}) or {}
        h_bound = _symmetric_bound(props.get("h_range"), 1.0)
        j_bound = _symmetric_bound(props.get("j_range"), 1.0)
        reads = int(kw["num_reads"])
        child_kw: dict[str, Any] = {"num_reads": reads}
        if kw.get("annealing_time") is not None:
            child_kw["annealing_time"] = kw["annealing_time"]
        seeded = "seed" in self.backend.parameters
        couplers = []
        for b in batches:  # each batch's upper-triangle couplings, once
            iu, ju = np.triu_indices(b.num_variables, k=1)
            jv = b.J[iu, ju]
            nz = jv != 0
            couplers.append((iu[nz], ju[nz], jv[nz]))
        plans = []  # (owner, local, n_max, k, embs, slot_of, var_of) per group
        for members in (sorted(g) for g in groups.values()):
            n_max = int(ns[members].max())
            k, embs = self._per_call(n_max, wanted, int(sizes[members].sum()))
            owner = np.repeat(np.array(members), sizes[members])
            local = np.concatenate([np.arange(sizes[b_i]) for b_i in members])
            plans.append((owner, local, n_max, k, embs, *_owners(embs)))
        num_calls = sum(-(-len(p[0]) // p[3]) for p in plans)
        call_seeds = problem_seeds(base, num_calls)
        pending = []
        try:
            c = 0
            for owner, local, n_max, k, embs, slot_of, var_of in plans:  # submit every call ...
                for start in range(0, len(owner), k):
                    slots = np.arange(start, min(start + k, len(owner)))
                    labels, lin, qi, qj, qx, chains, cs = [], [], [], [], [], {}, {}
                    pos = 0  # position of the problem's first spin in the call's variables
                    for j, q in enumerate(slots):
                        b_i, p = int(owner[q]), int(local[q])
                        n = int(ns[b_i])
                        labels.append(j * n_max + np.arange(n))
                        lin.append(batches[b_i].h[p])
                        iu, ju, jv = couplers[b_i]
                        qi.append(iu + pos)
                        qj.append(ju + pos)
                        qx.append(jv)
                        pos += n
                        for v in range(n):  # one entry per chain, as in sample_batch
                            chains[j * n_max + v] = embs[j][v]
                            cs[j * n_max + v] = strengths[b_i]
                    source = dimod.BinaryQuadraticModel.from_numpy_vectors(
                        np.concatenate(lin).astype(np.float64),
                        (
                            np.concatenate(qi),
                            np.concatenate(qj),
                            np.concatenate(qx).astype(np.float64),
                        ),
                        0.0,
                        dimod.SPIN,
                        variable_order=np.concatenate(labels).tolist(),
                    )
                    target = embed_bqm(source, chains, child.adjacency, chain_strength=cs)
                    target = _scale_per_problem(target, slot_of, len(slots), h_bound, j_bound)
                    extra = {"seed": call_seeds[c]} if seeded else {}
                    c += 1
                    call = child.sample(target, **child_kw, **extra)
                    pending.append((owner[slots], local[slots], n_max, slot_of, var_of, call))
            samples = [np.empty((b.num_problems, reads, b.num_variables), np.int8) for b in batches]
            cbf = [np.empty(b.num_problems) for b in batches]
            access = np.zeros(nb)
            counted = np.zeros(nb, dtype=int)
            held = np.zeros(nb)
            for owners, locals_, n_max, slot_of, var_of, call in pending:  # ... then resolve
                call.resolve()
                spins, broken = _unembed(call, slot_of, var_of, len(owners), n_max)
                per = np.bincount(owners, minlength=nb)
                top = int(per.argmax())
                counted[top] += 1
                held[top] += len(owners)
                access += qpu_access_seconds(call.info) * per / len(owners)
                for j, (b_i, p) in enumerate(zip(owners.tolist(), locals_.tolist(), strict=True)):
                    n = int(ns[b_i])
                    samples[b_i][p] = _fit_reads(spins[:, j, :n], reads)
                    # a smaller problem's unused chains are not in the call (never broken)
                    cbf[b_i][p] = float(broken[:, j].mean()) * n_max / n if len(broken) else 0.0
        except Exception as exc:
            found = classify_qpu_failure(exc)
            if found is None:
                raise
            kind = found[0]
            if kind != "connection" or self.backend.fallback is None:
                hint = self.backend._connection_hint() if kind == "connection" else ""
                raise service_error(self.backend.label, kind, exc, hint) from exc
            self.backend._switch_to_fallback(describe_failure(exc))
            return [self._fallback_batch(b, kw, s) for b, s in zip(batches, seeds, strict=True)]
        wall = time.perf_counter() - t0
        work = (sizes * ns).astype(np.float64)
        out = []
        for b_i, b in enumerate(batches):
            s = samples[b_i]
            energies = b.energies(s)
            if reads > 1:
                order = np.argsort(energies, axis=1, kind="stable")
                s = np.take_along_axis(s, order[:, :, None], axis=1)
                energies = np.take_along_axis(energies, order, axis=1)
            calls = int(counted[b_i])
            info = {
                "backend": self.backend_name,
                "solved_by": self.backend_name,
                "calls": calls,
                "qpu_calls": calls,
                "problems_per_call": float(held[b_i] / calls) if calls else None,
                "qpu_access_time": float(access[b_i]),
                "chain_break_fraction": float(cbf[b_i].mean()),
                "chain_break_fractions": cbf[b_i],
                "chain_strength": float(strengths[b_i]),
                "shared_calls": num_calls,
                "energies_from_batch": True,
                "wall_time": wall * float(work[b_i] / work.sum()),
            }
            out.append(BatchResult(samples=s, energies=energies, info=info))
        return out


def _chain_strength(batch: IsingBatch, emb: Embedding, given: Any) -> float:
    """``given``, or ``uniform_torque_compensation`` of the first problem (the couplings of a
    layer's problems are shared, so every problem of the batch gets the same value).

    Raises:
        ConfigError: not a positive number.
    """
    from dwave.embedding.chain_strength import uniform_torque_compensation

    cs = given
    if cs is None:
        bqm0 = to_bqm(batch, 0)
        cs = float(uniform_torque_compensation(bqm0, emb)) if bqm0.num_interactions else 1.0
    if isinstance(cs, bool) or not (isinstance(cs, (int, float)) and cs > 0):
        raise ConfigError(f"chain_strength must be a positive number (got {cs!r})")
    return float(cs)


def _owners(embs: list[Embedding]) -> tuple[np.ndarray, np.ndarray]:
    """Qubit -> problem slot and qubit -> variable (``-1``: unused), for scaling and unembedding.

    Raises:
        BackendError: two embeddings share a qubit.
    """
    max_q = 1 + max(q for e in embs for chain in e.values() for q in chain)
    slot_of = np.full(max_q, -1, dtype=np.int64)
    var_of = np.full(max_q, -1, dtype=np.int64)
    for j, e in enumerate(embs):  # one entry per chain, not per sample
        for v, chain in e.items():
            idx = np.asarray(chain, dtype=np.int64)
            if np.any(slot_of[idx] >= 0):
                raise BackendError("packed embeddings overlap: a qubit is in two chains")
            slot_of[idx] = j
            var_of[idx] = v
    return slot_of, var_of


def _joint_bqm(batch: IsingBatch, idx: np.ndarray) -> dimod.BinaryQuadraticModel:
    """Problems ``idx`` of ``batch`` as one SPIN BQM, problem ``j`` on variables ``j*n .. j*n+n-1``."""
    n, kk = batch.num_variables, len(idx)
    iu, ju = np.triu_indices(n, k=1)
    jv = batch.J[iu, ju]
    keep = jv != 0
    iu, ju, jv = iu[keep], ju[keep], jv[keep]
    shift = (n * np.arange(kk))[:, None]
    return dimod.BinaryQuadraticModel.from_numpy_vectors(
        batch.h[idx].ravel(),
        ((iu[None, :] + shift).ravel(), (ju[None, :] + shift).ravel(), np.tile(jv, kk)),
        0.0,
        dimod.SPIN,
    )


def _scale_per_problem(
    target: dimod.BinaryQuadraticModel,
    slot_of: np.ndarray,
    kk: int,
    h_bound: float,
    j_bound: float,
) -> dimod.BinaryQuadraticModel:
    """Scale each problem's embedded fields and couplings to fill ``h_bound``/``j_bound``.

    Also checks the packing: every coupler must join two qubits of the same problem.

    Raises:
        BackendError: a coupler joins two problems (the packing is broken).
    """
    order = list(target.variables)
    qubits = np.asarray(order, dtype=np.int64)
    lin_b, (row, col, quad), offset = target.to_numpy_vectors(variable_order=order)
    owner = slot_of[qubits]
    if np.any(owner < 0):
        raise BackendError("packed problem uses a qubit outside every embedding")
    qa, qb = owner[row], owner[col]
    if np.any(qa != qb):
        bad = int(np.flatnonzero(qa != qb)[0])
        raise BackendError(
            f"packing check failed: coupler ({order[row[bad]]}, {order[col[bad]]}) joins "
            f"problems {qa[bad]} and {qb[bad]}"
        )
    hmax = np.zeros(kk)
    jmax = np.zeros(kk)
    np.maximum.at(hmax, owner, np.abs(lin_b))
    np.maximum.at(jmax, qa, np.abs(quad))
    ratio = np.maximum(hmax / h_bound, jmax / j_bound)
    scale = np.where(ratio > 0, 1.0 / np.where(ratio > 0, ratio, 1.0), 1.0)
    return dimod.BinaryQuadraticModel.from_numpy_vectors(
        lin_b * scale[owner],
        (row, col, quad * scale[qa]),
        0.0,
        dimod.SPIN,
        variable_order=order,
    )


def _unembed(
    response: dimod.SampleSet, slot_of: np.ndarray, var_of: np.ndarray, kk: int, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Majority-vote unembedding of every problem of one call.

    Returns:
        ``spins`` ``(reads, kk, n)`` int8 (ties to +1) and ``broken`` ``(reads, kk)``: the
        fraction of each problem's chains that are broken in each read.
    """
    qubits = np.asarray(list(response.variables), dtype=np.int64)
    rec = np.asarray(response.record.sample, dtype=np.int64)
    if response.vartype is dimod.BINARY:
        rec = 2 * rec - 1
    counts = np.asarray(response.record.num_occurrences)
    if np.any(counts != 1):
        rec = np.repeat(rec, counts, axis=0)
    slot = slot_of[qubits]
    use = (slot >= 0) & (slot < kk)
    flat = slot[use] * n + var_of[qubits][use]  # logical variable of each used column
    cols = rec[:, use]
    reads = rec.shape[0]
    total = np.zeros((reads, kk * n))
    size = np.zeros(kk * n)
    np.add.at(total.T, flat, cols.T)
    np.add.at(size, flat, 1.0)
    spins = np.where(total >= 0, 1, -1).astype(np.int8).reshape(reads, kk, n)
    broken = (np.abs(total) != size[None, :]).reshape(reads, kk, n).mean(axis=2)
    return spins, broken


def _fit_reads(s: np.ndarray, reads: int) -> np.ndarray:
    """Exactly ``reads`` rows (aggregated sample sets can expand to a different count)."""
    if len(s) == reads:
        return s
    if len(s) > reads:
        return s[:reads]
    return np.concatenate([s, np.repeat(s[:1], reads - len(s), 0)])


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
