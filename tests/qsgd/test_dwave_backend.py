"""The QPU code path: offline over MockDWaveSampler, and a live test that skips without credentials."""

from __future__ import annotations

import errno
import logging
import socket
import time

import dimod
import numpy as np
import pytest

from tests.silent_server import silent_server

pytest.importorskip("dwave.system")

from qsgd.errors import (  # noqa: E402
    ConfigError,
    ProblemTooLargeError,
    QPUAuthenticationError,
    QPUUnreachableError,
)
from qsgd.samplers import get_sampler, solve_batch  # noqa: E402
from qsgd.samplers.dwave import (  # noqa: E402
    classify_qpu_failure,
    clear_embedding_cache,
    embedding_cache_info,
)
from qsgd.testing import brute_force_minimum, random_batch  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("QSGD_CACHE_DIR", str(tmp_path / "qsgd-cache"))  # no shared disk cache
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
    # ... and says so in its properties, so the optimizer splits larger layers by itself
    assert get_sampler("mock-dwave").properties["max_num_variables"] == 24


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (
            {"topology_type": "ring"},
            r"topology_type must be 'pegasus', 'chimera' or 'zephyr' \(got 'ring'\)",
        ),
        ({"substitute": "qbsolv"}, r"substitute must be 'tabu' or 'neal' \(got 'qbsolv'\)"),
        ({"fallback": "mock-dwave"}, r"fallback must be one of .* \(got 'mock-dwave'\)"),
        ({"num_reads": 5}, r"'num_reads' is a run setting of backend 'mock-dwave'"),
    ],
)
def test_mock_bad_options(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        get_sampler("mock-dwave", **kwargs)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"num_reads": 0}, r"num_reads must be a positive int \(got 0\)"),
        ({"chain_strength": -1.0}, r"chain_strength must be a positive number \(got -1.0\)"),
        ({"annealing_time": 0}, r"annealing_time must be a positive number \(got 0\)"),
    ],
)
def test_mock_bad_run_settings(kwargs, match):
    bqm = dimod.BQM({0: 1.0, 1: -1.0}, {(0, 1): 0.5}, 0.0, "SPIN")
    with pytest.raises(ConfigError, match=match):
        get_sampler("mock-dwave").sample(bqm, **kwargs)


def test_mock_unknown_run_option_names_accepted_ones():
    with pytest.raises(
        ConfigError,
        match=r"unknown run option 'num_sweeps' for backend 'mock-dwave'; accepted options: annealing_time, chain_strength, num_reads, seed",
    ):
        solve_batch(get_sampler("mock-dwave"), random_batch(4, 1), num_sweeps=10)


# --------------------------------------------------------------------------- failure kinds
# Exceptions as dwave-cloud-client / requests raise them, each with its kind and the error the
# backend raises for it (connection failures are the only kind a fallback answers).


def _chained(top: BaseException, cause: BaseException) -> BaseException:
    try:
        raise cause
    except BaseException as inner:
        try:
            raise top from inner
        except BaseException as outer:
            return outer


def _failures():
    import requests
    from dwave.cloud import exceptions as cloud

    from qsgd.errors import QPUServiceError, SolverFailureError, UnknownSolverError

    refused = ConnectionRefusedError(111, "Connection refused")
    return {
        "refused (as the client wraps it)": (
            lambda: _chained(cloud.RequestTimeout(), refused),
            "connection",
            None,
        ),
        "read timeout": (
            lambda: requests.exceptions.ReadTimeout("read timed out"),
            "connection",
            None,
        ),
        "DNS failure": (
            lambda: _chained(
                requests.exceptions.ConnectionError(
                    "Failed to resolve 'na-west-1.cloud.dwavesys.com'"
                ),
                socket.gaierror(-2, "Name or service not known"),
            ),
            "connection",
            None,
        ),
        "reset": (
            lambda: ConnectionResetError(104, "Connection reset by peer"),
            "connection",
            None,
        ),
        "polling timeout": (lambda: cloud.PollingTimeout(), "connection", None),
        "no route": (lambda: OSError(errno.EHOSTUNREACH, "No route to host"), "connection", None),
        "bad token": (
            lambda: cloud.SolverAuthenticationError(),
            "authentication",
            (
                QPUAuthenticationError,
                r"authentication failed — check the token \(dwave config create / DWAVE_API_TOKEN\) "
                r"\(got SolverAuthenticationError: Invalid token or access denied\)",
            ),
        ),
        "unknown solver": (
            lambda: cloud.SolverNotFoundError("Solver with the requested features not available"),
            "unknown_solver",
            (UnknownSolverError, r"unknown solver.* \(got SolverNotFoundError: Solver with the"),
        ),
        "solver failure": (
            lambda: cloud.SolverFailureError("Problem rejected: h out of range"),
            "solver_failure",
            (SolverFailureError, r"solver failure — .* \(got SolverFailureError: Problem rejected"),
        ),
        "TLS": (
            lambda: requests.exceptions.SSLError("certificate verify failed"),
            "tls",
            (QPUServiceError, r"TLS failure .* \(got SSLError: certificate verify failed"),
        ),
    }


