"""A layer's QUBO batch solved in chunk tasks on a :class:`~qsgd.distributed.engine.DaskEngine`.

Seeding and chunking are described in :mod:`qsgd.distributed`: per-problem backends give the
same samples as :func:`qsgd.samplers.registry.solve_batch` for any chunk size; batch backends
seed each chunk from the batch seed.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dimod
import numpy as np

from qsgd.distributed.engine import DaskEngine, resolve_engine
from qsgd.distributed.settings import DEFAULT_CHUNK_SIZE, chunk_plan
from qsgd.errors import ConfigError
from qsgd.ising import IsingBatch
from qsgd.samplers.base import BatchResult, problem_seeds, seeds_per_problem, solve_each
from qsgd.samplers.registry import check_run_options, get_sampler

__all__ = ["SamplerSpec", "SamplerLike", "solve_batches", "solve_batch_distributed"]

@dataclass(frozen=True)
class SamplerSpec:
    """A registry backend by name and constructor options; built once per worker process.

    Sending a spec instead of a sampler object keeps tasks small and lets each worker keep
    its own caches (e.g. the QPU embedding cache) across tasks.

    Example:
        >>> SamplerSpec("exact", {"max_variables": 10}).build().max_variables
        10
    """

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def key(self) -> tuple[str, str]:
        return self.name, repr(sorted(self.options.items()))

    def build(self) -> dimod.Sampler:
        """The sampler, from this process's cache (``get_sampler(name, **options)``)."""
        k = self.key()
        sampler = _SAMPLER_CACHE.get(k)
        if sampler is None:
            sampler = get_sampler(self.name, **dict(self.options))
            _SAMPLER_CACHE[k] = sampler
        return sampler


_SAMPLER_CACHE: dict[tuple[str, str], dimod.Sampler] = {}

SamplerLike = dimod.Sampler | SamplerSpec | str


def _as_sampler(sampler: SamplerLike) -> dimod.Sampler:
    if isinstance(sampler, str):
        return SamplerSpec(sampler).build()
    if isinstance(sampler, SamplerSpec):
        return sampler.build()
    from qsgd.samplers.dask import DaskComposite

    if isinstance(sampler, DaskComposite):
        return _as_sampler(sampler.inner)
    if isinstance(sampler, dimod.Sampler) or hasattr(sampler, "sample"):
        return sampler
    raise TypeError(
        f"sampler must be a dimod.Sampler, a SamplerSpec or a backend name (got {type(sampler).__name__})"
    )


def _solve_chunk(
    sampler: SamplerLike,
    batch: IsingBatch,
    start: int,
    stop: int,
    opts: Mapping[str, Any],
    seeds: Sequence[int | None] | None,
    chunk_seed: int | None,
) -> BatchResult:
    """Task body: solve problems ``start:stop`` of ``batch`` (runs on a worker)."""
    t0 = time.perf_counter()
    s = _as_sampler(sampler)
    sub = batch.subset(slice(start, stop))
    if not seeds_per_problem(s):
        kw = dict(opts)
        if chunk_seed is not None:
            kw["seed"] = chunk_seed
        res = s.sample_batch(sub, **kw)
        samples = np.asarray(res.samples, dtype=np.int8)
        reported = np.asarray(res.energies, dtype=np.float64)
        info = dict(res.info)
    else:
        assert seeds is not None
        samples, reported, info = solve_each(s, sub, seeds, opts)
    energies = sub.energies(samples)
    info["reported_energy_max_abs_error"] = float(np.max(np.abs(reported - energies)))
    order = np.argsort(energies, axis=1, kind="stable")
    samples = np.take_along_axis(samples, order[:, :, None], axis=1)
    energies = np.take_along_axis(energies, order, axis=1)
    info["chunk_seconds"] = time.perf_counter() - t0
    return BatchResult(samples=samples, energies=energies, info=info)


