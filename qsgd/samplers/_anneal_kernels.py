"""Numba kernels of the ``batched`` annealer (the algorithm is described in :mod:`qsgd.samplers.batched`).

Two kernel families run the same Metropolis sweeps (spins visited in order ``0..n-1``, a flip
with energy change ``dE`` accepted with probability ``min(1, exp(-beta dE))``, one beta per sweep):

* **fast** (default, :func:`run_fast`): float32, chains in lane groups of ``nl`` (8 to 64)
  annealed in lock step with the loops over lanes innermost and branch-free, so LLVM vectorises
  the local field, the random numbers, the exponential and the Metropolis test across lanes.
  Two local-field representations:

  - ``"factor"``: ``u = F s`` (``r`` values per chain); the field of spin ``i`` is
    ``h_i + scale (F[:, i] . u - ||F[:, i]||^2 s_i)``; after the decision ``u += delta F[:, i]``,
    fused with the dot product for spin ``i + 1``: ``O(r)`` per visit.
  - ``"dense"``: the local fields ``lf = h + J s`` (``n`` values per chain); a visit reads
    ``lf_i``; a sweep step where some lane flipped adds ``delta J[i, :]`` to every lane's
    ``lf``: ``O(n)`` per visit with a flip in the group, ``O(1)`` otherwise.

  ``u`` or ``lf`` is recomputed from the spins every ``refresh`` sweeps so float32 rounding
  cannot accumulate. Random numbers: one xoshiro128+ generator per chain (seeded by splitmix64
  from that chain's 64-bit seed), 24-bit uniforms ``(k + 1/2) 2^-24``. ``exp(-x)`` is
  ``P(x/32)^32`` with ``P`` the degree-7 Taylor polynomial of ``exp(-z)`` on ``[0, 0.55]``
  (relative error below 3e-6 after float32 rounding); flips with ``x > 17.3`` (probability
  below ``3e-8``, under the resolution of the uniforms) are rejected.
* **reference** (:func:`run_reference`): the float64 kernels the fast ones replaced, kept to pin
  the fast kernels' energies in the tests (``kernel="reference"`` in ``sample_batch``): a
  16-lane factor kernel with a xoroshiro128+ stream per chain and a per-chain dense kernel with
  xorshift64*.

Every chain's random stream depends only on its own seed, so results do not depend on the
number of threads, the lane width or the scheduling of groups onto threads.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager

import numba
import numpy as np
from numba import njit, prange

__all__ = ["run_fast", "run_reference", "lane_width", "free_cpus"]

# --------------------------------------------------------------------------- shared


@njit(cache=True, inline="always")
def _seed_state(seed: np.uint64) -> np.uint64:  # pragma: no cover - compiled
    """splitmix64 of ``seed``, never zero (the generators need a nonzero state)."""
    z = seed + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    if z == np.uint64(0):
        z = np.uint64(0x9E3779B97F4A7C15)
    return z


def free_cpus() -> int:
    """Default thread count: the CPUs this process may run on (``os.sched_getaffinity``),
    capped by numba's current thread count (``numba.get_num_threads()``: ``NUMBA_NUM_THREADS``
    unless a caller lowered it, as the experiment harness does for parallel jobs)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, numba.get_num_threads()))


@contextmanager
def _numba_threads(num_threads: int) -> Iterator[None]:
    """Run numba's parallel loops on ``num_threads`` threads, one group at a time (dynamic
    chunks of 1, so a thread that is slowed down by other jobs does not hold the others up);
    numba's previous settings are restored afterwards."""
    threads = numba.get_num_threads()
    numba.set_num_threads(max(1, min(num_threads, numba.config.NUMBA_NUM_THREADS)))
    chunk = numba.set_parallel_chunksize(1)
    try:
        yield
    finally:
        numba.set_parallel_chunksize(chunk)
        numba.set_num_threads(threads)


