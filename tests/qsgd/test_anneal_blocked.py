"""The blocked and independent-spin paths of the ``fast`` kernels against the lane kernels.

With integer couplings and fields every float32 sum is exact whatever its order, so the blocked
path (fields updated by ``sgemm`` after each block) must reproduce the lane kernel's row-wise
updates chain for chain; with real couplings the two part only at float32 ties, so their
energies are compared as distributions.
"""

from __future__ import annotations

import numpy as np
import pytest

from qsgd.samplers import _anneal_blocked as B
from qsgd.samplers import _anneal_kernels as K


def _problem(seed: int, m: int, n: int, reads: int, sweeps: int, integer: bool):
    rng = np.random.default_rng(seed)
    if integer:
        a = rng.integers(-3, 4, size=(n, n)).astype(np.float64)
        h = rng.integers(-20, 21, size=(m, n)).astype(np.float64)
        beta_hot, beta_cold = 0.02, 3.0
    else:
        x = rng.choice([-1.0, 1.0], size=(n // 2, n))
        a = x.T @ x / n
        h = rng.normal(size=(m, n))
        beta_hot, beta_cold = 0.05, 20.0
    J = np.triu(a, 1)
    J = J + J.T
    betas = np.tile(np.geomspace(beta_hot, beta_cold, sweeps), (m, 1))
    spins = rng.choice(np.array([-1, 1], dtype=np.int8), size=(m * reads, n))
    seeds = rng.integers(0, 2**63, size=m * reads, dtype=np.uint64)
    return h, J, betas, spins, seeds


def _energies(h, J, spins, reads):
    s = spins.astype(np.float64)
    hh = np.repeat(h, reads, axis=0)
    return (hh * s).sum(1) + 0.5 * np.einsum("ci,ij,cj->c", s, J, s)


@pytest.mark.parametrize("n, reads", [(520, 1), (533, 3)])
def test_blocked_path_reproduces_the_lane_kernel_on_exact_arithmetic(n, reads):
    h, J, betas, spins, seeds = _problem(1, m=5, n=n, reads=reads, sweeps=6, integer=True)
    args = (h, J, None, 1.0, betas, spins, seeds, reads, 1)
    lanes = K.run_fast(*args, lanes_only=True)
    blocked = K.run_fast(*args)  # n >= BLOCKED_MIN_SPINS: the blocked path
    assert n >= B.BLOCKED_MIN_SPINS
    np.testing.assert_array_equal(blocked, lanes)
    # block sizes that do not divide n, a refresh inside the run, two BLAS threads
    for block, refresh, threads in ((64, 16, 1), (7, 2, 2), (533, 1, 1)):
        out = B.run_blocked(h, J, betas, spins, seeds, reads, threads, refresh, block=block)
        np.testing.assert_array_equal(out, lanes)


def test_blocked_path_energies_match_the_lane_kernel_on_real_couplings():
    h, J, betas, spins, seeds = _problem(2, m=48, n=520, reads=2, sweeps=30, integer=False)
    args = (h, J, None, 1.0, betas, spins, seeds, 2, 1)
    e_lanes = _energies(h, J, K.run_fast(*args, lanes_only=True), 2)
    e_blocked = _energies(h, J, K.run_fast(*args), 2)
    # the same chains end at the same energy unless a float32 tie sent them apart; the mean
    # gap between the paths is far inside the chains' own spread
    spread = np.std(e_lanes)
    assert abs(np.mean(e_blocked) - np.mean(e_lanes)) < 0.1 * spread
    assert np.mean(np.isclose(e_blocked, e_lanes, rtol=1e-9, atol=1e-9)) > 0.2


@pytest.mark.parametrize("dense", [True, False])
def test_free_path_is_bit_identical_to_the_lane_kernels_without_couplings(dense):
    h, J, betas, spins, seeds = _problem(3, m=7, n=40, reads=2, sweeps=12, integer=False)
    h = h.astype(np.float32).astype(np.float64)
    if dense:
        args = (h, np.zeros_like(J), None, 1.0)
    else:  # a factor with scale 0: QP-SBGD at curvature 0
        args = (h, None, np.random.default_rng(0).normal(size=(8, 40)), 0.0)
    run = (*args, betas, spins, seeds, 2, 2)
    free = K.run_fast(*run)
    np.testing.assert_array_equal(free, K.run_fast(*run, lanes_only=True))
    # and it is the annealed minimiser at a cold end: every spin against its field
    cold = np.tile(np.geomspace(1.0, 1e4, 12), (7, 1))
    out = K.run_fast(args[0], *args[1:], cold, spins, seeds, 2, 1)
    np.testing.assert_array_equal(out, -np.sign(np.repeat(h, 2, axis=0)).astype(np.int8))
