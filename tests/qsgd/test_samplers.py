"""Registry, solve_batch, the backend contract for every backend, and the bad-input table."""

from __future__ import annotations

import importlib.util
import logging

import dimod
import numpy as np
import pytest

from qsgd.errors import (
    BackendError,
    BackendUnavailableError,
    ConfigError,
    CredentialsError,
    ProblemTooLargeError,
    UnknownBackendError,
)
from qsgd.ising import IsingBatch
from qsgd.samplers import available_backends, get_sampler, register_backend, solve_batch
from qsgd.samplers.dimod_backends import ising_beta_range
from qsgd.samplers.registry import backend_spec, problem_seeds
from qsgd.testing import assert_backend_contract, brute_force_minimum, random_batch

HAS_BATCHED = importlib.util.find_spec("qsgd.samplers.batched") is not None

# Per-backend run options and thresholds of the contract (documented in qsgd.testing).
CONTRACT = {
    "exact": dict(run_options={"num_reads": 1}, min_optimal_fraction=1.0),
    "tabu": dict(num_reads=8, min_optimal_fraction=0.5),  # ~10 ms per read: few reads
    "mock-dwave": dict(num_reads=10),
    "steepest": dict(min_optimal_fraction=0.05),  # greedy descent from random starts
}


def test_registry_lists_every_backend_with_neal_first():
    names = available_backends()
    assert names[0] == "neal"
    assert set(names) >= {"neal", "exact", "steepest", "tabu", "batched", "dwave", "mock-dwave"}


@pytest.mark.parametrize(
    "name", [b for b in available_backends() if b not in ("dwave", "dwave-packed", "dwave-hybrid")]
)
def test_backend_contract(name):
    if name == "batched" and not HAS_BATCHED:
        pytest.skip("qsgd/samplers/batched.py is not written yet (another engineer's module)")
    figures = assert_backend_contract(name, **CONTRACT.get(name, {}))
    assert figures["optimal_fraction"]


def test_contract_catches_a_wrong_variable_order():
    class Reversed(dimod.Sampler):
        parameters = {"num_reads": [], "seed": []}
        properties: dict = {}

        def sample(self, bqm, **kw):
            ss = dimod.ExactSolver().sample(bqm).truncate(1)
            flipped = ss.record.sample[:, ::-1]
            return dimod.SampleSet.from_samples(
                (flipped, list(ss.variables)), "SPIN", ss.record.energy
            )

    with pytest.raises(AssertionError, match="variable order"):
        assert_backend_contract(Reversed(), sizes=(8,))


def test_contract_catches_a_poor_solver():
    class Random(dimod.RandomSampler):
        pass

    with pytest.raises(AssertionError, match="optimum"):
        assert_backend_contract(Random(), sizes=(16,), num_reads=2)


def test_solve_batch_orders_variables_sorts_reads_and_recomputes_energies():
    batch = random_batch(10, 4, seed=3)
    res = solve_batch(get_sampler("neal"), batch, num_reads=7, seed=5)
    assert res.samples.shape == (4, 7, 10) and res.samples.dtype == np.int8
    np.testing.assert_allclose(res.energies, batch.energies(res.samples))
    assert np.all(np.diff(res.energies, axis=1) >= 0)
    assert res.info["backend"] == "neal" and res.info["num_reads"] == 7
    assert res.info["wall_time"] >= 0
    np.testing.assert_allclose(res.best_energy, brute_force_minimum(batch))


def test_solve_batch_seeds_each_problem_differently_and_reproducibly():
    # identical problems: with per-problem seeds the reads must differ between problems
    h = np.zeros((2, 12))
    batch = IsingBatch.from_arrays(h, np.zeros((12, 12)))
    res = solve_batch(get_sampler("neal"), batch, num_reads=3, seed=11)
    assert not np.array_equal(res.samples[0], res.samples[1])
    again = solve_batch(get_sampler("neal"), batch, num_reads=3, seed=11)
    np.testing.assert_array_equal(res.samples, again.samples)
    assert problem_seeds(11, 3) == problem_seeds(11, 3)
    assert problem_seeds(None, 2) == [None, None]
    assert all(0 <= s < 2**31 for s in problem_seeds(2**40, 5))


