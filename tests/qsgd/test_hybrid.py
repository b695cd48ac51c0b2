"""The ``dwave-hybrid`` backend (Leap's hybrid BQM solver) with a stand-in for
dwave-system's ``LeapHybridSampler``: submission, asynchronous resolution, records, errors.
Nothing here touches the network."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import dimod
import numpy as np
import pytest

pytest.importorskip("dwave.system")

from qsgd.errors import (  # noqa: E402
    ConfigError,
    CredentialsError,
    QPUAuthenticationError,
    QPUUnreachableError,
    UnknownSolverError,
)
from qsgd.ising import IsingBatch  # noqa: E402
from qsgd.samplers import get_sampler, solve_batch  # noqa: E402
from qsgd.testing import brute_force_minimum  # noqa: E402

MIN_TIME = [[1, 3.0], [1024, 3.0], [4096, 5.0]]  # the shape of Leap's minimum_time_limit curve


class _Solver:
    name = "hybrid_binary_quadratic_model_version2"


class FakeHybrid:
    """Stands in for ``LeapHybridSampler``: ``sample`` returns an unresolved sample set whose
    answer (the exact optimum, with SAPI-style timing in microseconds) arrives after
    ``latency`` seconds on a worker thread, as the cloud client's futures do."""

    latency = 0.0
    fail_on_resolve: BaseException | None = None
    instances: list[FakeHybrid] = []

    def __init__(self, **config):
        self.config = config
        self.solver = _Solver()
        self.properties = {"minimum_time_limit": MIN_TIME, "category": "hybrid"}
        self.submitted: list[tuple[int, float]] = []
        self.lock = threading.Lock()
        self.pool = ThreadPoolExecutor(max_workers=64)
        FakeHybrid.instances.append(self)

    def min_time_limit(self, bqm):
        xx, yy = zip(*MIN_TIME, strict=True)
        return float(np.interp([bqm.num_variables], xx, yy)[0])

    def sample(self, bqm, time_limit=None):
        with self.lock:
            self.submitted.append((bqm.num_variables, time_limit))
        latency, fail = type(self).latency, type(self).fail_on_resolve

        def solve():
            time.sleep(latency)
            if fail is not None:
                raise fail
            ss = dimod.ExactSolver().sample(bqm).truncate(1)
            ss.info.update(
                run_time=time_limit * 1e6,
                charge_time=time_limit * 1e6,
                qpu_access_time=40_000.0,
                problem_id=f"p{len(self.submitted)}",
            )
            return ss

        return dimod.SampleSet.from_future(self.pool.submit(solve))


@pytest.fixture(autouse=True)
def _reset():
    FakeHybrid.latency, FakeHybrid.fail_on_resolve = 0.0, None
    FakeHybrid.instances = []
    yield


def random_batch(n: int, m: int, seed: int = 0) -> IsingBatch:
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(n, n))
    J = A + A.T
    np.fill_diagonal(J, 0.0)
    return IsingBatch.from_arrays(rng.normal(size=(m, n)), J)


def test_each_problem_is_one_call_with_the_minimum_time_limit_and_optimal_answers():
    sampler = get_sampler("dwave-hybrid", connect=FakeHybrid, timeout=30)
    batch = random_batch(8, 5)
    res = solve_batch(sampler, batch)
    fake = FakeHybrid.instances[0]
    assert fake.submitted == [(8, 3.0)] * 5
    np.testing.assert_allclose(res.best_energy, brute_force_minimum(batch))
    info = res.info
    assert info["solved_by"] == "dwave-hybrid" and info["solved_by_counts"] == {"dwave-hybrid": 5}
    assert info["hybrid_calls"] == info["qpu_calls"] == 5
    assert info["run_time"] == pytest.approx(5 * 3.0)
    assert info["charge_time"] == pytest.approx(5 * 3.0)
    assert info["qpu_access_time"] == pytest.approx(5 * 0.04)
    assert info["time_limit"] == 3.0 and len(info["problem_ids"]) == 5
    assert sampler.calls == 5 and sampler.totals["run_time"] == pytest.approx(15.0)


def test_time_limit_is_a_run_setting_passed_to_every_call():
    sampler = get_sampler("dwave-hybrid", connect=FakeHybrid, timeout=30)
    solve_batch(sampler, random_batch(4, 3), time_limit=7.5)
    assert [t for _, t in FakeHybrid.instances[0].submitted] == [7.5] * 3


def test_bounded_waits_go_to_the_cloud_client_and_a_token_is_refused():
    get_sampler("dwave-hybrid", connect=FakeHybrid, timeout=40, connect_timeout=4)
    config = FakeHybrid.instances[0].config
    assert config["request_timeout"] == (4.0, 40.0) and config["polling_timeout"] == 40.0
    with pytest.raises(ConfigError, match="must not contain 'token'"):
        get_sampler("dwave-hybrid", connect=FakeHybrid, client_config={"token": "abc"})
    with pytest.raises(ConfigError, match=r"timeout must be a positive number \(got 0\)"):
        get_sampler("dwave-hybrid", connect=FakeHybrid, timeout=0)