FAILURES = list(_failures())
CONNECTION = [k for k, v in _failures().items() if v[1] == "connection"]


@pytest.mark.parametrize("name", FAILURES)
def test_failures_are_classified_by_type(name):
    make, kind, _ = _failures()[name]
    assert classify_qpu_failure(make())[0] == kind


def test_a_local_error_is_not_a_qpu_failure():
    assert classify_qpu_failure(KeyError("x")) is None
    assert classify_qpu_failure(ProblemTooLargeError("too big")) is None
    assert classify_qpu_failure(OSError("disk full")) is None  # not a network errno


@pytest.mark.parametrize("fallback", [None, "neal"])
@pytest.mark.parametrize("name", FAILURES)
def test_startup_failure_falls_back_only_on_connection_failures(name, fallback, monkeypatch):
    import dwave.system

    make, kind, expected = _failures()[name]

    def failing_sampler(**config):
        raise make()

    monkeypatch.setattr(dwave.system, "DWaveSampler", failing_sampler)
    if kind == "connection" and fallback == "neal":
        sampler = get_sampler("dwave", fallback="neal")
        res = solve_batch(sampler, random_batch(5, 3, seed=1), num_reads=4)
        assert res.info["solved_by"] == "neal" and res.info["solved_by_counts"] == {"neal": 3}
        assert sampler.fallback_solves == 3 and sampler.unreachable_reason.startswith("at start-up")
    elif kind == "connection":
        with pytest.raises(QPUUnreachableError, match=r"QPU unreachable .*set fallback='neal'"):
            get_sampler("dwave")
    else:
        err, match = expected
        with pytest.raises(err, match=match):
            get_sampler("dwave", fallback=fallback)


@pytest.mark.parametrize("name", FAILURES)
def test_midrun_failure_falls_back_only_on_connection_failures(name):
    make, kind, expected = _failures()[name]
    sampler = get_sampler("mock-dwave", fallback="neal")
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        raise make()

    sampler.child.sample = failing  # the QPU fails after a good start-up
    batch = random_batch(6, 4, seed=3)
    if kind == "connection":
        res = solve_batch(sampler, batch, num_reads=4, seed=0)
        assert res.info["solved_by"] == "neal" and res.info["solved_by_counts"] == {"neal": 4}
        assert res.info["backend"] == "mock-dwave"  # requested; solved_by says what ran
        assert len(calls) == 1  # no second wait on a dead QPU: the fallback keeps the run
        np.testing.assert_allclose(res.best_energy, brute_force_minimum(batch))
    else:
        err, match = expected
        with pytest.raises(err, match=match):
            solve_batch(sampler, batch, num_reads=4, seed=0)


def test_qpu_results_say_solved_by_the_qpu_backend():
    res = solve_batch(get_sampler("mock-dwave", fallback="neal"), random_batch(6, 2), seed=0)
    assert res.info["solved_by"] == "mock-dwave" and res.info["solved_by_counts"] == {
        "mock-dwave": 2
    }


