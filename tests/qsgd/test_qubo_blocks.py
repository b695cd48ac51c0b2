"""solve_blockwise_many: several batches' block descents in lock step, one solve per round."""

from __future__ import annotations

import numpy as np
import pytest

from qsgd.errors import ProblemError
from qsgd.qubo import brute_force, layer_ising, solve_blockwise, solve_blockwise_many


def _batches() -> list:
    rng = np.random.default_rng(0)
    return [
        layer_ising(rng.normal(size=(6, n)), rng.normal(size=(6, m)), eta=0.7)
        for n, m in ((9, 4), (5, 3), (7, 2))
    ]


def test_each_batch_follows_its_own_blockwise_descent() -> None:
    batches = _batches()
    initials = [np.where(b.h <= 0, 1, -1) for b in batches]
    rounds = []

    def solve_many(subs, which):
        rounds.append(list(which))
        return [brute_force(sub)[0] for sub in subs]

    together = solve_blockwise_many(batches, solve_many, 3, initials)
    # 9 -> 3 blocks, 5 -> 2, 7 -> 3: three rounds, the 5-spin batch drops out of the last
    assert rounds == [[0, 1, 2], [0, 1, 2], [0, 2]]
    for b, init, (spins, energies) in zip(batches, initials, together, strict=True):
        alone, e_alone = solve_blockwise(b, lambda sub: brute_force(sub)[0], 3, init)
        np.testing.assert_array_equal(spins, alone)
        np.testing.assert_allclose(energies, e_alone)
        assert np.all(energies <= b.energies(init) + 1e-12)


def test_bad_arguments() -> None:
    batches = _batches()
    with pytest.raises(ValueError, match=r"initials must have one entry per batch \(3\) \(got 1\)"):
        solve_blockwise_many(batches, lambda s, w: [], 3, [np.ones(9)])
    with pytest.raises(ProblemError, match=r"one result per batch \(3\) \(got 0\)"):
        solve_blockwise_many(
            batches, lambda s, w: [], 3, [np.where(b.h <= 0, 1, -1) for b in batches]
        )
