"""Several independent problems per QPU call: disjoint clique embeddings on one chip.

A QPU call has a fixed overhead (queue, programming, readout) that dwarfs the anneal, and a
per-neuron problem of fan-in ``n`` uses only a small part of a Pegasus chip. :class:`PackedQPUSampler`
places ``k`` problems on disjoint regions of the working graph, submits them as one problem,
and splits the samples back per problem:

1. **Packing.** :func:`pack_clique_embeddings` finds a clique embedding of ``K_n`` with
   ``minorminer.busclique`` in the working graph, removes its qubits, and repeats on the rest
   until no further clique fits. The first embedding is the one the single-problem path
   (:func:`qsgd.samplers.dwave.clique_embedding`) uses; the list is cached per
   (``n``, solver, seed), so each chip is packed once per problem size.
2. **One call.** Problem ``j`` of a call gets the variables ``j*n .. j*n+n-1``; the union of the
   problems is embedded with the union of the embeddings (``dwave.embedding.embed_bqm``) and
   sampled once by the backend's structured child sampler. Problems are disjoint on the chip,
   so no coupler joins two of them and each keeps its own energy function.
3. **Splitting.** Each problem is unembedded from the shared samples with its own embedding
   (majority vote on broken chains, as the single-problem path does), and its own
   chain-break fraction is reported.

Chain strength: the couplings of a layer's problems are shared (one ``J``), so
``uniform_torque_compensation`` (dwave-system's default, prefactor 1.414) gives every problem
of a batch the same value, and that one value is used for the whole call, exactly as a
single-problem call of the same problem would.

On a real QPU the programming range is shared by the whole call (auto-scaling divides all
problems by the largest coefficient); problems of one layer have similar scales, so this rarely
matters, but a batch mixing very different scales is better split into several calls.

Example:
    >>> from qsgd.samplers.dwave import MockDWaveBackend
    >>> qpu = MockDWaveBackend(topology_shape=[16], substitute="neal")   # doctest: +SKIP
    >>> packed = PackedQPUSampler(qpu)                                    # doctest: +SKIP
    >>> packed.capacity(32)                                               # doctest: +SKIP
    25
"""

from __future__ import annotations

import math
import time
from typing import Any

import dimod
import numpy as np

from qsgd.errors import ConfigError, ProblemTooLargeError
from qsgd.ising import IsingBatch, to_bqm
from qsgd.samplers.base import BatchResult
from qsgd.samplers.dwave import QPUBackend, _import_dwave
from qsgd.samplers.registry import _sampleset_to_arrays, problem_seeds, solve_batch

__all__ = [
    "PackedQPUSampler",
    "pack_clique_embeddings",
    "packing_cache_info",
    "clear_packing_cache",
    "calls_per_layer",
]

Embedding = dict[int, tuple[int, ...]]

# (n, solver_id, seed) -> (embeddings found so far, search exhausted)
_PACKS: dict[tuple[int, str, int], tuple[list[Embedding], bool]] = {}


def packing_cache_info() -> dict[str, int]:
    """Number of cached packings (``size``) and of embeddings they hold (``embeddings``)."""
    return {"size": len(_PACKS), "embeddings": sum(len(v[0]) for v in _PACKS.values())}


def clear_packing_cache() -> None:
    """Forget all cached packings."""
    _PACKS.clear()


