"""Block-coordinate decomposition of Ising problems larger than a solver accepts.

:func:`split_blocks` cuts the variables into blocks, :func:`restrict_to_block` fixes the other
spins, and :func:`solve_blockwise` (one batch) / :func:`solve_blockwise_many` (several batches
in lock step) descend block by block, never raising a problem's energy. Also importable from
:mod:`qsgd.qubo`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from qsgd.errors import ProblemError
from qsgd.ising import IsingBatch

__all__ = [
    "split_blocks",
    "restrict_to_block",
    "solve_blockwise",
    "solve_blockwise_many",
]


def split_blocks(
    n: int, max_block_vars: int, *, rng: np.random.Generator | int | None = None
) -> list[np.ndarray]:
    """Split variables ``0..n-1`` into ``ceil(n / max_block_vars)`` blocks of near-equal size.

    Blocks are contiguous ranges by default; with ``rng`` (a Generator or a seed)
    the variables are randomly permuted first (each block is returned sorted).

    Example:
        >>> [b.tolist() for b in split_blocks(5, 2)]
        [[0, 1], [2, 3], [4]]
    """
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be a positive int (got {n!r})")
    if (
        not isinstance(max_block_vars, (int, np.integer))
        or isinstance(max_block_vars, bool)
        or max_block_vars < 1
    ):
        raise ValueError(f"max_block_vars must be a positive int (got {max_block_vars!r})")
    order = np.arange(n)
    if rng is not None:
        order = np.random.default_rng(rng).permutation(n)
    k = -(-int(n) // int(max_block_vars))
    return [np.sort(b) if rng is not None else b for b in np.array_split(order, k)]


def _block_index(block: Any, n: int) -> np.ndarray:
    idx = np.asarray(block)
    if idx.ndim != 1 or idx.size == 0 or not np.issubdtype(idx.dtype, np.integer):
        raise ProblemError(
            f"block must be a non-empty 1-D array of variable indices (got {idx.dtype} shape {idx.shape})"
        )
    if idx.min() < 0 or idx.max() >= n or np.unique(idx).size != idx.size:
        raise ProblemError(f"block must hold distinct indices in [0, {n}) (got {idx.tolist()})")
    return idx


def restrict_to_block(batch: IsingBatch, spins: Any, block: Any) -> IsingBatch:
    """The problems over the spins of ``block`` with all other spins fixed to ``spins``.

    Fields absorb the couplings to the fixed spins, ``h_B + s_R J[R, B]``; the
    offset absorbs the energy of the fixed spins, so for any block assignment
    ``x``, ``restricted.energies(x) == batch.energies(spins with block set to x)``.
    The low-rank factor is restricted too (``factor[:, block]``).

    Shape:
        spins ``(m, n)`` (or ``(n,)`` shared by all problems); block ``(k,)``; result ``(m, k)``.
    """
    m, n = batch.num_problems, batch.num_variables
    idx = _block_index(block, n)
    s = np.asarray(spins, dtype=np.float64)
    if s.ndim == 1:
        s = np.broadcast_to(s, (m, n))
    if s.shape != (m, n):
        raise ProblemError(f"spins must have shape ({m}, {n}) (got shape {s.shape})")
    rest = np.ones(n, dtype=bool)
    rest[idx] = False
    s_rest = np.where(rest[None, :], s, 0.0)  # fixed spins, block zeroed
    field = s_rest @ batch.J  # (m, n): sum over fixed spins only
    h_block = batch.h[:, idx] + field[:, idx]
    offset = (
        batch.offset
        + np.einsum("mn,mn->m", batch.h, s_rest)
        + 0.5 * np.einsum("mn,mn->m", field, s_rest)
    )
    J_block = batch.J[np.ix_(idx, idx)]
    factor = None if batch.factor is None else batch.factor[:, idx]
    return IsingBatch(
        h=h_block, J=J_block, offset=offset, factor=factor, factor_scale=batch.factor_scale
    )


def _best_of(result: Any, sub: IsingBatch) -> np.ndarray:
    """Best spins ``(m, k)`` from a solver's return value (BatchResult-like or array)."""
    if hasattr(result, "best"):
        result = result.best
    arr = np.asarray(result)
    m, k = sub.num_problems, sub.num_variables
    if arr.ndim == 3 and arr.shape[0] == m and arr.shape[2] == k:
        e = sub.energies(arr)
        arr = arr[np.arange(m), np.argmin(e, axis=1)]
    if arr.shape != (m, k):
        raise ProblemError(
            f"solve must return spins of shape ({m}, {k}) or ({m}, reads, {k}), or an object "
            f"with .best (got shape {arr.shape})"
        )
    if not np.all(np.abs(arr) == 1):
        raise ProblemError("solve must return spins that are exactly +1 or -1")
    return arr.astype(np.int8)


