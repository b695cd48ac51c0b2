"""Tests of the ``batched`` annealer: optimality on tiny problems, determinism, API, bad input."""

from __future__ import annotations

import inspect
import itertools
import math
import os

import dimod
import numpy as np
import pytest
from dimod.testing.asserts import assert_sampler_api

from qsgd.errors import ConfigError, ProblemError
from qsgd.ising import IsingBatch
from qsgd.samplers.base import BatchResult
from qsgd.samplers.batched import BatchedAnnealer, default_beta_range, resolve_device

N = 10
ALL_SPINS = np.array(list(itertools.product([-1, 1], repeat=N)), dtype=np.int8)  # (2^N, N)


def _dense_batch(seed: int, m: int = 4, n: int = N) -> IsingBatch:
    rng = np.random.default_rng(seed)
    J = np.triu(rng.normal(size=(n, n)), 1)
    return IsingBatch.from_arrays(rng.normal(size=(m, n)), J + J.T, rng.normal(size=m))


def _factor_batch(seed: int, m: int = 4, n: int = N, r: int = 3) -> IsingBatch:
    rng = np.random.default_rng(seed)
    X = rng.choice([-1.0, 1.0], size=(r, n))
    scale = 0.4
    J = scale * X.T @ X
    np.fill_diagonal(J, 0.0)
    return IsingBatch.from_arrays(rng.normal(size=(m, n)), J, factor=X, factor_scale=scale)


def _optima(batch: IsingBatch) -> np.ndarray:
    """Brute-force ground-state energy of every problem, shape (m,)."""
    spins = np.broadcast_to(ALL_SPINS, (batch.num_problems, *ALL_SPINS.shape))
    return batch.energies(spins).min(axis=1)


@pytest.fixture(scope="module")
def sampler() -> BatchedAnnealer:
    return BatchedAnnealer()


@pytest.mark.parametrize("make", [_dense_batch, _factor_batch], ids=["dense", "factor"])
@pytest.mark.parametrize("device", ["cpu", "torch-cpu"])
def test_finds_brute_force_optimum(sampler, make, device):
    batch = make(1)
    res = sampler.sample_batch(batch, num_reads=20, num_sweeps=200, seed=3, device=device)
    opt = _optima(batch)
    assert np.allclose(res.best_energy, opt, atol=1e-9)
    hit = np.isclose(res.energies, opt[:, None], atol=1e-9).mean(axis=1)
    assert hit.min() >= 0.25, hit
    assert res.info["path"] == ("factor" if make is _factor_batch else "dense")


@pytest.mark.parametrize("device", ["cpu", "torch-cpu"])
def test_result_shape_order_and_recomputed_energies(sampler, device):
    batch = _factor_batch(2, m=3)
    res = sampler.sample_batch(batch, num_reads=7, num_sweeps=20, seed=0, device=device)
    assert isinstance(res, BatchResult)
    assert res.samples.shape == (3, 7, N) and res.samples.dtype == np.int8
    assert set(np.unique(res.samples)) <= {-1, 1}
    assert res.energies.shape == (3, 7) and res.energies.dtype == np.float64
    assert np.allclose(res.energies, batch.energies(res.samples), rtol=0, atol=1e-12)
    assert np.all(np.diff(res.energies, axis=1) >= 0)  # sorted per problem
    info = res.info
    assert info["backend"] == "batched" and info["num_sweeps"] == 20 and info["wall_time"] > 0
    assert info["device"] == ("numba-cpu" if device == "cpu" else "torch-cpu")
    assert info["beta_range"].shape == (3, 2)


@pytest.mark.parametrize("make", [_dense_batch, _factor_batch], ids=["dense", "factor"])
@pytest.mark.parametrize("device", ["cpu", "torch-cpu"])
def test_same_seed_same_samples_different_seed_differs(sampler, make, device):
    batch = make(4, m=3, n=40)
    kw = dict(num_reads=5, num_sweeps=10, device=device)
    a = sampler.sample_batch(batch, seed=11, **kw)
    b = sampler.sample_batch(batch, seed=11, **kw)
    c = sampler.sample_batch(batch, seed=12, **kw)
    assert np.array_equal(a.samples, b.samples)
    assert not np.array_equal(a.samples, c.samples)


