"""qsgd.samplers.packing: several problems per QPU call, on the mock-dwave Pegasus backend."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from qsgd.errors import ConfigError, ProblemTooLargeError
from qsgd.ising import IsingBatch
from qsgd.samplers import get_sampler, solve_batch
from qsgd.samplers.dwave import clique_embedding
from qsgd.samplers.packing import (
    PackedQPUSampler,
    calls_per_layer,
    clear_packing_cache,
    pack_clique_embeddings,
    packing_cache_info,
)

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def small_qpu():
    """Pegasus P4 mock (264 qubits) with simulated annealing on the embedded problem."""
    return get_sampler(
        "mock-dwave", topology_shape=[4], substitute="neal", num_sweeps=300, num_reads=8
    )


@pytest.fixture(scope="module")
def p16_qpu():
    return get_sampler(
        "mock-dwave", topology_shape=[16], substitute="neal", num_sweeps=300, num_reads=10
    )


def layer_batch(seed: int, m: int, n: int, field: float = 1.0) -> IsingBatch:
    rng = np.random.default_rng(seed)
    X = np.sign(rng.standard_normal((8, n)))
    J = X.T @ X / (8 * n)
    np.fill_diagonal(J, 0.0)
    z = rng.standard_normal((m, n))
    h = (
        field * np.sign(z) * (1.0 + np.abs(z)) if field > 1 else z
    )  # field > 1: |h_i| > sum_j |J_ij|
    return IsingBatch.from_arrays(h, J)


def check_embeddings(embs, n, graph):
    used = [q for e in embs for chain in e.values() for q in chain]
    assert len(used) == len(set(used)), "embeddings overlap"
    for e in embs:
        assert sorted(e) == list(range(n))
        for chain in e.values():  # every chain is connected
            assert len(chain) == 1 or graph.subgraph(chain).number_of_edges() >= len(chain) - 1
        for a, b in itertools.combinations(range(n), 2):  # every pair of chains is coupled
            assert any(graph.has_edge(p, q) for p in e[a] for q in e[b])


def test_disjoint_clique_embeddings(small_qpu):
    clear_packing_cache()
    graph = small_qpu.child.to_networkx_graph()
    embs = pack_clique_embeddings(6, graph, solver_id="p4-test")
    assert len(embs) >= 4
    check_embeddings(embs, 6, graph)
    single, _ = clique_embedding(6, graph, "p4-test-single")
    assert embs[0] == single  # the first one is the single-problem embedding
    assert packing_cache_info()["size"] == 1
    assert pack_clique_embeddings(6, graph, solver_id="p4-test", max_problems=2) == embs[:2]
    assert len(pack_clique_embeddings(6, graph, max_problems=3)) == 3
    with pytest.raises(ConfigError, match=r"max_problems must be a positive int \(got 0\)"):
        pack_clique_embeddings(6, graph, max_problems=0)


def test_packed_samples_split_back_to_the_right_problem(small_qpu):
    # strong, distinct fields: the optimum of problem k is -sign(h_k); a mixed-up split fails
    b = layer_batch(0, m=7, n=6, field=5.0)
    packed = PackedQPUSampler(small_qpu, problems_per_call=3)
    res = solve_batch(packed, b, seed=1)
    assert res.samples.shape == (7, 8, 6) and res.samples.dtype == np.int8
    np.testing.assert_array_equal(res.best, -np.sign(b.h).astype(np.int8))
    np.testing.assert_allclose(res.energies, b.energies(res.samples))
    assert res.info["calls"] == 3 and res.info["problems_per_call"] == 3
    assert res.info["chain_break_fractions"].shape == (7,)
    again = solve_batch(packed, b, seed=1)
    np.testing.assert_array_equal(res.samples, again.samples)  # seeded mock: reproducible


def test_packed_reaches_optimum_like_single_calls(small_qpu):
    b = layer_batch(1, m=6, n=8)
    exact = solve_batch(get_sampler("exact"), b)
    packed = solve_batch(PackedQPUSampler(small_qpu), b, seed=2)
    assert packed.info["calls"] == calls_per_layer(6, packed.info["problems_per_call"])
    assert packed.info["problems_per_call"] >= 2
    np.testing.assert_allclose(packed.best_energy, exact.best_energy, atol=1e-9)


def test_too_many_problems_says_how_many_fit(small_qpu):
    packed = PackedQPUSampler(small_qpu)
    fit = packed.capacity(6)
    b = layer_batch(2, m=fit + 2, n=6)
    with pytest.raises(
        ProblemTooLargeError,
        match=rf"problems_per_call={fit + 1} problems of 6 variables .* at most {fit} fit per call",
    ):
        solve_batch(packed, b, problems_per_call=fit + 1, seed=0)
    with pytest.raises(ProblemTooLargeError, match=r"does not embed .* max_block_vars"):
        solve_batch(packed, layer_batch(3, m=2, n=40), seed=0)


def test_bad_input(small_qpu):
    with pytest.raises(TypeError, match=r"backend must be a QPUBackend"):
        PackedQPUSampler(get_sampler("neal"))
    with pytest.raises(ConfigError, match=r"problems_per_call must be a positive int \(got 0\)"):
        PackedQPUSampler(small_qpu, problems_per_call=0)
    with pytest.raises(ConfigError, match=r"num_reads must be a positive int \(got -1\)"):
        PackedQPUSampler(small_qpu).sample_batch(layer_batch(0, 2, 4), num_reads=-1)
    with pytest.raises(ConfigError, match=r"problems_per_call must be a positive int"):
        calls_per_layer(10, 0)


def test_p16_fits_four_fan_in_32_problems_with_no_more_chain_breaks(p16_qpu):
    packed = PackedQPUSampler(p16_qpu, problems_per_call=4)
    embs = packed.embeddings(32, max_problems=4)
    assert len(embs) == 4  # the target: >= 4 per-neuron problems per call at fan-in 32
    b = layer_batch(4, m=8, n=32)
    res = solve_batch(packed, b, seed=0)
    single = solve_batch(p16_qpu, b, seed=0)
    assert res.info["calls"] == 2
    assert res.info["chain_strength"] == pytest.approx(single.info["chain_strength"])
    # same chain strength and chain lengths: chain breaks no worse (up to sampling noise)
    assert res.info["chain_break_fraction"] <= single.info["chain_break_fraction"] + 0.02
    assert (
        np.median(res.best_energy - single.best_energy) <= 0.05 * np.abs(single.best_energy).mean()
    )