def lane_width(num_chains: int, num_threads: int) -> int:
    """Chains per lock-step group: 64, or fewer (a multiple of 8) so every thread gets a group."""
    per_thread = -(-num_chains // max(1, num_threads))
    return int(min(64, max(8, -(-per_thread // 8) * 8)))


# --------------------------------------------------------------------------- fast (float32)

_F0 = np.float32(0.0)
_F1 = np.float32(1.0)
_HALF = np.float32(0.5)
_M2 = np.float32(-2.0)
_INV24 = np.float32(2.0**-24)
_INV32 = np.float32(1.0 / 32.0)
# exp(-17.3) = 3.1e-8 < 2^-25, the smallest uniform: flips beyond are rejected outright
_XMAX = np.float32(17.3)
_P1, _P2, _P3, _P4, _P5, _P6, _P7 = (np.float32((-1) ** k / math.factorial(k)) for k in range(1, 8))
_U8 = np.uint32(8)
_U9 = np.uint32(9)
_U11 = np.uint32(11)
_U21 = np.uint32(21)


@njit(cache=True, inline="always")
def _seed_xoshiro(seed, st, c, nl):  # pragma: no cover - compiled
    """Seed lane ``c``'s xoshiro128+ state (``st[k * nl + c]``, k = 0..3) from a 64-bit seed."""
    a = _seed_state(seed)
    b = _seed_state(a)
    st[c] = np.uint32(a & np.uint64(0xFFFFFFFF))
    st[nl + c] = np.uint32(a >> np.uint64(32))
    st[2 * nl + c] = np.uint32(b & np.uint64(0xFFFFFFFF))
    st[3 * nl + c] = np.uint32(b >> np.uint64(32)) | np.uint32(1)


@njit(cache=True, inline="always", fastmath={"contract"})
def _metropolis32(nl, field, foff, beta, s, soff, st, delta):  # pragma: no cover - compiled
    """Metropolis decisions of one spin in ``nl`` lanes; returns the number of flips.

    Lane ``c`` has spin ``s[soff + c]`` and local field ``field[foff + c]``; a flip changes the
    energy by ``dE = -2 s field``. Writes the spin change (``-2 s`` or 0) into ``delta[c]``
    and flips the spin. Branch-free, so the loop vectorises across lanes.
    """
    flips = 0
    for c in range(nl):
        s0 = st[c]
        s1 = st[nl + c]
        s2 = st[2 * nl + c]
        s3 = st[3 * nl + c]
        res = np.uint32(s0 + s3)
        t = np.uint32(s1 << _U9)
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        st[c] = s0
        st[nl + c] = s1
        st[2 * nl + c] = np.uint32(s2)
        st[3 * nl + c] = np.uint32((s3 << _U11) | (s3 >> _U21))
        rnd = (np.float32(np.int32(res >> _U8)) + _HALF) * _INV24
        sc = s[soff + c]
        de = _M2 * sc * field[foff + c]
        x = min(max(beta[c] * de, _F0), _XMAX)
        z = x * _INV32
        p = _F1 + z * (_P1 + z * (_P2 + z * (_P3 + z * (_P4 + z * (_P5 + z * (_P6 + z * _P7))))))
        p = p * p
        p = p * p
        p = p * p
        p = p * p
        p = p * p  # exp(-x) = exp(-x/32)^32
        accept = (de <= _F0) | ((rnd < p) & (x < _XMAX))
        d = _M2 * sc if accept else _F0
        flips += accept
        delta[c] = d
        s[soff + c] = sc + d
    return flips


@njit(cache=True, fastmath={"contract"})
def _factor_group(h, Ft, scale, cn, betas, s, seeds, refresh):  # pragma: no cover - compiled
    """Anneal one group of ``nl`` chains with ``u = F s`` (arrays lane-fastest, see run_fast)."""
    nl = seeds.shape[0]
    n = cn.shape[0]
    r = Ft.shape[0] // n
    num_sweeps = betas.shape[0] // nl
    st = np.empty(4 * nl, np.uint32)
    for c in range(nl):
        _seed_xoshiro(seeds[c], st, c, nl)
    u = np.zeros(r * nl, np.float32)
    dot = np.zeros(nl, np.float32)
    field = np.empty(nl, np.float32)
    delta = np.empty(nl, np.float32)
    beta = np.empty(nl, np.float32)
    for t in range(num_sweeps):
        if t % refresh == 0:  # u = F s and the dot product of spin 0, from scratch
            u[:] = _F0
            for i in range(n):
                for q in range(r):
                    f = Ft[i * r + q]
                    for c in range(nl):
                        u[q * nl + c] += f * s[i * nl + c]
            dot[:] = _F0
            for q in range(r):
                f = Ft[q]
                for c in range(nl):
                    dot[c] += f * u[q * nl + c]
        for c in range(nl):
            beta[c] = betas[t * nl + c]
        for i in range(n):
            cni = cn[i]
            off = i * nl
            for c in range(nl):
                field[c] = h[off + c] + scale * (dot[c] - cni * s[off + c])
            _metropolis32(nl, field, 0, beta, s, off, st, delta)
            j = i + 1 if i + 1 < n else 0
            dot[:] = _F0
            for q in range(r):  # u += delta F[:, i], fused with dot = F[:, j] . u
                fi = Ft[i * r + q]
                fj = Ft[j * r + q]
                for c in range(nl):
                    v = u[q * nl + c] + delta[c] * fi
                    u[q * nl + c] = v
                    dot[c] += fj * v


@njit(cache=True, fastmath={"contract"})
def _dense_group(h, J, betas, s, seeds, refresh):  # pragma: no cover - compiled
    """Anneal one group of ``nl`` chains with local fields ``lf = h + J s``.

    ``h``, ``betas`` and ``s`` are lane-fastest as in the factor kernel; ``lf`` is lane-major
    (``lf[c * n + j]``) so that a flip in lane ``c`` adds ``delta_c J[i, :]`` to one contiguous
    row: ``O(n)`` per flip, vectorised over ``j``, and nothing for a rejected move.
    """
    nl = seeds.shape[0]
    n = J.shape[0]
    num_sweeps = betas.shape[0] // nl
    st = np.empty(4 * nl, np.uint32)
    for c in range(nl):
        _seed_xoshiro(seeds[c], st, c, nl)
    lf = np.empty(nl * n, np.float32)
    field = np.empty(nl, np.float32)
    delta = np.empty(nl, np.float32)
    beta = np.empty(nl, np.float32)
    for t in range(num_sweeps):
        if t % refresh == 0:  # lf = h + J s from scratch
            for c in range(nl):
                row = lf[c * n : (c + 1) * n]
                for i in range(n):
                    row[i] = h[i * nl + c]
                for j in range(n):  # J is symmetric: row j of J is column j
                    sj = s[j * nl + c]
                    for i in range(n):
                        row[i] += J[j, i] * sj
        for c in range(nl):
            beta[c] = betas[t * nl + c]
        for i in range(n):
            for c in range(nl):
                field[c] = lf[c * n + i]
            if _metropolis32(nl, field, 0, beta, s, i * nl, st, delta) > 0:
                for c in range(nl):
                    d = delta[c]
                    if d != _F0:
                        for j in range(n):
                            lf[c * n + j] += d * J[i, j]


@njit(parallel=True, cache=True)
def _factor_groups(hG, Ft, scale, cn, bG, sG, seedG, refresh):  # pragma: no cover - compiled
    for g in prange(sG.shape[0]):
        _factor_group(hG[g], Ft, scale, cn, bG[g], sG[g], seedG[g], refresh)


@njit(parallel=True, cache=True)
def _dense_groups(hG, J, bG, sG, seedG, refresh):  # pragma: no cover - compiled
    for g in prange(sG.shape[0]):
        _dense_group(hG[g], J, bG[g], sG[g], seedG[g], refresh)


def _lanes(a: np.ndarray, num_groups: int, nl: int, dtype=np.float32) -> np.ndarray:
    """``(num_groups * nl, X)`` -> ``(num_groups, X * nl)``, lane index fastest."""
    x = a.shape[1]
    out = np.asarray(a, dtype=dtype).reshape(num_groups, nl, x).transpose(0, 2, 1)
    return np.ascontiguousarray(out).reshape(num_groups, x * nl)


def run_fast(
    h: np.ndarray,
    J: np.ndarray | None,
    factor: np.ndarray | None,
    factor_scale: float,
    betas: np.ndarray,
    spins: np.ndarray,
    seeds: np.ndarray,
    num_reads: int,
    num_threads: int,
    refresh: int = 16,
    lanes_only: bool = False,
) -> np.ndarray:
    """Anneal every chain with the float32 kernels: the factor one when ``factor`` is given,
    else the dense one, or its blocked form from ``BLOCKED_MIN_SPINS`` spins, and the
    independent-spin one when there are no couplings (:mod:`qsgd.samplers._anneal_blocked`).

    Args:
        h: Fields ``(m, n)``.
        J: Couplings ``(n, n)`` (used when ``factor`` is None).
        factor: ``F`` ``(r, n)`` with ``J == factor_scale * offdiag(F.T @ F)``, or None.
        factor_scale: Scale of the factorised couplings.
        betas: ``(m, num_sweeps)`` inverse temperatures.
        spins: ``(m * num_reads, n)`` ±1 initial states; chain ``c`` solves problem
            ``c // num_reads``.
        seeds: ``(m * num_reads,)`` uint64, one per chain.
        num_reads: Chains per problem.
        num_threads: Threads for the parallel loop over groups.
        refresh: Sweeps between recomputations of ``u`` / ``lf`` from the spins.
        lanes_only: Use the lane kernels even where the blocked or independent-spin path
            would be taken (the tests compare the paths).

    Returns:
        Final spins, ``(m * num_reads, n)`` int8.
    """
    from qsgd.samplers import _anneal_blocked as _b

    num_chains, n = spins.shape
    nl = lane_width(num_chains, num_threads)
    couplings = J if factor is None else (factor if factor_scale != 0 else None)
    free = not lanes_only and (couplings is None or not np.any(couplings))
    if not (free or lanes_only) and factor is None and n >= _b.BLOCKED_MIN_SPINS:
        return _b.run_blocked(h, J, betas, spins, seeds, num_reads, num_threads, refresh)
    num_groups = -(-num_chains // nl)
    padded = num_groups * nl
    problem = np.minimum(np.arange(padded) // num_reads, h.shape[0] - 1)
    s0 = np.ones((padded, n), dtype=np.float32)
    s0[:num_chains] = spins
    seeds_p = np.zeros(padded, dtype=np.uint64)
    seeds_p[:num_chains] = seeds
    sG = _lanes(s0, num_groups, nl)
    hG = _lanes(h[problem], num_groups, nl)
    bG = _lanes(betas[problem], num_groups, nl)
    seedG = seeds_p.reshape(num_groups, nl)
    with _numba_threads(num_threads):
        if free:
            _b._free_groups(hG, bG, sG, seedG)
        elif factor is not None:
            F = np.asarray(factor, dtype=np.float32)
            Ft = np.ascontiguousarray(F.T).ravel()
            cn = np.ascontiguousarray((F.astype(np.float64) ** 2).sum(axis=0), dtype=np.float32)
            _factor_groups(hG, Ft, np.float32(factor_scale), cn, bG, sG, seedG, refresh)
        else:
            J32 = np.ascontiguousarray(J, dtype=np.float32)
            _dense_groups(hG, J32, bG, sG, seedG, refresh)
    out = sG.reshape(num_groups, n, nl).transpose(0, 2, 1).reshape(padded, n)
    return out[:num_chains].astype(np.int8)


# --------------------------------------------------------------------------- reference (float64)

# Chains annealed in lock step by one task of the reference factor kernel.
_LANES = 16
# Above this value of beta * dE the acceptance probability exp(-beta dE) < 2e-18: reject outright.
_MAX_EXPONENT = 40.0
_POW2NEG = np.array([2.0**-k for k in range(64)])


@njit(cache=True, inline="always")
def _xorshift(state: np.uint64) -> tuple[np.uint64, float]:  # pragma: no cover - compiled
    """One xorshift64* step: the new state and a uniform float in [0, 1)."""
    state ^= state >> np.uint64(12)
    state ^= state << np.uint64(25)
    state ^= state >> np.uint64(27)
    out = state * np.uint64(0x2545F4914F6CDD1D)
    return state, float(out >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@njit(cache=True, inline="always")
def _metropolis_lanes(off, de, beta, s, st0, st1, delta, pow2neg):  # pragma: no cover
    """Metropolis decision for the 16 chains of a reference group at spin offset ``off``.

    Every lane draws one xoroshiro128+ number per visit; ``exp(-x)`` for ``x = beta dE``
    clipped to ``[0, 40]`` is ``2^-k exp(-t)`` (``k = floor(x log2 e)`` from a table,
    ``exp(-t)`` from its degree-9 Taylor polynomial). Writes the spin change into ``delta``.
    """
    for c in range(_LANES):
        a = st0[c]
        b = st1[c]
        res = a + b
        b ^= a
        st0[c] = ((a << np.uint64(24)) | (a >> np.uint64(40))) ^ b ^ (b << np.uint64(16))
        st1[c] = (b << np.uint64(37)) | (b >> np.uint64(27))
        rnd = np.float64(res >> np.uint64(11)) * (1.0 / 9007199254740992.0)
        x = min(max(beta[c] * de[c], 0.0), _MAX_EXPONENT)
        y = x * 1.4426950408889634
        k = np.int64(y)
        t = (y - k) * 0.6931471805599453
        p = 1.0 + t * (
            -1.0
            + t
            * (
                0.5
                + t
                * (
                    -1.0 / 6.0
                    + t
                    * (
                        1.0 / 24.0
                        + t
                        * (
                            -1.0 / 120.0
                            + t
                            * (
                                1.0 / 720.0
                                + t * (-1.0 / 5040.0 + t * (1.0 / 40320.0 + t * (-1.0 / 362880.0)))
                            )
                        )
                    )
                )
            )
        )
        p = p * pow2neg[k]
        acc = (de[c] <= 0.0) | (rnd < p)
        sc = s[off + c]
        d = -2.0 * sc * acc
        delta[c] = d
        s[off + c] = sc + d


@njit(parallel=True, cache=True)
def _anneal_factor_ref(hG, Ft, scale, colnorm2, bG, sG, seeds):  # pragma: no cover
    """Reference: groups of 16 chains in lock step using ``u = F s`` (float64, parallel over groups).

    Shape:
        hG ``(G, n * 16)``, Ft ``(n * r,)`` (``F.T`` flattened), colnorm2 ``(n,)``,
        bG ``(G, sweeps * 16)``, sG ``(G, n * 16)`` float64 ±1, seeds ``(G, 16)`` uint64.
    """
    num_groups = sG.shape[0]
    n = colnorm2.shape[0]
    r = Ft.shape[0] // n
    num_sweeps = bG.shape[1] // _LANES
    pow2neg = _POW2NEG
    for g in prange(num_groups):
        s = sG[g].copy()
        h = hG[g]
        bg = bG[g]
        st0 = np.empty(_LANES, np.uint64)
        st1 = np.empty(_LANES, np.uint64)
        for c in range(_LANES):
            st0[c] = _seed_state(seeds[g, c])
            st1[c] = _seed_state(st0[c])
        u = np.zeros(r * _LANES)
        for i in range(n):
            for q in range(r):
                f = Ft[i * r + q]
                for c in range(_LANES):
                    u[q * _LANES + c] += f * s[i * _LANES + c]
        dot = np.empty(_LANES)
        de = np.empty(_LANES)
        delta = np.empty(_LANES)
        beta = np.empty(_LANES)
        for t in range(num_sweeps):
            for c in range(_LANES):
                beta[c] = bg[t * _LANES + c]
            for i in range(n):
                for c in range(_LANES):
                    dot[c] = 0.0
                for q in range(r):
                    f = Ft[i * r + q]
                    for c in range(_LANES):
                        dot[c] += f * u[q * _LANES + c]
                cn = colnorm2[i]
                off = i * _LANES
                for c in range(_LANES):
                    si = s[off + c]
                    de[c] = -2.0 * si * (h[off + c] + scale * (dot[c] - cn * si))
                _metropolis_lanes(off, de, beta, s, st0, st1, delta, pow2neg)
                for q in range(r):
                    f = Ft[i * r + q]
                    for c in range(_LANES):
                        u[q * _LANES + c] += delta[c] * f
        sG[g] = s


@njit(parallel=True, cache=True, fastmath=False)
def _anneal_dense_ref(h, J, betas, spins, seeds, num_reads):  # pragma: no cover
    """Reference: every chain in place with a maintained local-field vector (float64).

    Shape:
        h ``(m, n)``, J ``(n, n)``, betas ``(m, sweeps)``, spins ``(m * num_reads, n)`` int8 (in/out),
        seeds ``(m * num_reads,)``.
    """
    num_chains, n = spins.shape
    num_sweeps = betas.shape[1]
    for c in prange(num_chains):
        k = c // num_reads
        state = _seed_state(seeds[c])
        s = np.empty(n)
        for i in range(n):
            s[i] = spins[c, i]
        lf = np.empty(n)
        for i in range(n):
            acc = h[k, i]
            for j in range(n):
                acc += J[i, j] * s[j]
            lf[i] = acc
        for t in range(num_sweeps):
            beta = betas[k, t]
            for i in range(n):
                si = s[i]
                de = -2.0 * si * lf[i]
                accept = de <= 0.0
                if not accept:
                    x = beta * de
                    if x < _MAX_EXPONENT:
                        state, rnd = _xorshift(state)
                        accept = rnd < math.exp(-x)
                if accept:
                    d = -2.0 * si
                    for j in range(n):
                        lf[j] += d * J[i, j]
                    s[i] = -si
        for i in range(n):
            spins[c, i] = np.int8(s[i])


def run_reference(
    h: np.ndarray,
    J: np.ndarray | None,
    factor: np.ndarray | None,
    factor_scale: float,
    betas: np.ndarray,
    spins: np.ndarray,
    seeds: np.ndarray,
    num_reads: int,
    num_threads: int,
) -> np.ndarray:
    """Anneal every chain with the float64 reference kernels (same arguments as :func:`run_fast`)."""
    num_chains, n = spins.shape
    with _numba_threads(num_threads):
        if factor is None:
            out = np.ascontiguousarray(spins, dtype=np.int8).copy()
            _anneal_dense_ref(
                np.ascontiguousarray(h, dtype=np.float64),
                np.ascontiguousarray(J, dtype=np.float64),
                np.ascontiguousarray(betas, dtype=np.float64),
                out,
                seeds,
                num_reads,
            )
            return out
        num_groups = -(-num_chains // _LANES)
        padded = num_groups * _LANES
        problem = np.minimum(np.arange(padded) // num_reads, h.shape[0] - 1)
        s0 = np.ones((padded, n))
        s0[:num_chains] = spins
        seeds_p = np.zeros(padded, dtype=np.uint64)
        seeds_p[:num_chains] = seeds
        F = np.asarray(factor, dtype=np.float64)
        sG = _lanes(s0, num_groups, _LANES, np.float64)
        _anneal_factor_ref(
            _lanes(h[problem], num_groups, _LANES, np.float64),
            np.ascontiguousarray(F.T).ravel(),
            float(factor_scale),
            np.ascontiguousarray((F**2).sum(axis=0)),
            _lanes(betas[problem], num_groups, _LANES, np.float64),
            sG,
            seeds_p.reshape(num_groups, _LANES),
        )
    out = sG.reshape(num_groups, n, _LANES).transpose(0, 2, 1).reshape(padded, n)
    return out[:num_chains].astype(np.int8)
