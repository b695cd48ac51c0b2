"""The fast (float32, lane-vectorised) kernels of ``batched`` pinned to the float64 reference ones.

Pins, each on seeded problems:

* **float32 is exact enough**: at zero temperature (only downhill moves) the dynamics are
  deterministic, so from the same initial states the fast kernels must reach exactly the same
  states as the float64 reference, on real-valued couplings and factors (a field whose float32
  sign differed from its float64 sign would change a decision).
* **same Metropolis semantics**: at a fixed finite temperature the mean energy after a few
  sweeps from the same states equals the reference's within 4 standard errors (different random
  streams, same distribution), and so do annealed best energies.
* **threads and lanes**: results do not depend on ``num_threads`` (nor on the lane width it
  implies), and numba's thread count is left as it was.
* ``solve_batch`` reuses the sampler's float64 energies; path choice and bad input.
* the torch CUDA path (only when CUDA is available).
"""

from __future__ import annotations

import numba
import numpy as np
import pytest
import torch

from qsgd.errors import ConfigError
from qsgd.ising import IsingBatch
from qsgd.qubo import layer_ising
from qsgd.samplers import _anneal_kernels as K
from qsgd.samplers.batched import FACTOR_RATIO, BatchedAnnealer


def _layer_batch(seed: int, m: int = 32, n: int = 48, B: int = 8, real: bool = True) -> IsingBatch:
    """Layer problems ``J = eta^2 offdiag(X^T X)/B`` with real-valued (or ±1) inputs ``X``."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(B, n)) if real else rng.choice([-1.0, 1.0], size=(B, n))
    G = rng.normal(size=(B, m))
    return layer_ising(X, G, eta=0.3)


def _glass(seed: int, m: int = 32, n: int = 40) -> IsingBatch:
    rng = np.random.default_rng(seed)
    J = np.triu(rng.normal(size=(n, n)) / np.sqrt(n), 1)
    return IsingBatch.from_arrays(rng.normal(size=(m, n)), J + J.T)


@pytest.fixture(scope="module")
def sampler() -> BatchedAnnealer:
    return BatchedAnnealer()


CASES = [
    ("factor", lambda s: _layer_batch(s)),
    ("factor", lambda s: _layer_batch(s, real=False)),
    ("dense", lambda s: _layer_batch(s)),
    ("dense", lambda s: _glass(s)),
]
IDS = ["factor-real", "factor-pm1", "dense-layer", "dense-glass"]


@pytest.mark.parametrize(("path", "make"), CASES, ids=IDS)
def test_zero_temperature_matches_float64_reference_exactly(sampler, path, make):
    batch = make(0)
    m, n = batch.num_problems, batch.num_variables
    init = np.random.default_rng(1).choice([-1, 1], size=(m, 4, n)).astype(np.int8)
    kw = dict(num_reads=4, num_sweeps=6, beta_range=(1e9, 1e9), initial_states=init)
    kw.update(device="cpu", path=path, seed=0)
    fast = sampler.sample_batch(batch, kernel="fast", **kw)
    ref = sampler.sample_batch(batch, kernel="reference", **kw)
    assert fast.info["path"] == ref.info["path"] == path
    assert np.array_equal(fast.samples, ref.samples)
    assert np.array_equal(fast.energies, ref.energies)
    assert np.all(fast.energies <= batch.energies(init) + 1e-12)  # descent only


@pytest.mark.parametrize(("path", "make"), CASES, ids=IDS)
def test_finite_temperature_mean_energy_matches_reference(sampler, path, make):
    """Same semantics: at a fixed beta the energy distribution after 3 sweeps is the same."""
    _assert_same_mean_energy(sampler, make(2), path, {"kernel": "fast", "device": "cpu"})


@pytest.mark.parametrize(("path", "make"), [CASES[0], CASES[3]], ids=["factor", "dense"])
def test_torch_path_finite_temperature_matches_reference(sampler, path, make):
    """The torch path (run here on the CPU; the same code runs on CUDA) has the same semantics."""
    _assert_same_mean_energy(sampler, make(2), path, {"device": "torch-cpu"})


def _assert_same_mean_energy(sampler, batch, path, run):
    m, n = batch.num_problems, batch.num_variables
    reads = 16
    init = np.random.default_rng(3).choice([-1, 1], size=(m, reads, n)).astype(np.int8)
    beta = float(np.median(_mid_beta(batch)))  # between the default hot and cold ends
    kw = dict(num_reads=reads, num_sweeps=3, beta_range=(beta, beta), initial_states=init)
    kw.update(path=path)
    diffs = []
    for seed in range(3):
        e_run = sampler.sample_batch(batch, seed=seed, **run, **kw).energies
        e_ref = sampler.sample_batch(
            batch, kernel="reference", device="cpu", seed=seed, **kw
        ).energies
        diffs.append(e_run.mean(axis=1) - e_ref.mean(axis=1))  # per problem
    d = np.concatenate(diffs)
    se = d.std(ddof=1) / np.sqrt(d.size)
    assert abs(d.mean()) <= 4 * se + 1e-12, (d.mean(), se)
    # and the temperature is one where moves are neither all accepted nor all rejected
    e0 = batch.energies(init).mean()
    assert e_ref.mean() < e0


def _mid_beta(batch: IsingBatch) -> np.ndarray:
    from qsgd.samplers.batched import default_beta_range

    br = default_beta_range(batch)
    return np.sqrt(br[:, 0] * br[:, 1])


@pytest.mark.parametrize(("path", "make"), CASES[:1] + CASES[3:], ids=["factor", "dense"])
def test_annealed_best_energies_match_reference(sampler, path, make):
    """Stated tolerance: over 32 problems x 4 seeds the mean best energy of the fast kernel is
    within 4 standard errors (paired by problem and seed) of the float64 reference's."""
    batch = make(4)
    d = []
    for seed in range(4):
        kw = dict(num_reads=4, num_sweeps=20, seed=seed, device="cpu", path=path)
        fast = sampler.sample_batch(batch, kernel="fast", **kw).best_energy
        ref = sampler.sample_batch(batch, kernel="reference", **kw).best_energy
        d.append(fast - ref)
    d = np.concatenate(d)
    se = d.std(ddof=1) / np.sqrt(d.size)
    assert abs(d.mean()) <= 4 * se + 1e-12, (d.mean(), se)