def pack_clique_embeddings(
    n: int,
    target_graph: Any,
    *,
    max_problems: int | None = None,
    solver_id: str | None = None,
    seed: int = 0,
) -> list[Embedding]:
    """Disjoint clique embeddings of ``K_n`` on ``target_graph``, found greedily.

    Args:
        n: Spins per problem.
        target_graph: The working graph (a dwave-networkx Pegasus/Chimera/Zephyr graph, possibly
            with missing qubits).
        max_problems: Stop after this many (``None``: as many as fit).
        solver_id: Cache key of the graph (``None``: no caching).
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
    key = None if solver_id is None else (int(n), str(solver_id), int(seed))
    found, exhausted = _PACKS.get(key, ([], False)) if key is not None else ([], False)
    if exhausted or (max_problems is not None and len(found) >= max_problems):
        return list(found[: max_problems or len(found)])
    _, busclique = _import_dwave()
    graph = target_graph.copy()
    graph.remove_nodes_from({q for emb in found for chain in emb.values() for q in chain})
    found = list(found)
    while max_problems is None or len(found) < max_problems:
        emb = busclique.find_clique_embedding(int(n), graph, seed=int(seed), use_cache=False)
        if len(emb) != n:
            exhausted = True
            break
        emb = {int(v): tuple(int(q) for q in chain) for v, chain in emb.items()}
        found.append(emb)
        graph.remove_nodes_from({q for chain in emb.values() for q in chain})
    if key is not None:
        _PACKS[key] = (found, exhausted)
    return list(found)


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


class PackedQPUSampler(dimod.Sampler):
    """Solve a batch of problems with several problems per call of a QPU backend.

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
    def parameters(self) -> dict[str, list]:
        return {**self.backend.parameters, "problems_per_call": []}

    @property
    def properties(self) -> dict[str, Any]:
        return {**self.backend.properties, "packed": True}

    def _graph(self) -> Any:
        return self.backend.child.to_networkx_graph()

    def embeddings(self, n: int, max_problems: int | None = None) -> list[Embedding]:
        """Disjoint embeddings of ``K_n`` on this backend's chip (cached)."""
        return pack_clique_embeddings(
            n,
            self._graph(),
            max_problems=max_problems,
            solver_id=self.backend.solver_id,
            seed=self.backend.embedding_seed,
        )

    def capacity(self, n: int) -> int:
        """How many problems of ``n`` dense spins fit in one call (0: not even one)."""
        return len(self.embeddings(n))

    def sample(self, bqm: dimod.BinaryQuadraticModel, **parameters: Any) -> dimod.SampleSet:
        """One problem: the backend's single-problem path."""
        parameters.pop("problems_per_call", None)
        return self.backend.sample(bqm, **parameters)

    def _per_call(self, n: int, wanted: int | None, m: int) -> tuple[int, list[Embedding]]:
        if wanted is None:
            embs = self.embeddings(n)
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

        Returns:
            Samples sorted by energy per problem, energies recomputed from ``batch``; ``info``
            with ``calls``, ``problems_per_call``, ``chain_break_fraction`` (mean over problems),
            ``chain_break_fractions`` (per problem, ``(m,)``), ``chain_strength``,
            ``num_qubits`` (largest call) and ``wall_time``.

        Raises:
            ProblemTooLargeError: ``problems_per_call`` more than fit (says how many fit), or one
                problem does not fit.
            ConfigError: a bad run setting.
        """
        from dwave.embedding import embed_bqm, unembed_sampleset
        from dwave.embedding.chain_breaks import majority_vote
        from dwave.embedding.chain_strength import uniform_torque_compensation

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
            opts = {k: v for k, v in kw.items() if k in self.backend.parameters}
            if seed is not None and "seed" in self.backend.parameters:
                opts["seed"] = seed
            return solve_batch(self.backend, batch, **opts)
        m, n = batch.num_problems, batch.num_variables
        k, embs = self._per_call(n, problems_per_call or self.problems_per_call, m)
        bqm0 = to_bqm(batch, 0)
        cs = kw.get("chain_strength")
        if cs is None:
            cs = float(uniform_torque_compensation(bqm0, embs[0])) if bqm0.num_interactions else 1.0
        if not (isinstance(cs, (int, float)) and cs > 0):
            raise ConfigError(f"chain_strength must be a positive number (got {cs!r})")
        child = self.backend.child
        child_kw: dict[str, Any] = {"num_reads": int(kw["num_reads"])}
        if kw.get("annealing_time") is not None:
            child_kw["annealing_time"] = kw["annealing_time"]
        starts = list(range(0, m, k))
        seeds = [seed] if len(starts) == 1 else problem_seeds(seed, len(starts))
        seeded = "seed" in self.backend.parameters
        iu, ju = np.triu_indices(n, k=1)
        jv = batch.J[iu, ju]
        keep = jv != 0
        iu, ju, jv = iu[keep], ju[keep], jv[keep]
        samples = np.empty((m, int(kw["num_reads"]), n), dtype=np.int8)
        cbf = np.empty(m)
        max_qubits = 0
        for c, start in enumerate(starts):  # one QPU call per group of k problems
            idx = np.arange(start, min(start + k, m))
            kk = len(idx)
            shift = (n * np.arange(kk))[:, None]
            source = dimod.BinaryQuadraticModel.from_numpy_vectors(
                batch.h[idx].ravel(),
                ((iu[None, :] + shift).ravel(), (ju[None, :] + shift).ravel(), np.tile(jv, kk)),
                float(batch.offset[idx].sum()),
                dimod.SPIN,
            )
            embedding = {j * n + v: chain for j in range(kk) for v, chain in embs[j].items()}
            target = embed_bqm(source, embedding, child.adjacency, chain_strength=cs)
            max_qubits = max(max_qubits, target.num_variables)
            extra = {"seed": seeds[c]} if seeded else {}
            response = child.sample(target, **child_kw, **extra)
            response.resolve()
            for j, p in enumerate(idx):  # split per problem, each with its own chains
                sub_emb = {v: embs[j][v] for v in range(n)}
                ss = unembed_sampleset(
                    response,
                    sub_emb,
                    to_bqm(batch, int(p)),
                    chain_break_method=majority_vote,
                    chain_break_fraction=True,
                )
                s, _ = _sampleset_to_arrays(ss, n)
                samples[p] = _fit_reads(s, samples.shape[1])
                frac = np.asarray(ss.record.chain_break_fraction, dtype=np.float64)
                occ = np.asarray(ss.record.num_occurrences, dtype=np.float64)
                cbf[p] = float(np.sum(frac * occ) / np.sum(occ))
        energies = batch.energies(samples)
        order = np.argsort(energies, axis=1, kind="stable")
        samples = np.take_along_axis(samples, order[:, :, None], axis=1)
        energies = np.take_along_axis(energies, order, axis=1)
        info = {
            "backend": self.backend_name,
            "calls": len(starts),
            "problems_per_call": k,
            "chain_break_fraction": float(cbf.mean()),
            "chain_break_fractions": cbf,
            "chain_strength": float(cs),
            "num_qubits": int(max_qubits),
            "wall_time": time.perf_counter() - t0,
        }
        return BatchResult(samples=samples, energies=energies, info=info)


def _fit_reads(s: np.ndarray, reads: int) -> np.ndarray:
    """Exactly ``reads`` rows (aggregated sample sets can expand to a different count)."""
    if len(s) == reads:
        return s
    if len(s) > reads:
        return s[:reads]
    return np.concatenate([s, np.repeat(s[:1], reads - len(s), 0)])
