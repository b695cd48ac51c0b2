"""float32 layer problems (what QPSBGD builds) against float64: energies and minimisers agree.

The optimiser builds its problems in float32 from the float32 tensors torch captured. These
tests pin what that costs on small cases solved exactly: the minimisers are the same (up to
exact ties) and every energy agrees to ~1e-6 relative to the energy scale.
"""

from __future__ import annotations

import numpy as np
import pytest

from qsgd.ising import ising_energies
from qsgd.qubo import brute_force, layer_ising


def _problem(rng: np.random.Generator, rows: int, n: int, m: int) -> tuple[np.ndarray, ...]:
    X = np.sign(rng.normal(size=(rows, n))).astype(np.float32)  # binary activations
    X[:, : n // 2] *= rng.uniform(0.1, 2.0, size=(rows, n // 2)).astype(np.float32)
    G = (rng.normal(size=(rows, m)) * 10.0 ** rng.uniform(-4, 0)).astype(np.float32)
    W = np.sign(rng.normal(size=(m, n))).astype(np.float32)
    return X, G, W


def _all_spins(n: int) -> np.ndarray:
    codes = np.arange(1 << n)
    return (((codes[:, None] >> np.arange(n)) & 1) * 2 - 1).astype(np.int8)


CASES = [
    ("binary_gradient", False, 0.0, 0.05, 1.0),
    ("binary_gradient", True, 0.0, 0.003, 30.0),
    ("projected", False, 0.0, 4.0, 0.7),
    ("projected", True, 0.5, 30.0, 3.0),
]


@pytest.mark.parametrize("formulation,normalize,damping,eta,curvature", CASES)
@pytest.mark.parametrize("rows", [4, 16])  # rank below and above n (dense and low-rank J)
def test_float32_problems_match_float64(
    formulation: str, normalize: bool, damping: float, eta: float, curvature: float, rows: int
) -> None:
    rng = np.random.default_rng(rows * 7 + len(formulation))
    n, m = 12, 5
    for _ in range(5):
        X, G, W = _problem(rng, rows, n, m)
        kw = dict(
            eta=eta,
            curvature=curvature,
            normalize=normalize,
            formulation=formulation,
            weights=W if formulation == "projected" else None,
            damping=damping,
        )
        b64 = layer_ising(X.astype(np.float64), G.astype(np.float64), **kw)
        b32 = layer_ising(X, G, dtype=np.float32, **kw)
        assert b32.h.dtype == np.float32 and b32.J.dtype == np.float32
        assert b32.factor is not None and b32.factor.dtype == np.float32
        # every configuration: float32 energies within 1e-6 of the energy scale of float64's
        S = np.broadcast_to(_all_spins(n), (m, 1 << n, n))
        e64 = b64.energies(S)
        e32 = b32.energies(S)
        scale = np.abs(e64).max(axis=1, keepdims=True) + np.abs(b64.h).sum(axis=1, keepdims=True)
        assert np.all(np.abs(e32 - e64) <= 2e-6 * scale)
        # the exact minimisers: the same, or a float64 tie closer than the float32 rounding
        s64, _ = brute_force(b64)
        s32, _ = brute_force(b32)
        e_of_32 = b64.energies(s32)
        e_of_64 = b64.energies(s64)
        same = np.all(s32 == s64, axis=1)
        assert np.all(same | (np.abs(e_of_32 - e_of_64) <= 2e-6 * scale[:, 0]))
        if rows > n:  # with rank < n many configurations tie exactly; the check above covers them
            assert same.mean() >= 0.8


def test_float32_energy_paths_agree() -> None:
    """The factor path (rank < n) and the dense path give the same float32 energies."""
    rng = np.random.default_rng(5)
    X, G, _ = _problem(rng, 6, 40, 7)
    b = layer_ising(X, G, eta=0.1, curvature=2.0, dtype=np.float32)
    spins = np.sign(rng.normal(size=(7, 3, 40))).astype(np.int8)
    via_factor = b.energies(spins)
    dense = ising_energies(b.h, b.J, b.offset, spins)
    exact = ising_energies(
        b.h.astype(np.float64), b.J.astype(np.float64), b.offset.astype(np.float64), spins
    )
    assert via_factor.dtype == np.float64
    # J itself is rounded to float32 (~6e-8 relative); the factor path uses F exactly
    np.testing.assert_allclose(via_factor, exact, rtol=0, atol=1e-6 * np.abs(exact).max())
    np.testing.assert_allclose(dense, exact, rtol=0, atol=1e-6 * np.abs(exact).max())


def test_gram_argument_gives_the_same_problems() -> None:
    """A Gram passed in (the optimiser's cache) builds the problems computed from scratch."""
    rng = np.random.default_rng(2)
    X, G, W = _problem(rng, 30, 9, 4)
    for normalize in (False, True):
        for formulation in ("binary_gradient", "projected"):
            kw = dict(
                eta=0.2,
                curvature=1.5,
                normalize=normalize,
                formulation=formulation,
                weights=W if formulation == "projected" else None,
            )
            a = layer_ising(X, G, dtype=np.float32, **kw)
            b = layer_ising(X, G, dtype=np.float32, gram=X.T @ X, **kw)
            for key in ("h", "J", "offset", "factor"):
                np.testing.assert_allclose(getattr(b, key), getattr(a, key), rtol=2e-6, atol=1e-6)
    with pytest.raises(Exception, match=r"gram must have shape \(9, 9\)"):
        layer_ising(X, G, eta=0.1, gram=np.eye(3))


def test_float64_default_is_unchanged() -> None:
    rng = np.random.default_rng(9)
    X, G, _ = _problem(rng, 8, 6, 3)
    b = layer_ising(X, G, eta=0.3)
    assert b.h.dtype == np.float64 and b.J.dtype == np.float64
    with pytest.raises(ValueError, match="dtype must be float32 or float64"):
        layer_ising(X, G, eta=0.3, dtype=np.int32)