def test_base_sampler_gives_every_backend_a_sample_batch():
    from dwave.samplers import SimulatedAnnealingSampler

    from qsgd.samplers import Sampler
    from qsgd.samplers.base import seeds_per_problem
    from qsgd.samplers.batched import BatchedAnnealer

    neal = get_sampler("neal")
    assert isinstance(neal, Sampler) and seeds_per_problem(neal)
    # a sampler written before the base class, with its own sample_batch, counts as one
    assert isinstance(BatchedAnnealer(), Sampler) and not seeds_per_problem(BatchedAnnealer())
    plain = SimulatedAnnealingSampler()  # not ours: solve_batch loops its sample method
    assert not isinstance(plain, Sampler) and seeds_per_problem(plain)
    batch = random_batch(6, 3, seed=2)
    kw = dict(num_reads=3, num_sweeps=20, seed=5, beta_range=(0.1, 3.0))
    ours = neal.sample_batch(batch, **kw)
    theirs = solve_batch(plain, batch, **kw)
    assert ours.samples.shape == (3, 3, 6) and ours.info["solved_by"] == ["neal"] * 3
    np.testing.assert_allclose(np.sort(ours.energies, axis=1), theirs.energies, atol=1e-9)


def test_solve_batch_uses_sample_batch_when_present():
    from qsgd.samplers import Sampler

    class Batchy(Sampler):
        parameters = {"num_reads": []}
        properties: dict = {}
        calls = 0

        def sample(self, bqm, **kw):  # pragma: no cover - never called
            raise AssertionError("solve_batch must prefer sample_batch")

        def sample_batch(self, batch, num_reads=1):
            Batchy.calls += 1
            s = -np.ones((batch.num_problems, num_reads, batch.num_variables), np.int8)
            from qsgd.samplers import BatchResult

            return BatchResult(s, batch.energies(s), {"backend": "batchy"})

    res = solve_batch(Batchy(), random_batch(5, 2), num_reads=3)
    assert Batchy.calls == 1 and res.samples.shape == (2, 3, 5)
    assert res.info["backend"] == "batchy" and res.info["reported_energy_max_abs_error"] == 0


def test_exact_backend_returns_lowest_states_in_order():
    batch = random_batch(6, 2, seed=1)
    res = solve_batch(get_sampler("exact"), batch, num_reads=4)
    assert res.samples.shape == (2, 4, 6)
    assert len({tuple(r) for r in res.samples[0]}) == 4
    np.testing.assert_allclose(res.energies[:, 0], brute_force_minimum(batch))


def test_neal_defaults_and_beta_range():
    sampler = get_sampler("neal")
    assert sampler.defaults["num_sweeps"] == 100
    bqm = dimod.BQM({0: 1.0, 1: -0.5, 2: 0.0}, {(0, 1): 2.0}, 0.0, "SPIN")
    hot, cold = ising_beta_range(bqm)
    assert 0 < hot < cold
    np.testing.assert_allclose(hot, np.log(2) / (2 * np.sqrt(1.0 + 4.0)))
    np.testing.assert_allclose(cold, 100 * np.log(100) / (2 * np.sqrt(0.25 + 4.0)))
    ss = sampler.sample(bqm, seed=0)
    assert tuple(ss.info["beta_range"]) == (hot, cold)
    # an explicit beta_range is passed through untouched
    assert sampler.sample(bqm, seed=0, beta_range=(0.1, 3.0)).info["beta_range"] == (0.1, 3.0)
    assert ising_beta_range(dimod.BQM({0: 0.0}, {}, 0.0, "SPIN")) == (0.1, 1.0)


def test_neal_100_sweeps_match_1000_default_sweeps_at_n128():
    rng = np.random.default_rng(0)
    n = 128
    X = rng.normal(size=(16, n)) * (rng.random((16, n)) < 0.3)
    J = 0.16 * X.T @ X
    np.fill_diagonal(J, 0)
    batch = IsingBatch.from_arrays(-(0.4 * X.T @ rng.normal(size=(16, 3))).T, J)
    ours = solve_batch(get_sampler("neal"), batch, num_reads=10, seed=1).best_energy
    from dwave.samplers import SimulatedAnnealingSampler

    ref = solve_batch(SimulatedAnnealingSampler(), batch, num_reads=10, num_sweeps=1000, seed=1)
    gap = (ours - ref.best_energy) / np.abs(ref.best_energy)
    assert np.all(gap < 0.01), gap  # within 1 % (measured ~0.1-0.2 %)


def test_register_backend_and_custom_factory():
    register_backend("test-random", dimod.RandomSampler, description="test", overwrite=True)
    assert "test-random" in available_backends()
    assert type(get_sampler("test-random")).__name__ == "RandomSampler"
    with pytest.raises(ConfigError, match="already registered"):
        register_backend("test-random", dimod.RandomSampler)
    with pytest.raises(ConfigError, match="factory for backend 'x'"):
        register_backend("x", 42)
    with pytest.raises(ConfigError, match="non-empty str"):
        register_backend("", dimod.RandomSampler)


