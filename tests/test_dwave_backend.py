"""The QPU code path: offline over MockDWaveSampler, and a live test that skips without credentials."""

from __future__ import annotations

import os

import dimod
import numpy as np
import pytest

pytest.importorskip("dwave.system")

from qsgd.errors import ConfigError, ProblemTooLargeError  # noqa: E402
from qsgd.samplers import get_sampler, solve_batch  # noqa: E402
from qsgd.samplers.dwave import clear_embedding_cache, embedding_cache_info  # noqa: E402
from qsgd.testing import brute_force_minimum, random_batch  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_embedding_cache()
    yield
    clear_embedding_cache()


def test_embedding_computed_once_and_reused_across_calls():
    sampler = get_sampler("mock-dwave")
    batch = random_batch(12, 3, seed=2)
    first = solve_batch(sampler, batch, num_reads=5, seed=0)
    assert embedding_cache_info() == {"hits": 2, "misses": 1, "size": 1}
    assert first.info["embedding_cache_hit"] == [False, True, True]
    again = get_sampler("mock-dwave")  # a new backend object on the same solver hits the cache
    solve_batch(again, batch, num_reads=5, seed=0)
    assert embedding_cache_info() == {"hits": 5, "misses": 1, "size": 1}
    solve_batch(again, random_batch(6, 1), num_reads=5, seed=0)
    assert embedding_cache_info()["misses"] == 2 and embedding_cache_info()["size"] == 2


def test_mock_reports_chain_figures_and_reaches_the_optimum():
    batch = random_batch(16, 2, seed=5)
    res = solve_batch(get_sampler("mock-dwave"), batch, num_reads=10, seed=1)
    info = res.info
    assert 0.0 <= info["chain_break_fraction"] <= 1.0
    assert info["max_chain_length"] > 1 and info["num_qubits"] > 16
    assert info["chain_strength"] > 0
    np.testing.assert_allclose(res.best_energy, brute_force_minimum(batch))
    np.testing.assert_allclose(res.energies, batch.energies(res.samples))


def test_broken_chains_are_majority_voted_to_integer_spins():
    # a tiny chain strength breaks chains; results must still be exact ±1 spins
    batch = random_batch(16, 1, seed=7)
    res = solve_batch(get_sampler("mock-dwave"), batch, num_reads=10, seed=3, chain_strength=0.01)
    assert res.info["chain_break_fraction"] > 0
    assert res.samples.dtype == np.int8 and set(np.unique(res.samples)) <= {-1, 1}
    np.testing.assert_allclose(res.energies, batch.energies(res.samples))


def test_same_seed_same_samples_and_labels_preserved():
    sampler = get_sampler("mock-dwave")
    bqm = dimod.BQM(
        {"a": 1.0, "b": -0.5, "c": 0.2}, {("a", "b"): 1.0, ("b", "c"): -2.0}, 0.0, "SPIN"
    )
    s1 = sampler.sample(bqm, seed=4, num_reads=5)
    s2 = sampler.sample(bqm, seed=4, num_reads=5)
    assert set(s1.variables) == {"a", "b", "c"}
    np.testing.assert_array_equal(s1.record.sample, s2.record.sample)
    dimod.testing.assert_sampleset_energies(s1, bqm)


def test_too_large_for_the_chip_suggests_max_block_vars():
    with pytest.raises(
        ProblemTooLargeError,
        match=r"largest clique embedding: 24 variables\); set max_block_vars <= 24",
    ):
        solve_batch(get_sampler("mock-dwave"), random_batch(30, 1), num_reads=2)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (
            {"topology_type": "ring"},
            r"topology_type must be 'pegasus', 'chimera' or 'zephyr' \(got 'ring'\)",
        ),
        ({"substitute": "qbsolv"}, r"substitute must be 'tabu' or 'neal' \(got 'qbsolv'\)"),
        ({"num_reads": 0}, r"num_reads must be a positive int \(got 0\)"),
        ({"chain_strength": -1.0}, r"chain_strength must be a positive number \(got -1.0\)"),
        ({"fallback": "mock-dwave"}, r"fallback must be one of .* \(got 'mock-dwave'\)"),
    ],
)
def test_mock_bad_options(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        get_sampler("mock-dwave", **kwargs)


def test_mock_unknown_run_option_names_accepted_ones():
    with pytest.raises(
        ConfigError,
        match=r"unknown run option 'num_sweeps' for backend 'mock-dwave'; accepted options: annealing_time, chain_strength, num_reads, seed",
    ):
        solve_batch(get_sampler("mock-dwave"), random_batch(4, 1), num_sweeps=10)


def _has_credentials() -> bool:
    if os.environ.get("DWAVE_API_TOKEN"):
        return True
    try:
        from dwave.cloud.config import load_config

        return bool(load_config().get("token"))
    except Exception:
        return False


@pytest.mark.live_dwave
@pytest.mark.skipif(
    not _has_credentials(), reason="no D-Wave credentials (dwave config create / DWAVE_API_TOKEN)"
)
def test_live_qpu_solves_a_small_batch():  # pragma: no cover - needs hardware access
    batch = random_batch(8, 2, seed=0)
    res = solve_batch(get_sampler("dwave"), batch, num_reads=50)
    assert res.samples.shape == (2, 50, 8)
    assert 0.0 <= res.info["chain_break_fraction"] <= 1.0
    np.testing.assert_allclose(res.energies, batch.energies(res.samples))