def _merge_chunks(
    results: list[BatchResult], sizes: list[int]
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Concatenate chunk results in order; numeric info weighted by chunk size."""
    samples = _concat_padded([r.samples for r in results])
    energies = _concat_padded([r.energies for r in results])
    w = np.asarray(sizes, dtype=np.float64)
    info: dict[str, Any] = {}
    keys = {k for r in results for k in r.info}
    for k in sorted(keys, key=str):
        vals = [r.info.get(k) for r in results]
        if any(v is None for v in vals):
            continue
        if all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in vals):
            if k == "reported_energy_max_abs_error":
                info[k] = float(max(vals))
            elif k == "chunk_seconds":
                info["worker_seconds"] = float(sum(vals))
            else:
                info[k] = float(np.average(np.asarray(vals, dtype=np.float64), weights=w))
        elif all(
            isinstance(v, np.ndarray) and v.ndim >= 1 and len(v) == n
            for v, n in zip(vals, sizes, strict=True)
        ):
            info[k] = np.concatenate(vals)
        elif all(isinstance(v, list) and len(v) == n for v, n in zip(vals, sizes, strict=True)):
            info[k] = [x for v in vals for x in v]
        else:
            info[k] = vals[0] if all(_same(v, vals[0]) for v in vals[1:]) else vals
    return samples, energies, info


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:
        return False


def _concat_padded(parts: list[np.ndarray]) -> np.ndarray:
    r = max(p.shape[1] for p in parts)
    fixed = [
        p if p.shape[1] == r else np.concatenate([p, np.repeat(p[:, :1], r - p.shape[1], 1)], 1)
        for p in parts
    ]
    return np.concatenate(fixed, axis=0)


def _checked(
    batches: Sequence[IsingBatch], seeds: Sequence[int | None] | None, run_options: Mapping
) -> tuple[list[IsingBatch], list[int | None]]:
    """The batches and one seed per batch, checked (``seed`` belongs in ``seeds``)."""
    if "seed" in run_options:
        raise ConfigError(f"pass seeds=[...] (one per batch), not seed={run_options['seed']!r}")
    batches = list(batches)
    for i, b in enumerate(batches):
        if not isinstance(b, IsingBatch):
            raise TypeError(f"batches[{i}] must be an IsingBatch (got {type(b).__name__})")
    seeds = [None] * len(batches) if seeds is None else list(seeds)
    if len(seeds) != len(batches):
        raise ConfigError(
            f"seeds must have one entry per batch ({len(batches)}) (got {len(seeds)})"
        )
    return batches, seeds


def _chunk_tasks(
    engine: DaskEngine,
    sampler: Any,
    batches: Sequence[IsingBatch],
    seeds: Sequence[int | None],
    chunk_size: int,
    run_options: Mapping[str, Any],
    is_batch: bool,
) -> tuple[list[tuple[Any, ...]], list[int], list[list[tuple[int, int]]]]:
    """Arguments of :func:`_solve_chunk` per chunk, the batch of each chunk, and each batch's plan.

    A per-problem backend's chunk gets its problems' seeds; a batch backend's chunk ``c`` gets
    ``problem_seeds(seed, num_chunks)[c]`` (the seed itself for one chunk).
    """
    tasks: list[tuple[Any, ...]] = []
    owners: list[int] = []
    plans = []
    for i, (b, seed) in enumerate(zip(batches, seeds, strict=True)):
        plan = chunk_plan(b.num_problems, chunk_size)
        plans.append(plan)
        pseeds = problem_seeds(seed, b.num_problems)
        cseeds = [seed] if len(plan) == 1 else problem_seeds(seed, len(plan))
        shipped = engine.share(b)
        for c, (start, stop) in enumerate(plan):
            per_problem = None if is_batch else pseeds[start:stop]
            per_chunk = cseeds[c] if is_batch else None
            tasks.append((sampler, shipped, start, stop, dict(run_options), per_problem, per_chunk))
            owners.append(i)
    return tasks, owners, plans


def solve_batches(
    sampler: SamplerLike,
    batches: Sequence[IsingBatch],
    *,
    seeds: Sequence[int | None] | None = None,
    scheduler: str = "local",
    engine: DaskEngine | None = None,
    client: Any = None,
    chunk_size: int | None = None,
    **run_options: Any,
) -> list[BatchResult]:
    """Solve several batches (e.g. all layers of a step) as one pool of chunk tasks.

    All chunks of all batches are submitted before any result is awaited, so the workers stay
    busy across layers. Batch ``i`` is solved with seed ``seeds[i]`` with the semantics of the
    module docstring, so ``result[i]`` equals ``solve_batch(sampler, batches[i], seed=seeds[i])``
    for per-problem backends.

    Args:
        sampler: A dimod sampler (pickled to the workers), a :class:`SamplerSpec` or a backend
            name (built once per worker).
        batches: The batches.
        seeds: One seed per batch (``None``: unseeded).
        scheduler: Used when neither ``engine`` nor ``client`` is given: the shared engine of
            :func:`~qsgd.distributed.engine.get_engine`.
        engine: An explicit engine.
        client: An existing ``distributed.Client`` to run on (left open).
        chunk_size: Problems per task (default :data:`DEFAULT_CHUNK_SIZE`).
        **run_options: ``sample`` keywords for every problem (``num_reads``, ...); not ``seed``.

    Returns:
        One :class:`BatchResult` per batch; ``info`` adds ``scheduler``, ``chunks``,
        ``chunk_size``, ``worker_seconds`` (summed task time) and ``wall_time``.

    Raises:
        ConfigError: unknown run option, ``seed`` in ``run_options``, bad ``chunk_size`` or
            seeds of the wrong length.
        BackendError: unreachable scheduler, no workers or a timeout (see :meth:`DaskEngine.gather`).

    Shape:
        each result: ``samples`` ``(m_i, reads, n_i)`` int8, ``energies`` ``(m_i, reads)``.
    """
    t0 = time.perf_counter()
    batches, seeds = _checked(batches, seeds, run_options)
    chunk_size = DEFAULT_CHUNK_SIZE if chunk_size is None else chunk_size
    local_sampler = _as_sampler(sampler)
    check_run_options(local_sampler, run_options)
    is_batch = not seeds_per_problem(local_sampler)
    name = str(getattr(local_sampler, "backend_name", None) or type(local_sampler).__name__)
    engine = resolve_engine(scheduler, engine=engine, client=client)
    from qsgd.samplers.dask import DaskComposite

    ship = sampler.inner if isinstance(sampler, DaskComposite) else sampler

    shipped_sampler = (
        engine.share(ship)
        if not engine.is_local and not isinstance(ship, (str, SamplerSpec))
        else ship
    )
    tasks, owners, plans = _chunk_tasks(
        engine, shipped_sampler, batches, seeds, int(chunk_size), run_options, is_batch
    )
    results = engine.map(_solve_chunk, *zip(*tasks, strict=True), key=f"solve {name}")
    out = []
    for i, plan in enumerate(plans):
        mine = [r for r, o in zip(results, owners, strict=True) if o == i]
        samples, energies, info = _merge_chunks(mine, [stop - start for start, stop in plan])
        info.setdefault("backend", name)
        info.update(
            scheduler=engine.scheduler,
            chunks=len(plan),
            chunk_size=int(chunk_size),
            wall_time=time.perf_counter() - t0,
            num_reads=int(samples.shape[1]),
        )
        out.append(BatchResult(samples=samples, energies=energies, info=info))
    return out


def solve_batch_distributed(
    sampler: SamplerLike,
    batch: IsingBatch,
    *,
    scheduler: str = "local",
    engine: DaskEngine | None = None,
    client: Any = None,
    chunk_size: int | None = None,
    **run_options: Any,
) -> BatchResult:
    """Like :func:`qsgd.samplers.registry.solve_batch`, with the problems solved in chunk tasks.

    ``run_options`` may hold ``seed`` (the batch seed). See :func:`solve_batches`.

    Example:
        >>> from qsgd.ising import IsingBatch
        >>> b = IsingBatch.from_arrays(np.array([[1.0, -1.0], [-1.0, 1.0]]), np.zeros((2, 2)))
        >>> solve_batch_distributed("exact", b, chunk_size=1).best.tolist()
        [[-1, 1], [1, -1]]
    """
    seed = run_options.pop("seed", None)
    return solve_batches(
        sampler,
        [batch],
        seeds=[seed],
        scheduler=scheduler,
        engine=engine,
        client=client,
        chunk_size=chunk_size,
        **run_options,
    )[0]