def test_missing_optional_dependency_names_the_extra():
    register_backend("test-missing", "no_such_module_qsgd:Sampler", extra="dwave", overwrite=True)
    with pytest.raises(BackendUnavailableError, match=r"pip install 'qsgd\[dwave\]'"):
        get_sampler("test-missing")
    register_backend("test-missing2", "no_such_module_qsgd:Sampler", overwrite=True)
    with pytest.raises(BackendUnavailableError, match="'no_such_module_qsgd' cannot be imported"):
        get_sampler("test-missing2")


# ---------------------------------------------------------------- bad-input table
def _neal():
    return get_sampler("neal")


BAD = [
    (
        lambda: get_sampler("annealer9000"),
        UnknownBackendError,
        r"unknown annealer backend 'annealer9000'; known backends: neal, exact",
    ),
    (lambda: backend_spec(None), UnknownBackendError, "known backends"),
    (
        lambda: get_sampler("neal", num_sweep=10),
        ConfigError,
        r"unknown option 'num_sweep' for backend 'neal'; accepted options: \(none\)",
    ),
    (  # constructors take structure only: a run setting is named as one
        lambda: get_sampler("neal", num_sweeps=10),
        ConfigError,
        r"'num_sweeps' is a run setting of backend 'neal': pass it to sample\(\) or solve_batch",
    ),
    (
        lambda: get_sampler("mock-dwave", num_reads=5),
        ConfigError,
        r"'num_reads' is a run setting of backend 'mock-dwave'",
    ),
    (
        lambda: get_sampler("exact", colour="red"),
        ConfigError,
        r"unknown option 'colour' for backend 'exact'; accepted options: max_variables",
    ),
    (
        lambda: solve_batch(_neal(), random_batch(4), num_sweep=3),
        ConfigError,
        r"unknown run option 'num_sweep' for backend 'neal'",
    ),
    (
        lambda: solve_batch(get_sampler("tabu"), random_batch(4), num_sweeps=3),
        ConfigError,
        r"unknown run option 'num_sweeps' for backend 'tabu'; accepted options: .*tenure",
    ),
    (
        lambda: solve_batch(_neal(), random_batch(4), num_reads=-1),
        ConfigError,
        r"num_reads must be a positive int \(got -1\)",
    ),
    (
        lambda: solve_batch(_neal(), random_batch(4), num_sweeps=0),
        ConfigError,
        r"num_sweeps must be a positive int \(got 0\)",
    ),
    (
        lambda: solve_batch(_neal(), random_batch(4), seed=-3),
        ConfigError,
        r"seed must be a non-negative int or None \(got -3\)",
    ),
    (lambda: solve_batch(_neal(), np.zeros((2, 3))), TypeError, "batch must be an IsingBatch"),
    (
        lambda: solve_batch(get_sampler("exact"), random_batch(30, 1)),
        ProblemTooLargeError,
        r"at most 24 variables \(got 30\)",
    ),
    (
        lambda: get_sampler("exact", max_variables=0),
        ConfigError,
        r"max_variables must be a positive int \(got 0\)",
    ),
    (
        lambda: IsingBatch.from_arrays(np.zeros((0, 3)), np.zeros((3, 3))),
        Exception,
        "empty Ising problem",
    ),
]


@pytest.mark.parametrize("call,exc,match", BAD, ids=[m[:40] for _, _, m in BAD])
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_unknown_backend_is_also_a_key_error_with_readable_text():
    with pytest.raises(KeyError) as info:
        get_sampler("nope")
    assert str(info.value).startswith("unknown annealer backend 'nope'")


@pytest.fixture
def no_dwave_credentials(tmp_path, monkeypatch):
    empty = tmp_path / "dwave.conf"
    empty.write_text("")
    monkeypatch.delenv("DWAVE_API_TOKEN", raising=False)
    monkeypatch.setenv("DWAVE_CONFIG_FILE", str(empty))
    return empty


def test_dwave_without_credentials_says_how_to_configure(no_dwave_credentials):
    pytest.importorskip("dwave.system")
    with pytest.raises(CredentialsError, match=r"dwave config create.*DWAVE_API_TOKEN"):
        get_sampler("dwave")


def test_dwave_refuses_a_token_in_our_config():
    pytest.importorskip("dwave.system")
    with pytest.raises(ConfigError, match="must not contain 'token'"):
        get_sampler("dwave", client_config={"token": "abc"})


def _unreachable(**config):
    from dwave.cloud.exceptions import RequestTimeout

    try:  # what dwave-cloud-client raises for a refused connection
        raise ConnectionRefusedError(111, "Connection refused")
    except ConnectionRefusedError as exc:
        raise RequestTimeout() from exc


