"""The sampler contract shared by every qsgd backend: a base class, its batch result, one option check.

A qsgd backend is a ``dimod.Sampler`` (``parameters``, ``properties``, ``sample``) that also solves
a whole :class:`~qsgd.ising.IsingBatch` with ``sample_batch(batch, **run)``. :class:`Sampler`
gives the default ``sample_batch``: problem ``k`` is solved by ``sample`` with the ``k``-th seed
of :func:`problem_seeds`; backends that solve a batch at once (the ``batched`` annealer, the
packing composite) override it. So callers never ask whether a sampler can solve batches.

Example:
    >>> import numpy as np
    >>> from qsgd.ising import IsingBatch
    >>> class Down(Sampler):                      # the smallest backend: one sample method
    ...     parameters = {"num_reads": []}
    ...     properties = {}
    ...     def sample(self, bqm, num_reads=1):
    ...         return dimod.SampleSet.from_samples_bqm([{v: -1 for v in bqm.variables}] * num_reads, bqm)
    >>> b = IsingBatch.from_arrays(np.array([[1.0, 1.0], [1.0, -1.0]]), np.zeros((2, 2)))
    >>> Down().sample_batch(b, num_reads=2).samples.shape
    (2, 2, 2)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dimod
import numpy as np

from qsgd.errors import BackendError, ConfigError
from qsgd.ising import IsingBatch, to_bqm

__all__ = [
    "BatchResult",
    "Sampler",
    "check_options",
    "problem_seeds",
    "seeds_per_problem",
    "solve_each",
    "SUMMED_INFO_KEYS",
]


@dataclass
class BatchResult:
    """Samples of ``m`` Ising problems solved in one batched call.

    Attributes:
        samples: ±1 spins, ``int8``, shape ``(m, reads, n)``; reads of each problem sorted by energy.
        energies: Ising energies of ``samples`` recomputed from the problem, shape ``(m, reads)``.
        info: Backend, wall time in seconds (``"wall_time"``), and backend-specific figures
            (e.g. ``"chain_break_fraction"`` for QPU backends).

    Shape:
        ``best`` is ``(m, n)`` and ``best_energy`` is ``(m,)``.
    """

    samples: np.ndarray
    energies: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def best(self) -> np.ndarray:
        """Lowest-energy sample of each problem, shape ``(m, n)``."""
        idx = np.argmin(self.energies, axis=1)
        return self.samples[np.arange(self.samples.shape[0]), idx]

    @property
    def best_energy(self) -> np.ndarray:
        """Lowest energy of each problem, shape ``(m,)``."""
        return self.energies.min(axis=1)


def check_options(
    given: Iterable[str], accepted: Iterable[str], *, backend: str, kind: str = "option"
) -> None:
    """The one check for option names: raise if a name in ``given`` is not in ``accepted``.

    Args:
        given: Option names passed by the caller.
        accepted: Names the backend (or composite) accepts.
        backend: Named in the message.
        kind: ``"option"`` (constructor or config) or ``"run option"`` (``sample`` keywords).

    Raises:
        ConfigError: ``unknown <kind> 'x' for backend 'b'; accepted options: ...`` (first unknown
            name in sorted order).

    Example:
        >>> check_options(["num_sweep"], ["num_reads", "num_sweeps"], backend="neal")
        Traceback (most recent call last):
        ...
        qsgd.errors.ConfigError: unknown option 'num_sweep' for backend 'neal'; accepted options: num_reads, num_sweeps
    """
    accepted = set(accepted)
    unknown = sorted(set(given) - accepted)
    if unknown:
        raise ConfigError(
            f"unknown {kind} {unknown[0]!r} for backend {backend!r}; "
            f"accepted options: {', '.join(sorted(accepted)) or '(none)'}"
        )


def problem_seeds(seed: int | None, m: int) -> list[int | None]:
    """Per-problem seeds derived from one batch seed (``None`` stays ``None``).

    Problem ``k`` gets ``SeedSequence(seed).spawn(m)[k].generate_state(1)[0] >> 1`` (31 bits: every
    dimod sampler here accepts it).

    Raises:
        ConfigError: ``seed`` is not a non-negative int.
    """
    if seed is None:
        return [None] * m
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative int or None (got {seed!r})")
    children = np.random.SeedSequence(int(seed)).spawn(m)
    return [int(c.generate_state(1, dtype=np.uint32)[0] >> 1) for c in children]


def backend_label(sampler: Any) -> str:
    """The name a sampler is recorded under: its ``backend_name``, else its class name."""
    return str(getattr(sampler, "backend_name", None) or type(sampler).__name__)


class Sampler(dimod.Sampler):
    """Base class of qsgd's samplers: a ``dimod.Sampler`` with a default :meth:`sample_batch`.

    Subclasses implement ``parameters``, ``properties`` and ``sample`` as for dimod. The
    constructor takes structure only (which child, which chip, which fallback); every run
    setting is a keyword of ``sample``/``sample_batch`` listed in ``parameters``.

    A class that defines its own ``sample_batch`` without deriving from this one (a sampler
    written before this base existed) is treated as a subclass by ``isinstance``.
    """

    backend_name: str = ""

    @classmethod
    def __subclasshook__(cls, candidate: type) -> bool | Any:
        if cls is Sampler and any("sample_batch" in k.__dict__ for k in candidate.__mro__):
            return True
        return NotImplemented

    def sample_batch(
        self, batch: IsingBatch, *, seed: int | None = None, **parameters: Any
    ) -> BatchResult:
        """Solve each problem of ``batch`` with :meth:`sample` (problem ``k`` seeded ``problem_seeds(seed, m)[k]``).

        Returns:
            Samples in variable order ``0..n-1`` and the energies the backend reported,
            unsorted (``solve_batch`` recomputes and sorts); ``info`` merges the per-problem
            ``SampleSet.info`` and lists ``solved_by`` per problem.

        Shape:
            ``samples`` ``(m, reads, n)`` int8, ``energies`` ``(m, reads)``.
        """
        if not isinstance(batch, IsingBatch):
            raise TypeError(f"batch must be an IsingBatch (got {type(batch).__name__})")
        if seed is not None and "seed" not in self.parameters:
            check_options(["seed"], self.parameters, backend=backend_label(self), kind="run option")
        seeds = problem_seeds(seed, batch.num_problems)
        samples, reported, info = solve_each(self, batch, seeds, parameters)
        return BatchResult(samples=samples, energies=reported, info=info)


def seeds_per_problem(sampler: Any) -> bool:
    """Whether ``sampler`` solves a batch problem by problem, seeding problem ``k`` alone.

    True for plain dimod samplers and for :class:`Sampler` subclasses that keep the default
    :meth:`Sampler.sample_batch`; then any split of a batch into chunks gives the same samples.
    False for samplers with their own ``sample_batch`` (one random stream per call).
    """
    if not isinstance(sampler, Sampler):
        return True
    return type(sampler).sample_batch is Sampler.sample_batch


def _sampleset_to_arrays(ss: dimod.SampleSet, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Samples in variable order ``0..n-1`` (int8, ``(reads, n)``) and reported energies.

    Aggregated sample sets (``num_occurrences > 1``) are expanded so every read is a row.
    """
    order = list(range(n))
    variables = ss.variables
    if variables == order:
        arr = ss.record.sample
    else:
        labels = np.asarray(list(variables))
        ok = labels.dtype.kind in "iu" and len(labels) == n and set(variables) == set(order)
        if not ok:
            raise BackendError(
                f"backend returned samples over variables {list(variables)[:5]}..., "
                f"expected exactly 0..{n - 1}"
            )
        idx = np.empty(n, dtype=np.intp)
        idx[labels] = np.arange(n)  # column of variable i
        arr = ss.record.sample[:, idx]
    counts = ss.record.num_occurrences
    energies = ss.record.energy
    if np.any(counts != 1):
        arr = np.repeat(arr, counts, axis=0)
        energies = np.repeat(energies, counts)
    if ss.vartype is dimod.BINARY:
        arr = 2 * arr - 1
    return np.asarray(arr, dtype=np.int8), np.asarray(energies, dtype=np.float64)