def test_fallback_warning_is_logged_once_per_run(caplog):
    from dwave.cloud.exceptions import RequestTimeout

    sampler = get_sampler("mock-dwave", fallback="neal")

    def failing(*args, **kwargs):
        raise RequestTimeout()

    sampler.child.sample = failing
    with caplog.at_level(logging.WARNING, logger="qsgd.samplers.dwave"):
        for k in range(5):  # 5 batches x 8 problems
            solve_batch(sampler, random_batch(5, 8, seed=k), num_reads=2, seed=k)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert (
        "every later problem of this run is solved by fallback backend 'neal'"
        in warnings[0].getMessage()
    )
    assert sampler.fallback_solves == 40


# --------------------------------------------------------------------------- timeouts


def test_timeouts_reach_the_cloud_client_and_bound_its_retries():
    seen = {}

    def capture(**config):
        seen.update(config)
        from dwave.system.testing import MockDWaveSampler

        return MockDWaveSampler(topology_type="pegasus")

    sampler = get_sampler("dwave", timeout=2.5, connect_timeout=1, connect=capture)
    assert seen["request_timeout"] == (1.0, 2.5) and seen["polling_timeout"] == 2.5
    assert seen["poll_wait_time"] == 1  # a long poll ends before the read timeout
    assert seen["http_retry_total"] == 1  # the client's own default is 10
    res = solve_batch(sampler, random_batch(4, 2), num_reads=3)
    assert res.info["solved_by"] == "dwave"
    defaults = {}
    get_sampler("dwave", connect=lambda **c: defaults.update(c) or MockDWaveSampler_())
    assert defaults["request_timeout"] == (10.0, 60.0) and defaults["polling_timeout"] == 60.0


