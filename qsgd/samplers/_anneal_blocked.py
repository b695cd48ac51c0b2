"""Two more paths of the ``fast`` kernels (:mod:`qsgd.samplers._anneal_kernels`), with the same
Metropolis sweeps, random streams and schedule:

* **blocked** (:func:`run_blocked`): wide dense problems. The lane kernel's dense path adds
  ``delta J[i, :]`` to a chain's local fields at every flip; under the default schedule most
  visits of the hot sweeps flip (93 % of the 64 x 3703 visits in CiteSeer's first sweep), so a
  sweep costs about ``n^2`` multiply-adds per chain, done one row at a time. Here spins are
  visited in blocks of ``block`` spins: inside a block the decisions of every chain run in
  lock step (lanes innermost, as in the lane kernels), a spin's field adding the changes of
  the block's earlier spins through the block's own couplings; after the block, one product
  ``lf += J[block, :]^T D`` (BLAS ``sgemm``, ``D`` the spin changes) brings every chain's
  fields up to date. The same arithmetic as the row-wise updates, done at matrix-product speed.
* **free** (:func:`_free_groups`, called by ``run_fast``): no couplings (``J == 0``, e.g. QP-SBGD at curvature 0). A
  spin's field is its ``h``; nothing is updated. Bit for bit the decisions of the other paths
  (their fields are ``h + 0``), at ``O(1)`` per visit.

Fields are float32 as in the lane kernels and recomputed from the spins every ``refresh``
sweeps (one ``sgemm``). The blocked path's sums run in a different order from the row-wise
ones, so a chain's trajectory can part from the lane kernel's after a decision within float32
rounding of a tie; its energies are pinned statistically in the tests. For the same reason
BLAS may round a chain's fields differently with the number of chains in the call: a chunked
or distributed solve of such problems agrees with a local one statistically, not bit for bit
(below ``BLOCKED_MIN_SPINS`` spins it does bit for bit).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from qsgd.ising import WIDE_DENSE
from qsgd.samplers._anneal_kernels import _metropolis32, _seed_xoshiro

__all__ = ["run_blocked", "BLOCKED_MIN_SPINS"]

#: Dense problems with at least this many spins take the blocked path (``run_fast``); below
#: it the lane kernel's row-wise updates are as fast (64 layer problems, 20 sweeps: lanes
#: 0.4-0.7x the blocked path's time at 128-384 spins, blocked 1.7x faster at 512).
BLOCKED_MIN_SPINS = WIDE_DENSE
_BLOCK = 64

_controller = None


def _blas_limit(num_threads: int):
    """Context manager limiting the BLAS threads (threadpoolctl; one controller per process)."""
    global _controller
    from threadpoolctl import ThreadpoolController

    if _controller is None:
        _controller = ThreadpoolController()
    return _controller.limit(limits=max(1, int(num_threads)), user_api="blas")


@njit(cache=True)
def _init_streams(seeds):  # pragma: no cover - compiled
    nl = seeds.shape[0]
    st = np.empty(4 * nl, np.uint32)
    for c in range(nl):
        _seed_xoshiro(seeds[c], st, c, nl)
    return st


@njit(cache=True, fastmath={"contract"})
def _decide_block(lf, J, i0, i1, beta, s, st, D, field, delta):  # pragma: no cover - compiled
    """Metropolis decisions of spins ``i0..i1-1`` for every chain (``lf``, ``s``: ``(n, C)``).

    Writes the spin changes into ``D[: i1 - i0]``. ``lf`` is current up to the block's start;
    spin ``i``'s field adds the changes of the block's earlier spins, ``sum_k D[k] J[i0 + k, i]``.
    """
    nl = lf.shape[1]
    sf = s.ravel()
    for k in range(i1 - i0):
        i = i0 + k
        for c in range(nl):
            field[c] = lf[i, c]
        for k2 in range(k):
            v = J[i, i0 + k2]
            for c in range(nl):
                field[c] += D[k2, c] * v
        _metropolis32(nl, field, 0, beta, sf, i * nl, st, delta)
        for c in range(nl):
            D[k, c] = delta[c]


def run_blocked(
    h: np.ndarray,
    J: np.ndarray,
    betas: np.ndarray,
    spins: np.ndarray,
    seeds: np.ndarray,
    num_reads: int,
    num_threads: int,
    refresh: int = 16,
    block: int = _BLOCK,
) -> np.ndarray:
    """Anneal every chain on dense couplings, block by block (arguments as
    :func:`qsgd.samplers._anneal_kernels.run_fast`; ``num_threads`` BLAS threads)."""
    from scipy.linalg.blas import sgemm

    num_chains, n = spins.shape
    problem = np.arange(num_chains) // num_reads
    h_t = np.ascontiguousarray(h[problem].T, dtype=np.float32)  # (n, C): chains fastest
    b_t = np.ascontiguousarray(betas[problem].T, dtype=np.float32)  # (sweeps, C)
    s = np.ascontiguousarray(spins.T, dtype=np.float32)
    J32 = np.ascontiguousarray(J, dtype=np.float32)
    st = _init_streams(np.ascontiguousarray(seeds, dtype=np.uint64))
    D = np.empty((block, num_chains), np.float32)
    field = np.empty(num_chains, np.float32)
    delta = np.empty(num_chains, np.float32)
    lf = np.empty((n, num_chains), np.float32)
    with _blas_limit(num_threads):
        for t in range(b_t.shape[0]):
            if t % refresh == 0:  # lf = h + J s; C-order (n, C) is Fortran (C, n): lf^T += s^T J
                lf[:] = h_t
                sgemm(1.0, s.T, J32.T, 1.0, lf.T, overwrite_c=1)
            beta = b_t[t]
            for i0 in range(0, n, block):
                i1 = min(i0 + block, n)
                d = D[: i1 - i0]
                _decide_block(lf, J32, i0, i1, beta, s, st, d, field, delta)
                # lf^T (C, n) += D^T (C, k) J[i0:i1, :] (k, n), in place
                sgemm(1.0, d.T, J32[i0:i1].T, 1.0, lf.T, trans_b=1, overwrite_c=1)
    return np.ascontiguousarray(s.T).astype(np.int8)


@njit(cache=True, fastmath={"contract"})
def _free_group(h, betas, s, seeds):  # pragma: no cover - compiled
    nl = seeds.shape[0]
    n = h.shape[0] // nl
    st = np.empty(4 * nl, np.uint32)
    for c in range(nl):
        _seed_xoshiro(seeds[c], st, c, nl)
    delta = np.empty(nl, np.float32)
    beta = np.empty(nl, np.float32)
    for t in range(betas.shape[0] // nl):
        for c in range(nl):
            beta[c] = betas[t * nl + c]
        for i in range(n):
            _metropolis32(nl, h, i * nl, beta, s, i * nl, st, delta)


@njit(parallel=True, cache=True)
def _free_groups(hG, bG, sG, seedG):  # pragma: no cover - compiled
    for g in prange(sG.shape[0]):
        _free_group(hG[g], bG[g], sG[g], seedG[g])