@pytest.mark.parametrize(
    ("time_limit", "timeout", "match"),
    [
        (1.0, 30, r"time_limit must be at least 3 s for a problem of 4 variables .*\(got 1.0\)"),
        (-2, 30, r"time_limit must be a positive number \(got -2\)"),
        (10.0, 8, r"timeout must exceed the hybrid time_limit of 10 s.*\(got timeout=8\)"),
    ],
)
def test_bad_time_limits_fail_before_any_call(time_limit, timeout, match):
    sampler = get_sampler("dwave-hybrid", connect=FakeHybrid, timeout=timeout)
    with pytest.raises(ConfigError, match=match):
        solve_batch(sampler, random_batch(4, 3), time_limit=time_limit)
    assert FakeHybrid.instances[0].submitted == []


def test_calls_of_a_batch_overlap():
    FakeHybrid.latency = 0.3
    sampler = get_sampler("dwave-hybrid", connect=FakeHybrid, timeout=30)
    t0 = time.perf_counter()
    res = solve_batch(sampler, random_batch(4, 8))
    wall = time.perf_counter() - t0
    assert res.info["hybrid_calls"] == 8
    assert wall < 4 * 0.3  # sequential calls would take 8 x 0.3 s


def _raise(exc):
    def connect(**config):
        raise exc

    return connect


def test_no_credentials_says_how_to_configure(tmp_path, monkeypatch):
    empty = tmp_path / "dwave.conf"
    empty.write_text("")
    monkeypatch.delenv("DWAVE_API_TOKEN", raising=False)
    monkeypatch.setenv("DWAVE_CONFIG_FILE", str(empty))
    with pytest.raises(CredentialsError, match=r"dwave config create.*DWAVE_API_TOKEN"):
        get_sampler("dwave-hybrid")


def test_rejected_token_unknown_solver_and_unreachable_service_are_typed_errors():
    from dwave.cloud.api.exceptions import ResourceAuthenticationError
    from dwave.cloud.exceptions import RequestTimeout, SolverNotFoundError

    with pytest.raises(QPUAuthenticationError, match="authentication failed"):
        get_sampler("dwave-hybrid", connect=_raise(ResourceAuthenticationError("Invalid token")))
    with pytest.raises(UnknownSolverError, match=r"unknown solver 'nope'"):
        get_sampler(
            "dwave-hybrid", solver="nope", connect=_raise(SolverNotFoundError("not available"))
        )
    with pytest.raises(QPUUnreachableError, match=r"Leap unreachable .*timeout=5s"):
        get_sampler("dwave-hybrid", timeout=5, connect=_raise(RequestTimeout()))


def test_a_polling_timeout_while_resolving_is_a_typed_error():
    from dwave.cloud.exceptions import PollingTimeout

    FakeHybrid.fail_on_resolve = PollingTimeout("polling timed out")
    sampler = get_sampler("dwave-hybrid", connect=FakeHybrid, timeout=30)
    with pytest.raises(QPUUnreachableError, match=r"connection failure within timeout=30s"):
        solve_batch(sampler, random_batch(4, 3))


def test_a_local_error_while_resolving_is_raised_as_it_is():
    FakeHybrid.fail_on_resolve = KeyError("bug")
    sampler = get_sampler("dwave-hybrid", connect=FakeHybrid, timeout=30)
    with pytest.raises(KeyError, match="bug"):
        solve_batch(sampler, random_batch(4, 3))


def test_the_optimizer_records_the_hybrid_calls_and_their_cost():
    torch = pytest.importorskip("torch")
    from bnn.models import BinaryMLP
    from qsgd.optimizer import QPSBGD

    torch.manual_seed(0)
    model = BinaryMLP(6, [4], 2)
    opt = QPSBGD(
        model,
        lr=0.05,
        backend="dwave-hybrid",
        backend_options={"connect": FakeHybrid, "timeout": 30},
        seed=0,
    )
    x, y = torch.randn(16, 6), torch.randint(0, 2, (16,))
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    stats = opt.last_stats
    assert [s["solved_by"] for s in stats] == ["dwave-hybrid", "dwave-hybrid"]
    assert [s["qpu_calls"] for s in stats] == [4, 2]  # one hybrid call per neuron
    assert stats[0]["qpu_access_time"] == pytest.approx(4 * 0.04)
    for p in model.parameters():
        if getattr(p, "binary", False):
            assert torch.all(p.abs() <= 1)


def test_dimod_conformance_suite_on_the_stand_in():
    import os
    import unittest

    import dimod.testing

    sampler = get_sampler("dwave-hybrid", connect=FakeHybrid, timeout=30)

    @dimod.testing.load_sampler_bqm_tests(sampler, max_num_variables=8)
    class Conformance(unittest.TestCase):
        def test_sampler_api(self) -> None:
            dimod.testing.assert_sampler_api(sampler)

    suite = unittest.defaultTestLoader.loadTestsFromTestCase(Conformance)
    with open(os.devnull, "w") as sink:
        result = unittest.TextTestRunner(verbosity=0, stream=sink).run(suite)
    problems = [
        f"{t.id().rsplit('.', 1)[-1]}: {err.strip().splitlines()[-1]}"
        for t, err in result.failures + result.errors
    ]
    assert result.testsRun >= 30 and not problems, "\n".join(problems)


def test_unknown_run_options_are_refused_by_name():
    sampler = get_sampler("dwave-hybrid", connect=FakeHybrid, timeout=30)
    with pytest.raises(
        ConfigError, match=r"unknown run option 'num_reads' for backend 'dwave-hybrid'"
    ):
        solve_batch(sampler, random_batch(4, 2), num_reads=10)
    with pytest.raises(ConfigError, match=r"unknown run option 'seed'"):
        solve_batch(sampler, random_batch(4, 2), seed=1)