def solve_each(
    sampler: dimod.Sampler, batch: IsingBatch, seeds: Sequence[int | None], opts: Mapping[str, Any]
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """One ``sample`` call per problem of ``batch`` with the given per-problem seeds.

    Returns the samples ``(m, reads, n)`` int8 in variable order, the energies the backend
    reported ``(m, reads)`` (unsorted), and the merged ``SampleSet.info``. A problem that came
    back with fewer reads than the others is padded by repeating its first read.
    """
    n = batch.num_variables
    per_samples, per_reported, infos = [], [], []
    for k in range(batch.num_problems):  # one call per problem; the arrays inside are whole-problem
        kw = dict(opts)
        if seeds[k] is not None:
            kw["seed"] = seeds[k]
        ss = sampler.sample(to_bqm(batch, k), **kw)
        s, e = _sampleset_to_arrays(ss, n)
        per_samples.append(s)
        per_reported.append(e)
        infos.append(ss.info)
    info = _merge_infos(infos)
    # one name per problem (a list of length m, so chunked solves concatenate it in order)
    info["solved_by"] = [str(i.get("solved_by") or backend_label(sampler)) for i in infos]
    info.pop("solved_by_counts", None)
    return _stack_padded(per_samples), _stack_padded(per_reported), info


def _stack_padded(rows: list[np.ndarray]) -> np.ndarray:
    """Stack per-problem read arrays; shorter ones are padded by repeating their first read."""
    r = max(len(x) for x in rows)
    return np.stack(
        [x if len(x) == r else np.concatenate([x, np.repeat(x[:1], r - len(x), 0)]) for x in rows]
    )


#: ``info`` keys that are totals over problems (summed when per-problem infos are merged).
SUMMED_INFO_KEYS = ("qpu_calls", "qpu_access_time")


def _merge_infos(infos: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Combine per-problem ``SampleSet.info`` dicts: numbers are averaged, the rest listed.

    Counts of QPU use (:data:`SUMMED_INFO_KEYS`: ``qpu_calls``, ``qpu_access_time``) are summed
    instead, a problem without the key counting 0 (e.g. one solved by a fallback).
    """
    out: dict[str, Any] = {}
    keys = {k for i in infos for k in i}
    for key in sorted(keys, key=str):
        vals = [i[key] for i in infos if key in i]
        if key in SUMMED_INFO_KEYS:
            out[key] = type(vals[0])(sum(vals)) if vals else 0
        elif all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in vals):
            out[key] = float(np.mean(vals))
        elif key in ("embedding_context", "timing", "problem_id", "warnings"):
            continue  # bulky per-call records; backends report summaries instead
        else:
            out[key] = vals[0] if all(v == vals[0] for v in vals[1:]) else vals
    return out
