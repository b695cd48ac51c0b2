"""Dense-coupling energies on both sides of ``WIDE_DENSE`` (stacked products below it, one gemm
from it) against the definition, and chunk independence where it is promised (below it)."""

from __future__ import annotations

import numpy as np
import pytest

from qsgd.ising import WIDE_DENSE, ising_energies


def _batch(dtype, m, n, reads, seed=0):
    rng = np.random.default_rng(seed)
    J = np.triu(rng.normal(size=(n, n)), 1)
    J = (J + J.T).astype(dtype)
    h = rng.normal(size=(m, n)).astype(dtype)
    offset = rng.normal(size=m)
    spins = rng.choice(np.array([-1, 1], dtype=np.int8), size=(m, reads, n))
    return h, J, offset, spins


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [70, WIDE_DENSE + 8])
@pytest.mark.parametrize("reads", [1, 3])
def test_dense_energies_match_the_definition(dtype, n, reads):
    h, J, offset, spins = _batch(dtype, m=5, n=n, reads=reads)
    s = spins.astype(np.float64)
    want = (
        np.einsum("mrn,mn->mr", s, h.astype(np.float64))
        + 0.5 * np.einsum("mri,ij,mrj->mr", s, J.astype(np.float64), s)
        + offset[:, None]
    )
    tol = 2e-6 * np.sqrt(n) * n if dtype == np.float32 else 1e-9 * n
    np.testing.assert_allclose(ising_energies(h, J, offset, spins), want, rtol=0, atol=tol)
    one = ising_energies(h[:1], J, offset[:1], spins[:1, 0])  # a single row
    np.testing.assert_allclose(one, want[:1, 0], rtol=0, atol=tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_narrow_dense_energies_of_a_chunk_are_bit_identical_to_the_full_call(dtype):
    h, J, offset, spins = _batch(dtype, m=12, n=WIDE_DENSE - 12, reads=2, seed=1)
    full = ising_energies(h, J, offset, spins)
    for lo, hi in ((0, 1), (3, 4), (2, 7), (5, 12)):
        np.testing.assert_array_equal(
            ising_energies(h[lo:hi], J, offset[lo:hi], spins[lo:hi]), full[lo:hi]
        )


@pytest.mark.parametrize("n", [60, WIDE_DENSE + 8])
def test_factor_energies_match_the_dense_definition(n):
    rng = np.random.default_rng(2)
    F = rng.normal(size=(n // 2, n)).astype(np.float32)
    scale = 0.01
    F64 = F.astype(np.float64)
    J = scale * (F64.T @ F64)
    np.fill_diagonal(J, 0.0)
    h = rng.normal(size=(4, n))
    offset = np.zeros(4)
    spins = rng.choice(np.array([-1, 1], dtype=np.int8), size=(4, 2, n))
    s = spins.astype(np.float64)
    want = np.einsum("mrn,mn->mr", s, h) + 0.5 * np.einsum("mri,ij,mrj->mr", s, J, s)
    got = ising_energies(h, J, offset, spins, factor=F, factor_scale=scale)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9 * n)