def solve_blockwise(
    batch: IsingBatch,
    solve: Callable[[IsingBatch], Any],
    max_block_vars: int,
    initial: Any,
    *,
    sweeps: int = 1,
    rng: np.random.Generator | int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Block-coordinate descent: solve each block with the other spins fixed.

    For ``sweeps`` passes over :func:`split_blocks` ``(n, max_block_vars, rng=rng)``,
    each block's restricted problems (:func:`restrict_to_block`) go to ``solve``;
    a problem's block is replaced only where the solver's spins do not raise
    its energy, so energies never increase, whatever the solver.

    Args:
        batch: The ``m`` problems.
        solve: ``solve(IsingBatch) -> BatchResult`` (or anything with ``.best``, or an
            array of spins ``(m, k)`` / ``(m, reads, k)``).
        max_block_vars: Largest block the solver accepts.
        initial: Starting spins, ``(m, n)`` or ``(n,)``, exactly ±1 (e.g. ``sign(-h)``).
        sweeps: Passes over all blocks, ``>= 1``.
        rng: If given, blocks are random (re-drawn each sweep from this generator).

    Returns:
        ``(spins, energies)``: ``int8`` ``(m, n)`` and ``(m,)``.

    Shape:
        initial ``(m, n)`` or ``(n,)``; spins ``(m, n)``; energies ``(m,)``.
    """
    if not isinstance(sweeps, (int, np.integer)) or isinstance(sweeps, bool) or sweeps < 1:
        raise ValueError(f"sweeps must be a positive int (got {sweeps!r})")
    m, n = batch.num_problems, batch.num_variables
    s = np.asarray(initial, dtype=np.float64)
    if s.ndim == 1:
        s = np.broadcast_to(s, (m, n))
    if s.shape != (m, n):
        raise ProblemError(f"initial must have shape ({m}, {n}) or ({n},) (got shape {s.shape})")
    if not np.all(np.abs(s) == 1):
        raise ProblemError("initial must hold spins that are exactly +1 or -1")
    spins = s.astype(np.int8)
    energies = batch.energies(spins)
    gen = None if rng is None else np.random.default_rng(rng)
    for _ in range(int(sweeps)):
        for block in split_blocks(n, max_block_vars, rng=gen):
            sub = restrict_to_block(batch, spins, block)
            cand = _best_of(solve(sub), sub)
            e_new = sub.energies(cand)
            better = e_new <= energies
            spins[np.ix_(better, block)] = cand[better]
            energies = np.where(better, e_new, energies)
    return spins, batch.energies(spins)


def solve_blockwise_many(
    batches: list[IsingBatch],
    solve_many: Callable[[list[IsingBatch], list[int]], list[Any]],
    max_block_vars: int,
    initials: list[Any],
) -> list[tuple[np.ndarray, np.ndarray]]:
    """:func:`solve_blockwise` (one sweep, contiguous blocks) of several batches in lock step.

    Round ``r`` restricts every batch to its ``r``-th block and hands all those problems to
    one ``solve_many`` call (e.g. a QPU composite that packs problems of several layers into
    each call), so a step needs as many rounds as its largest layer has blocks instead of one
    solve per block of every layer. Each batch follows exactly the descent of
    :func:`solve_blockwise`: its blocks in order, each replaced only where the energy does
    not increase.

    Args:
        batches: The batches (sizes may differ).
        solve_many: ``solve_many(subs, which) -> [result, ...]``: the restricted problems of the
            batches ``which`` (indices into ``batches``; a batch with fewer blocks drops out
            of the later rounds), one result each, as ``solve`` returns for
            :func:`solve_blockwise`.
        max_block_vars: Largest block the solver accepts.
        initials: Starting spins per batch (``(m, n)`` or ``(n,)``, exactly ±1).

    Returns:
        ``[(spins, energies), ...]`` per batch: ``int8`` ``(m, n)`` and ``(m,)``.
    """
    if len(initials) != len(batches):
        raise ValueError(
            f"initials must have one entry per batch ({len(batches)}) (got {len(initials)})"
        )
    spins, energies, blocks = [], [], []
    for batch, initial in zip(batches, initials, strict=True):
        m, n = batch.num_problems, batch.num_variables
        s = np.asarray(initial, dtype=np.float64)
        if s.ndim == 1:
            s = np.broadcast_to(s, (m, n))
        if s.shape != (m, n):
            raise ProblemError(
                f"initial must have shape ({m}, {n}) or ({n},) (got shape {s.shape})"
            )
        if not np.all(np.abs(s) == 1):
            raise ProblemError("initial must hold spins that are exactly +1 or -1")
        spins.append(s.astype(np.int8))
        energies.append(batch.energies(spins[-1]))
        blocks.append(split_blocks(n, max_block_vars))
    for r in range(max(len(b) for b in blocks)):
        active = [i for i in range(len(batches)) if r < len(blocks[i])]
        subs = [restrict_to_block(batches[i], spins[i], blocks[i][r]) for i in active]
        results = solve_many(subs, active)
        if len(results) != len(subs):
            raise ProblemError(
                f"solve_many must return one result per batch ({len(subs)}) (got {len(results)})"
            )
        for i, sub, res in zip(active, subs, results, strict=True):
            cand = _best_of(res, sub)
            e_new = sub.energies(cand)
            better = e_new <= energies[i]
            spins[i][np.ix_(better, blocks[i][r])] = cand[better]
            energies[i] = np.where(better, e_new, energies[i])
    return [(s, b.energies(s)) for s, b in zip(spins, batches, strict=True)]