def MockDWaveSampler_():  # noqa: N802 - a factory named like the class it builds
    from dwave.system.testing import MockDWaveSampler

    return MockDWaveSampler(topology_type="pegasus")


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"timeout": 0}, r"timeout must be a positive number \(got 0\)"),
        ({"connect_timeout": -1.0}, r"connect_timeout must be a positive number \(got -1.0\)"),
        (
            {"client_config": {"request_timeout": 5}},
            r"client_config must not contain 'request_timeout'.*annealer.timeout.*\(got request_timeout=5\)",
        ),
    ],
)
def test_bad_timeouts(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        get_sampler("dwave", connect=lambda **c: MockDWaveSampler_(), **kwargs)


def test_timeouts_are_annealer_settings():
    from bnn.config import RunConfig
    from qsgd.config import AnnealerConfig

    cfg = AnnealerConfig.from_dict({"backend": "dwave", "timeout": 2, "connect_timeout": 1})
    assert cfg.sampler_options() == {"timeout": 2.0, "connect_timeout": 1.0}
    mock = AnnealerConfig.from_dict({"backend": "mock-dwave", "timeout": 2})
    assert "timeout" not in mock.sampler_options()  # no network: ignored, like num_sweeps for tabu
    run = RunConfig.from_file(
        "examples/configs/default.toml",
        ["annealer.backend=dwave", "annealer.timeout=2", "annealer.connect_timeout=0.5"],
    )
    assert run.annealer.timeout == 2.0 and run.annealer.connect_timeout == 0.5
    with pytest.raises(ConfigError, match=r"annealer.timeout: .*greater than 0.*\(got 0\)"):
        AnnealerConfig.from_dict({"backend": "dwave", "timeout": 0})


def _silent_endpoint():
    """A real local TCP server that accepts connections and never answers."""
    return silent_server("http")


@pytest.fixture
def local_only_client(tmp_path, monkeypatch):
    """A token, no config file and no solver cache: nothing reaches beyond 127.0.0.1."""
    empty = tmp_path / "dwave.conf"
    empty.write_text("")
    monkeypatch.setenv("DWAVE_CONFIG_FILE", str(empty))
    monkeypatch.setenv("DWAVE_API_TOKEN", "test-token-not-real")
    for var in ("DWAVE_API_ENDPOINT", "DWAVE_API_REGION", "DWAVE_API_SOLVER", "DWAVE_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    return {"cache_enabled": False}


@pytest.mark.parametrize("fallback", [None, "neal"])
def test_a_silent_endpoint_times_out_instead_of_hanging(fallback, local_only_client):
    with _silent_endpoint() as (url, accepted):
        t0 = time.monotonic()
        config = {**local_only_client, "endpoint": url}
        if fallback is None:
            with pytest.raises(
                QPUUnreachableError,
                match=r"QPU unreachable \(connection failure within timeout=1s, "
                r"connect_timeout=1s.*\(got RequestTimeout: API request timed out",
            ):
                get_sampler("dwave", client_config=config, timeout=1, connect_timeout=1)
        else:
            sampler = get_sampler(
                "dwave", client_config=config, timeout=1, connect_timeout=1, fallback=fallback
            )
            res = solve_batch(sampler, random_batch(4, 2), num_reads=2)
            assert res.info["solved_by"] == "neal"
        elapsed = time.monotonic() - t0
    assert accepted, "the client never connected to the local endpoint"
    # one request + one retry, 1 s each; far below the cloud client's defaults (60 s x 11)
    assert elapsed < 20, f"took {elapsed:.1f} s"


def test_a_refused_endpoint_is_a_connection_failure(local_only_client):
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    config = {**local_only_client, "endpoint": f"http://127.0.0.1:{port}"}
    with pytest.raises(QPUUnreachableError, match=r"caused by ConnectionRefusedError"):
        get_sampler("dwave", client_config=config, timeout=1, connect_timeout=1)


# --------------------------------------------------------------------------- records


def _failing_mock_qpu(monkeypatch):
    from dwave.cloud.exceptions import RequestTimeout
    from dwave.system.testing import MockDWaveSampler

    def unreachable(self, *args, **kwargs):
        raise RequestTimeout()

    monkeypatch.setattr(MockDWaveSampler, "sample", unreachable)


def test_optimizer_last_stats_record_the_fallback(monkeypatch):
    import torch

    from bnn.models import BinaryMLP
    from qsgd.config import AnnealerConfig
    from qsgd.optimizer import QPSBGD

    _failing_mock_qpu(monkeypatch)
    torch.manual_seed(0)
    model = BinaryMLP(6, [4], 2)
    cfg = AnnealerConfig(backend="mock-dwave", fallback="neal", num_reads=2, seed=0)
    opt = QPSBGD(model, lr=0.05, backend=cfg, seed=0)
    x, y = torch.randn(8, 6), torch.randint(0, 2, (8,))
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    solved = [s for s in opt.last_stats if not s["skipped"]]
    assert solved and all(s["backend"] == "mock-dwave" for s in solved)
    assert all(s["solved_by"] == "neal" for s in solved)
    assert all(s["solved_by_counts"] == {"neal": s["problems"]} for s in solved)


def test_training_records_which_backend_solved(tmp_path, monkeypatch):
    from bnn.config import RunConfig
    from bnn.records import read_metrics, read_summary
    from bnn.training import train_from_config

    _failing_mock_qpu(monkeypatch)
    cfg = RunConfig.from_file(
        "examples/configs/default.toml",
        [
            "annealer.backend=mock-dwave",
            "annealer.fallback=neal",
            "annealer.num_reads=2",
            "model.hidden=[4]",
            "train.epochs=1",
            "train.max_batches_per_epoch=2",
            "output.plots=false",
            f"output.run_dir={tmp_path / 'run'}",
        ],
    )
    summary = train_from_config(cfg, quiet=True, handle_signals=False)
    records = read_metrics(tmp_path / "run")
    assert records and all(r["solved_by"] == "neal" for r in records)
    steps = [r for r in records if r["kind"] == "step"]
    epoch = [r for r in records if r["kind"] == "epoch"][0]
    total = sum(r["solved_by_counts"]["neal"] for r in steps)
    assert total > 0 and epoch["solved_by_counts"] == {"neal": total}
    on_disk = read_summary(tmp_path / "run")
    assert on_disk["backend"] == "mock-dwave"
    assert on_disk["solved_by"] == "neal" and on_disk["solved_by_counts"] == {"neal": total}
    assert summary["solved_by_counts"] == {"neal": total}