def test_dwave_unreachable_raises_backend_error():
    pytest.importorskip("dwave.system")
    with pytest.raises(
        BackendError,
        match=r"QPU unreachable .*fallback='neal'.*\(got RequestTimeout: .*ConnectionRefusedError",
    ):
        get_sampler("dwave", connect=_unreachable)


def test_dwave_unreachable_with_fallback_warns_and_solves(caplog):
    pytest.importorskip("dwave.system")
    with caplog.at_level(logging.WARNING, logger="qsgd.samplers.dwave"):
        sampler = get_sampler("dwave", connect=_unreachable, fallback="neal")
        batch = random_batch(6, 2)
        res = solve_batch(sampler, batch, num_reads=5)
    assert "fallback backend 'neal'" in caplog.text and "unreachable" in caplog.text
    assert res.info["fallback"] == "neal"
    assert res.info["solved_by"] == "neal" and res.info["solved_by_counts"] == {"neal": 2}
    np.testing.assert_allclose(res.best_energy, brute_force_minimum(batch))
    with pytest.raises(ConfigError, match=r"fallback must be one of .* \(got 'dwave'\)"):
        get_sampler("dwave", connect=_unreachable, fallback="dwave")


def _shipped_backends() -> list[str]:
    """Backends qsgd registers itself (lazy import paths), not ones other tests register."""
    return [
        b
        for b in available_backends()
        if isinstance(backend_spec(b).factory, str) and backend_spec(b).factory.startswith("qsgd.")
    ]


@pytest.mark.parametrize(
    "name", [b for b in _shipped_backends() if b not in ("dwave", "dwave-packed", "dwave-hybrid")]
)
def test_every_backend_says_it_solved_the_problem(name):
    if name == "batched" and not HAS_BATCHED:
        pytest.skip("qsgd/samplers/batched.py is not written yet")
    sampler = get_sampler(name)
    bqm = dimod.BQM({0: 1.0, 1: -0.5, 2: 0.25}, {(0, 1): -1.0, (1, 2): 0.5}, 0.0, "SPIN")
    assert sampler.sample(bqm, num_reads=2).info["solved_by"] == name
    res = solve_batch(sampler, random_batch(3, 2, seed=1), num_reads=2)
    assert res.info["solved_by"] == name and res.info["solved_by_counts"] == {name: 2}


def test_solve_batch_counts_each_solver_of_a_mixed_batch():
    class Alternating(dimod.Sampler):  # stands in for a QPU that fell back half-way
        parameters = {"num_reads": []}
        properties: dict = {}

        def __init__(self):
            self.calls = 0

        def sample(self, bqm, num_reads=1):
            ss = dimod.ExactSolver().sample(bqm).truncate(num_reads)
            self.calls += 1
            if self.calls > 1:
                ss.info["solved_by"] = "neal"
            return ss

    res = solve_batch(Alternating(), random_batch(4, 3), num_reads=1)
    assert res.info["solved_by_counts"] == {"Alternating": 1, "neal": 2}
    assert res.info["solved_by"] == "Alternating+neal"


def test_optimizer_splits_layers_larger_than_the_backend_accepts(caplog):
    import torch

    from bnn.models import BinaryMLP
    from qsgd.optimizer import QPSBGD

    torch.manual_seed(0)
    model = BinaryMLP(30, [12], 2)  # like examples/configs/default.toml: a 30-input first layer
    opt = QPSBGD(model, lr=0.05, backend="exact", backend_options={"max_variables": 10}, seed=0)
    assert opt.sampler.properties["max_num_variables"] == 10
    x, y = torch.randn(16, 30), torch.randint(0, 2, (16,))
    with caplog.at_level(logging.WARNING, logger="qsgd.optimizer"):
        for _ in range(2):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    first, second = opt.last_stats[0], opt.last_stats[1]
    assert first["variables"] == 30 and first["block_vars"] == 10
    assert first["solved_by_counts"] == {"exact": 3 * first["problems"]}  # 3 blocks each
    assert second["variables"] == 12 and second["block_vars"] == 10
    warned = [r.getMessage() for r in caplog.records if "block-wise" in r.getMessage()]
    assert len(warned) == 1 and "max_block_vars=10" in warned[0]
    weights = model.net[0].effective_weight().detach()
    assert set(weights.unique().tolist()) <= {-1.0, 1.0}


def test_the_unknown_option_check_is_written_once():
    """Every 'unknown option ... for backend' message comes from qsgd.samplers.base.check_options."""
    import re
    from pathlib import Path

    import qsgd

    root = Path(qsgd.__file__).parent
    pattern = re.compile(r"f\"unknown [^\"]*for backend")
    hits = sorted(
        p.relative_to(root).as_posix() for p in root.rglob("*.py") if pattern.search(p.read_text())
    )
    assert hits == ["samplers/base.py"]
