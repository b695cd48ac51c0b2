"""Block-wise solves of a :class:`qsgd.optimizer.QPSBGD` step's layers (a layer larger than
the backend accepts, or than ``max_block_vars``): :func:`_block_limit` says which, the two
solvers solve them.

The functions take the optimiser as ``self`` (its sampler, run options, seeds and backend name)
and the ``solve_batch`` the optimiser module uses.
"""

from __future__ import annotations

import logging
import numbers
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from qsgd.ising import IsingBatch
from qsgd.qubo import solve_blockwise, solve_blockwise_many
from qsgd.step_records import _LayerJob, _QPUUse, _signs, _Solved, _solved

_logger = logging.getLogger("qsgd.optimizer")  # the optimiser's logger, as before the move


def _solve_blockwise_together(
    self: Any,
    jobs: list[_LayerJob],
    limit: int,
    many: Callable[..., Any],
    solve_batch: Callable[..., Any],
) -> list[_Solved]:
    """Block-wise solves of several layers in lock step (:func:`qsgd.qubo.solve_blockwise_many`):
    round ``r`` sends block ``r`` of every layer to one ``sample_batches`` call; each layer
    uses its own seed and gets its share of every call in its record."""
    qpus = [_QPUUse() for _ in jobs]
    counts: list[dict[str, int]] = [{} for _ in jobs]
    walls = [0.0] * len(jobs)

    def solve_many(subs: list[IsingBatch], which: list[int]) -> list[Any]:
        seeds = [jobs[i].seed if self._seed_accepted else None for i in which]
        results = many(subs, seeds=seeds, **self.run_options)
        for i, sub, res in zip(which, subs, results, strict=True):
            one = _solved(res, sub.num_problems, self.backend_name, shared=True)
            qpus[i].calls += int(one.qpu["qpu_calls"])
            qpus[i].problems += float(one.qpu["problems_per_call"] or 0.0) * int(
                one.qpu["qpu_calls"]
            )
            qpus[i].access += float(one.qpu["qpu_access_time"])
            cbf = one.qpu["chain_break_fraction"]
            if cbf is not None:
                qpus[i].cbf_sum += float(cbf) * sub.num_problems
                qpus[i].cbf_problems += sub.num_problems
            walls[i] += one.wall
            for name, v in one.counts.items():
                counts[i][name] = counts[i].get(name, 0) + int(v)
        return results

    initials = [
        np.where(job.batch.h <= 0, 1, -1)
        if job.formulation == "binary_gradient"
        else _signs(job.old_pos)
        for job in jobs
    ]
    found = solve_blockwise_many([job.batch for job in jobs], solve_many, limit, initials)
    return [
        _Solved(spins, energies, walls[i], counts[i], qpus[i].record(), int(limit))
        for i, (spins, energies) in enumerate(found)
    ]


def _solve_blockwise(
    self: Any, job: _LayerJob, limit: int, solve_batch: Callable[..., Any]
) -> _Solved:
    """One layer solved block-wise (:func:`qsgd.qubo.solve_blockwise`, one sweep) with the
    layer's seed; its record sums the figures of every block's solve."""
    run = dict(self.run_options)
    if self._seed_accepted:
        run["seed"] = job.seed
    counts: dict[str, int] = {}
    qpu = _QPUUse()
    times: list[float] = []

    def solve(sub):
        res = solve_batch(self.sampler, sub, **run)
        qpu.add(res.info, sub.num_problems)
        times.append(float(res.info.get("wall_time", 0.0)))
        for k, v in res.info["solved_by_counts"].items():
            counts[k] = counts.get(k, 0) + int(v)
        return res

    initial = (
        np.where(job.batch.h <= 0, 1, -1)
        if job.formulation == "binary_gradient"
        else _signs(job.old_pos)
    )
    spins, energies = solve_blockwise(job.batch, solve, limit, initial)
    return _Solved(spins, energies, float(sum(times)), counts, qpu.record(), int(limit))


def _block_limit(self: Any, layer: str, n: int) -> int | None:
    """``max_block_vars``, or else the backend's ``properties["max_num_variables"]`` (looked up
    once; a layer above it is logged once, under the ``qsgd.optimizer`` logger)."""
    if self.max_block_vars is not None:
        return self.max_block_vars
    if self._auto_block is False:
        try:
            props = self.sampler.properties
        except Exception:  # a backend whose properties cannot be read declares nothing
            props = {}
        cap = props.get("max_num_variables") if isinstance(props, Mapping) else None
        ok = isinstance(cap, numbers.Integral) and not isinstance(cap, bool) and cap > 1
        self._auto_block = int(cap) if ok else None
        self._auto_warned = False
    limit = self._auto_block
    if limit is not None and n > limit and not self._auto_warned:
        self._auto_warned = True
        _logger.warning(
            "backend %r solves at most %d variables: layer %r (%d) and any larger layer "
            "are solved block-wise with max_block_vars=%d (set annealer.max_block_vars "
            "to choose the block size)",
            self.backend_name,
            limit,
            layer,
            n,
            limit,
        )
    return limit