@pytest.mark.parametrize("kernel", ["fast", "reference"])
def test_num_threads_and_lane_width_do_not_change_results(sampler, kernel):
    batch = _layer_batch(5, m=20, n=30)
    kw = dict(num_reads=2, num_sweeps=15, seed=7, device="cpu", kernel=kernel)
    before = numba.get_num_threads()
    one = sampler.sample_batch(batch, num_threads=1, **kw)
    assert numba.get_num_threads() == before
    two = sampler.sample_batch(batch, num_threads=2, **kw)
    assert numba.get_num_threads() == before
    assert one.info["num_threads"] == 1 and two.info["num_threads"] == 2
    assert K.lane_width(40, 1) != K.lane_width(40, 2)  # 40 chains: lanes of 40 vs 24
    assert np.array_equal(one.samples, two.samples)


def test_default_threads_respect_numba_setting():
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        assert K.free_cpus() == 1
    finally:
        numba.set_num_threads(before)
    assert 1 <= K.free_cpus() <= numba.config.NUMBA_NUM_THREADS


def test_lane_width():
    assert K.lane_width(1280, 2) == 64
    assert K.lane_width(64, 2) == 32
    assert K.lane_width(3, 4) == 8
    assert all(K.lane_width(c, t) % 8 == 0 for c in (1, 9, 100, 5000) for t in (1, 2, 3, 16))


def test_solve_batch_reuses_the_float64_energies(sampler):
    from qsgd.samplers.registry import solve_batch

    batch = _layer_batch(7, m=6, n=40)
    res = solve_batch(sampler, batch, num_reads=3, num_sweeps=10, seed=0, device="cpu")
    assert res.info["energies_from_batch"] is True
    assert np.array_equal(res.energies, batch.energies(res.samples))
    assert np.all(np.diff(res.energies, axis=1) >= 0)


def test_auto_path_choice(sampler):
    kw = dict(num_reads=1, num_sweeps=2, seed=0, device="cpu")
    low = _layer_batch(0, m=2, n=48, B=48 // FACTOR_RATIO)
    high = _layer_batch(0, m=2, n=48, B=48 // FACTOR_RATIO + 1)
    assert sampler.sample_batch(low, **kw).info["path"] == "factor"
    assert sampler.sample_batch(high, **kw).info["path"] == "dense"
    assert sampler.sample_batch(high, path="factor", **kw).info["path"] == "factor"
    assert sampler.sample_batch(_glass(0, m=2), **kw).info["path"] == "dense"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(num_threads=0), r"num_threads must be a positive int \(got 0\)"),
        (dict(num_threads=1.5), r"num_threads must be a positive int \(got 1.5\)"),
        (dict(kernel="slow"), r"kernel must be one of \['fast', 'reference'\] \(got 'slow'\)"),
        (
            dict(path="sparse"),
            r"path must be one of \['auto', 'factor', 'dense'\] \(got 'sparse'\)",
        ),
        (dict(path="factor"), r"path='factor' needs a batch with a low-rank factor"),
        (
            dict(kernel="reference", device="torch-cpu"),
            r"kernel='reference' runs on the CPU only: use device='cpu' \(got device='torch-cpu'\)",
        ),
    ],
)
def test_bad_run_settings(sampler, kwargs, match):
    kw = {"num_reads": 1, "num_sweeps": 1, "device": "cpu", **kwargs}
    with pytest.raises(ConfigError, match=match):
        sampler.sample_batch(_glass(0, m=2, n=6), **kw)


# --------------------------------------------------------------------------- CUDA (skipped without)

cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs CUDA (torch.cuda.is_available() is False)"
)


@cuda
@pytest.mark.parametrize(("path", "make"), [CASES[0], CASES[3]], ids=["factor", "dense"])
def test_cuda_path_matches_numba_quality(sampler, path, make):
    batch = make(8)
    kw = dict(num_reads=8, num_sweeps=50, seed=0, path=path)
    gpu = sampler.sample_batch(batch, device="cuda", **kw)
    cpu = sampler.sample_batch(batch, device="cpu", **kw)
    assert gpu.info["device"] == "cuda" and gpu.info["path"] == path
    assert gpu.samples.shape == cpu.samples.shape and set(np.unique(gpu.samples)) <= {-1, 1}
    assert np.allclose(gpu.energies, batch.energies(gpu.samples), atol=1e-9)
    scale = np.abs(cpu.best_energy).max()
    assert np.abs(np.median(gpu.best_energy - cpu.best_energy)) <= 0.02 * scale
    again = sampler.sample_batch(batch, device="cuda", **kw)
    assert np.array_equal(gpu.samples, again.samples)  # seeded on the GPU too


@cuda
def test_cuda_path_finds_brute_force_optimum(sampler):
    import itertools

    batch = _glass(9, m=4, n=10)
    spins = np.array(list(itertools.product([-1, 1], repeat=10)), dtype=np.int8)
    opt = batch.energies(np.broadcast_to(spins, (4, *spins.shape))).min(axis=1)
    res = sampler.sample_batch(batch, num_reads=20, num_sweeps=200, seed=1, device="cuda")
    assert np.allclose(res.best_energy, opt, atol=1e-9)