def test_thread_count_does_not_change_results(sampler):
    # Every chain has its own random stream seeded from `seed`: results do not depend on how
    # many threads numba uses or how chains are scheduled onto them.
    batch = _factor_batch(5, m=5, n=30)
    kw = dict(num_reads=3, num_sweeps=15, seed=7, device="cpu")
    full = sampler.sample_batch(batch, **kw)
    again = sampler.sample_batch(batch, **kw)
    assert np.array_equal(full.samples, again.samples)
    import numba

    old = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        single = sampler.sample_batch(batch, **kw)
    finally:
        numba.set_num_threads(old)
    assert np.array_equal(full.samples, single.samples)


_THREADS_SCRIPT = """
import numpy as np, torch
from qsgd.ising import IsingBatch
from qsgd.samplers.batched import BatchedAnnealer
torch.set_num_threads(1)
rng = np.random.default_rng(0)
J = np.triu(rng.normal(size=(6, 6)), 1)
batch = IsingBatch.from_arrays(rng.normal(size=(2, 6)), J + J.T)
for _ in range(2):  # the first call starts numba's thread pool
    BatchedAnnealer().sample_batch(batch, num_reads=2, num_sweeps=5, seed=0, device="cpu")
    print(torch.get_num_threads())
"""


def test_numba_thread_pool_does_not_change_torch_threads():
    """The first parallel numba call of a process (OpenMP layer) resets the OpenMP thread count
    that torch reads; sample_batch puts torch's count back. Otherwise torch's reductions split
    differently after the first solve and a resumed run drifts in the last bits. A fresh
    process is needed: the pool starts once per process."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", _THREADS_SCRIPT],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NUMBA_NUM_THREADS": "2"},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "1"]


def test_factor_path_matches_dense_path_quality(sampler):
    fb = _factor_batch(6, m=8, n=48, r=6)
    db = IsingBatch(fb.h, fb.J, fb.offset)  # same problems, no factor
    kw = dict(num_reads=10, num_sweeps=150, seed=1, device="cpu")
    rf = sampler.sample_batch(fb, **kw)
    rd = sampler.sample_batch(db, **kw)
    assert rf.info["path"] == "factor" and rd.info["path"] == "dense"
    scale = np.abs(rd.best_energy).max()
    assert np.median(rf.best_energy - rd.best_energy) <= 1e-3 * scale
    assert np.abs(rf.best_energy - rd.best_energy).max() <= 0.05 * scale


@pytest.mark.parametrize("make", [_dense_batch, _factor_batch], ids=["dense", "factor"])
def test_torch_path_agrees_with_numba_in_quality(sampler, make):
    batch = make(7, m=6, n=32)
    kw = dict(num_reads=8, num_sweeps=100, seed=2)
    rn = sampler.sample_batch(batch, device="cpu", **kw)
    rt = sampler.sample_batch(batch, device="torch-cpu", **kw)
    scale = np.abs(rn.best_energy).max()
    assert np.abs(np.median(rt.best_energy - rn.best_energy)) <= 0.02 * scale


def test_annealing_beats_random_states(sampler):
    batch = _factor_batch(8, m=4, n=60, r=5)
    res = sampler.sample_batch(batch, num_reads=4, num_sweeps=50, seed=0, device="cpu")
    rand = np.random.default_rng(0).choice([-1, 1], size=(4, 200, 60))
    assert np.all(res.best_energy < batch.energies(rand).min(axis=1))


def test_initial_states_and_warm_start(sampler):
    batch = _dense_batch(9, m=2)
    init = np.ones((2, 3, N), dtype=np.int8)
    cold = (1e6, 1e6)  # frozen: only downhill moves, so no read ends above its start
    res = sampler.sample_batch(
        batch, num_reads=3, num_sweeps=1, beta_range=cold, initial_states=init, device="cpu"
    )
    assert np.all(res.energies <= batch.energies(init) + 1e-12)
    # (num_reads, n) initial states are shared by all problems
    res2 = sampler.sample_batch(
        batch, num_reads=3, num_sweeps=1, beta_range=cold, initial_states=init[0], device="cpu"
    )
    assert np.array_equal(res.samples, res2.samples)
    # warm start from sign(-h): with J = 0 this is already optimal and a frozen run keeps it
    free = IsingBatch.from_arrays(batch.h, np.zeros((N, N)))
    for device in ("cpu", "torch-cpu"):
        ws = sampler.sample_batch(
            free, num_reads=2, num_sweeps=2, beta_range=cold, warm_start=True, device=device
        )
        assert np.array_equal(ws.samples[:, 0], np.where(batch.h > 0, -1, 1))


def test_default_beta_range():
    batch = _factor_batch(10, m=3)
    br = default_beta_range(batch)
    assert br.shape == (3, 2) and np.all(br > 0) and np.all(br[:, 0] < br[:, 1])
    # scale invariance: multiplying the energy by 10 divides beta by 10
    scaled = IsingBatch.from_arrays(10 * batch.h, 10 * batch.J)
    assert np.allclose(default_beta_range(scaled), br / 10)
    zero = IsingBatch.from_arrays(np.zeros((1, 3)), np.zeros((3, 3)))
    assert np.array_equal(default_beta_range(zero), [[1.0, 1.0]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_default_beta_range_is_its_documented_formula(dtype):
    """The fast form (max/min of s^2, then one sqrt) gives the bits of the formula in the
    docstring: s = sqrt(h^2 + sum_j J_ij^2), hot ln 2 / (2 max s), cold ln 100 / (2 min s / sqrt n)
    over spins with s > 0."""
    rng = np.random.default_rng(3)
    m, n = 6, 40
    h = rng.normal(size=(m, n)).astype(dtype)
    J = np.triu(rng.normal(size=(n, n)), 1).astype(dtype)
    J = J + J.T
    J[2, :] = J[:, 2] = 0
    h[:, 2] = 0  # spin 2 has no field: ignored by the cold end
    h[1, 5:9] = 0
    batch = IsingBatch(h=h, J=J, offset=np.zeros(m))
    s = np.sqrt(h**2 + np.einsum("ij,ij->i", J, J)[None, :])
    hot = math.log(2.0) / (2.0 * s.max(axis=1))  # python floats: computed in h's precision
    cold = math.log(100.0) / (2.0 * (np.where(s > 0, s, np.inf).min(axis=1) / math.sqrt(n)))
    br = default_beta_range(batch)
    assert np.array_equal(br[:, 0], hot.astype(np.float64))
    assert np.array_equal(br[:, 1], np.maximum(cold, hot).astype(np.float64))


@pytest.mark.parametrize("rows,n", [(1, 2), (3, 5), (7, 1), (128, 128), (2, 3703)])
def test_random_initial_spins_are_numpys_integers(rows, n):
    """The raw-word draw of the starting spins equals ``2 * rng.integers(0, 2) - 1`` and leaves
    the generator where ``integers`` leaves it (the kernels' seeds are drawn next), for odd
    sizes (which take ``integers`` itself) too."""
    from qsgd.samplers.batched import _random_spins, _raw_bits_match

    assert _raw_bits_match()  # numpy's draw is what _random_spins assumes, on this platform
    for seed in range(5):
        a, b = (np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed))) for _ in "ab")
        got = _random_spins(a, rows, n)
        want = 2 * b.integers(0, 2, size=(rows, n)) - 1
        assert got.dtype == np.int8 and got.flags.c_contiguous and np.array_equal(got, want)
        sa, sb = a.bit_generator.state, b.bit_generator.state
        assert sa["state"] == sb["state"] and sa["has_uint32"] == sb["has_uint32"]
        after = (g.integers(0, 2, size=5) for g in (a, b))  # reads a buffered half word first
        assert np.array_equal(*after)
    # a generator holding a buffered half word: integers would use it first, and so does this
    a, b = (np.random.Generator(np.random.PCG64(7)) for _ in "ab")
    a.integers(0, 2, size=1), b.integers(0, 2, size=1)
    assert a.bit_generator.state["has_uint32"] == 1
    assert np.array_equal(_random_spins(a, rows, n), 2 * b.integers(0, 2, size=(rows, n)) - 1)


def test_sampler_api_and_parameters_in_sync(sampler):
    assert_sampler_api(sampler)
    sig = inspect.signature(BatchedAnnealer.sample_batch)
    keywords = {n for n, p in sig.parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    assert keywords == set(sampler.parameters)
    assert sampler.properties["backend"] == "batched"


def test_dimod_methods(sampler):
    h = {"a": 1.0, "b": -0.5, "c": 0.2}
    J = {("a", "b"): -1.0, ("b", "c"): 0.7}
    ss = sampler.sample_ising(h, J, num_reads=8, num_sweeps=50, seed=0, device="cpu")
    assert isinstance(ss, dimod.SampleSet) and len(ss) == 8
    bqm = dimod.BinaryQuadraticModel.from_ising(h, J)
    assert np.allclose(ss.record.energy, bqm.energies(ss))
    exact = dimod.ExactSolver().sample(bqm).first.energy
    assert ss.first.energy == pytest.approx(exact)
    assert ss.info["backend"] == "batched" and len(ss.info["beta_range"]) == 2
    qs = sampler.sample_qubo({(0, 0): -1.0, (0, 1): 2.0, (1, 1): -1.0}, num_reads=4, seed=0)
    assert qs.vartype is dimod.BINARY and qs.first.energy == pytest.approx(-1.0)
    assert len(sampler.sample(dimod.BinaryQuadraticModel("SPIN"))) == 0
    with pytest.warns(dimod.exceptions.SamplerUnknownArgWarning):
        sampler.sample_ising(h, J, num_reads=2, not_a_parameter=1)


BAD = [
    (dict(num_reads=0), ConfigError, r"num_reads must be a positive int \(got 0\)"),
    (dict(num_reads=-1), ConfigError, r"num_reads must be a positive int \(got -1\)"),
    (dict(num_reads=2.5), ConfigError, r"num_reads must be a positive int \(got 2.5\)"),
    (dict(num_reads=True), ConfigError, r"num_reads must be a positive int \(got True\)"),
    (dict(num_sweeps=0), ConfigError, r"num_sweeps must be a positive int \(got 0\)"),
    (dict(num_sweeps="10"), ConfigError, r"num_sweeps must be a positive int \(got '10'\)"),
    (dict(beta_range=(1.0,)), ConfigError, r"beta_range must be two floats"),
    (dict(beta_range="hot"), ConfigError, r"beta_range must be two floats"),
    (dict(beta_range=(2.0, 1.0)), ConfigError, r"beta_hot <= beta_cold \(got \(2.0, 1.0\)\)"),
    (dict(beta_range=(0.0, 1.0)), ConfigError, r"finite positive floats"),
    (dict(beta_range=(1.0, np.inf)), ConfigError, r"finite positive floats"),
    (dict(seed=-3), ConfigError, r"seed must be a non-negative int or None \(got -3\)"),
    (dict(seed=1.5), ConfigError, r"seed must be a non-negative int or None \(got 1.5\)"),
    (dict(warm_start="yes"), ConfigError, r"warm_start must be a bool \(got 'yes'\)"),
    (dict(device="tpu"), ConfigError, r"device must be one of .* \(got 'tpu'\)"),
    (dict(device=0), ConfigError, r"device must be one of .* \(got 0\)"),
    (
        dict(initial_states=np.ones((2, 2, N))),
        ConfigError,
        rf"initial_states must have shape \(2, 3, {N}\) or \(3, {N}\) \(got shape \(2, 2, {N}\)\)",
    ),
    (
        dict(initial_states=np.zeros((3, N))),
        ConfigError,
        r"initial_states must contain only \+1 and -1",
    ),
    (
        dict(initial_states=np.ones((3, N)), warm_start=True),
        ConfigError,
        r"initial_states and warm_start=True are exclusive",
    ),
]


@pytest.mark.parametrize(("kwargs", "exc", "match"), BAD, ids=[str(b[0])[:40] for b in BAD])
def test_bad_input(sampler, kwargs, exc, match):
    batch = _dense_batch(0, m=2)
    kw = dict(num_reads=3, num_sweeps=2, device="cpu")
    kw.update(kwargs)
    with pytest.raises(exc, match=match):
        sampler.sample_batch(batch, **kw)


def test_bad_batch_and_cuda_without_gpu(sampler):
    with pytest.raises(ProblemError, match=r"batch must be an IsingBatch \(got dict\)"):
        sampler.sample_batch({"h": [1.0]})
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match=r"device 'cuda' needs CUDA"):
            resolve_device("cuda")
        assert resolve_device("auto") == "numba"
    assert resolve_device("CPU") == "numba" and resolve_device("torch-cpu") == "torch-cpu"


@pytest.mark.parametrize(("device", "sizes"), [("cpu", (4, 12, 16)), ("torch-cpu", (8,))])
def test_backend_contract(device, sizes):
    testing = pytest.importorskip("qsgd.testing")
    figures = testing.assert_backend_contract(
        "batched", sizes=sizes, run_options={"device": device}
    )
    assert min(figures["optimal_fraction"].values()) >= 0.1
