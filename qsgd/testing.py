"""The backend contract every annealer backend passes.

:func:`assert_backend_contract` runs a backend on seeded random problems of up to 16 spins and
checks, for each size:

1. **Shape and values**: ``samples`` are ``int8`` ±1 of shape ``(m, reads, n)``.
2. **Energies**: the energies the backend itself reports equal the Ising energy recomputed from
   its samples (so the samples are in variable order ``0..n-1``), and ``solve_batch`` returns
   reads sorted by energy.
3. **Optimality**: for every problem the best read reaches the brute-force optimum, and on
   average over the problems at least ``min_optimal_fraction`` (default 0.1) of the reads do.
4. **Determinism**: the same seed gives the same samples.
5. **dimod API**: ``dimod.testing.assert_sampler_api`` and ``assert_sampleset_energies`` on a
   direct ``sample`` call over a BQM with non-integer, shuffled labels.

The problems mix two families: dense Gaussian spin glasses (``J_ij ~ N(0, 1/n)``, ``h ~ N(0, 1)``)
and layer-like problems (``J = offdiag(XᵀX)`` of rank 4, ``h = -Xᵀg``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dimod
import dimod.testing
import numpy as np

from qsgd.ising import IsingBatch, to_bqm
from qsgd.samplers.registry import accepted_run_options, get_sampler, solve_batch

__all__ = ["assert_backend_contract", "random_batch", "brute_force_minimum"]


def random_batch(n: int, m: int = 3, *, seed: int = 0, kind: str = "glass") -> IsingBatch:
    """A seeded random batch of ``m`` problems over ``n`` spins.

    Args:
        n: Spins per problem.
        m: Problems (they share ``J``).
        seed: RNG seed.
        kind: ``"glass"`` (dense Gaussian couplings) or ``"layer"`` (``J = offdiag(XᵀX)``, rank 4).

    Shape:
        ``h`` ``(m, n)``, ``J`` ``(n, n)``.
    """
    rng = np.random.default_rng(seed)
    if kind == "glass":
        J = np.triu(rng.normal(size=(n, n)) / np.sqrt(n), 1)
        J = J + J.T
        h = rng.normal(size=(m, n))
    elif kind == "layer":
        X = rng.normal(size=(4, n))
        J = X.T @ X / 4.0
        np.fill_diagonal(J, 0.0)
        h = -(X.T @ rng.normal(size=(4, m))).T
    else:
        raise ValueError(f"kind must be 'glass' or 'layer' (got {kind!r})")
    return IsingBatch.from_arrays(
        h, J, rng.normal(size=m), factor=X / 2.0 if kind == "layer" else None
    )


def brute_force_minimum(batch: IsingBatch) -> np.ndarray:
    """Exact minimum energy of each problem by enumerating all ``2**n`` states (``n <= 20``).

    Shape:
        returns ``(m,)``.
    """
    n = batch.num_variables
    if n > 20:
        raise ValueError(f"brute_force_minimum enumerates at most 20 spins (got n={n})")
    codes = np.arange(2**n, dtype=np.int64)[:, None] >> np.arange(n)
    states = (2 * (codes & 1) - 1).astype(np.float64)  # (2**n, n)
    lin = batch.h @ states.T  # (m, 2**n)
    quad = 0.5 * np.einsum("sn,sn->s", states @ batch.J, states)
    return (lin + quad[None, :]).min(axis=1) + batch.offset


def _filter(sampler: dimod.Sampler, options: dict[str, Any]) -> dict[str, Any]:
    accepted = accepted_run_options(sampler)
    return {k: v for k, v in options.items() if k in accepted}


def assert_backend_contract(
    name_or_sampler: str | dimod.Sampler,
    *,
    rng_seed: int = 0,
    sizes: Sequence[int] = (4, 8, 16),
    num_problems: int = 3,
    num_reads: int = 40,
    min_optimal_fraction: float = 0.1,
    run_options: dict[str, Any] | None = None,
    check_seed: bool = True,
    atol: float = 1e-8,
) -> dict[str, Any]:
    """Assert that a backend honours the qsgd sampler contract (see module docstring).

    Args:
        name_or_sampler: A registry name or a ``dimod.Sampler``.
        rng_seed: Seed of the random problems and of the sampler runs.
        sizes: Problem sizes (spins), each at most 16.
        num_problems: Problems per size and family.
        num_reads: Reads per problem (passed when the backend has ``num_reads``).
        min_optimal_fraction: Minimum mean fraction of reads at the brute-force optimum.
        run_options: Extra run options (override ``num_reads``/``seed``), filtered to those the
            backend accepts.
        check_seed: Check that the same seed gives the same samples (needs a ``seed`` option).
        atol: Tolerance of energy comparisons (scaled by the problem's magnitude).

    Returns:
        Figures: ``optimal_fraction`` per (kind, size), and ``reads``.

    Raises:
        AssertionError: with a message naming the backend, the check and the numbers.
    """
    sampler = get_sampler(name_or_sampler) if isinstance(name_or_sampler, str) else name_or_sampler
    label = name_or_sampler if isinstance(name_or_sampler, str) else type(sampler).__name__
    if any(n > 16 or n < 1 for n in sizes):
        raise ValueError(f"sizes must lie in 1..16 (got {tuple(sizes)})")

    dimod.testing.assert_sampler_api(sampler)
    opts = _filter(sampler, {"num_reads": num_reads, "seed": rng_seed, **(run_options or {})})
    figures: dict[str, Any] = {"optimal_fraction": {}}
    for kind in ("glass", "layer"):
        for n in sizes:
            batch = random_batch(n, num_problems, seed=rng_seed + 1000 * n, kind=kind)
            res = solve_batch(sampler, batch, **opts)
            tag = f"{label} on {kind} n={n}"
            m = batch.num_problems
            assert res.samples.dtype == np.int8, f"{tag}: samples dtype {res.samples.dtype} != int8"
            assert (
                res.samples.ndim == 3 and res.samples.shape[0] == m and res.samples.shape[2] == n
            ), f"{tag}: samples shape {res.samples.shape}, expected ({m}, reads, {n})"
            assert res.samples.shape[1] >= 1, f"{tag}: no reads returned"
            assert np.all(np.abs(res.samples) == 1), f"{tag}: samples are not all ±1"
            assert res.energies.shape == res.samples.shape[:2], (
                f"{tag}: energies shape {res.energies.shape} != {res.samples.shape[:2]}"
            )
            scale = 1.0 + np.abs(batch.h).sum() + np.abs(batch.J).sum()
            recomputed = batch.energies(res.samples)
            assert np.allclose(res.energies, recomputed, atol=atol * scale, rtol=0), (
                f"{tag}: returned energies differ from the Ising energies of the samples"
            )
            err = res.info.get("reported_energy_max_abs_error", 0.0)
            assert err <= atol * scale, (
                f"{tag}: energies reported by the backend differ from the Ising energy of its "
                f"samples by {err:.3g} (wrong variable order or energy convention)"
            )
            assert np.all(np.diff(res.energies, axis=1) >= -atol * scale), (
                f"{tag}: reads are not sorted by energy"
            )
            optimum = brute_force_minimum(batch)
            at_opt = np.abs(res.energies - optimum[:, None]) <= atol * scale
            assert np.all(at_opt.any(axis=1)), (
                f"{tag}: best energies {res.best_energy.round(6).tolist()} miss the brute-force "
                f"optimum {optimum.round(6).tolist()}"
            )
            frac = float(at_opt.mean())
            figures["optimal_fraction"][f"{kind}-{n}"] = frac
            assert frac >= min_optimal_fraction, (
                f"{tag}: only {frac:.2f} of reads reach the optimum (< {min_optimal_fraction})"
            )
            if check_seed and "seed" in opts:
                again = solve_batch(sampler, batch, **opts)
                assert np.array_equal(res.samples, again.samples), (
                    f"{tag}: the same seed gave different samples"
                )
    figures["reads"] = int(res.samples.shape[1])

    # dimod-level checks on a direct sample() call with non-integer, shuffled labels
    batch = random_batch(min(sizes), 1, seed=rng_seed, kind="glass")
    n = batch.num_variables
    labels = [f"v{i}" for i in np.random.default_rng(rng_seed).permutation(n)]
    bqm = to_bqm(batch, 0).relabel_variables(dict(enumerate(labels)), inplace=False)
    ss = sampler.sample(bqm, **opts)
    assert set(ss.variables) == set(labels), f"{label}: sample() changed the variable labels"
    dimod.testing.assert_sampleset_energies(ss, bqm)
    return figures
