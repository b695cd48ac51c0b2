"""qsgd.distributed, qkernels.distributed and the sweeps on a 2-worker LocalCluster.

One cluster (2 processes, 1 thread each) is shared by the module and closed at its end. Every
distributed result is compared with the in-process one for the same seed. The bounded waits are
pinned against real counterparts: a socket server that accepts connections and never answers,
a real scheduler without workers, a real scheduler file, a real TLS scheduler, a worker
process killed mid-sweep.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from qsgd.config import AnnealerConfig
from qsgd.distributed import (
    DaskConfig,
    DaskEngine,
    DistributedSampler,
    SamplerSpec,
    check_scheduler,
    chunk_plan,
    read_scheduler_file,
    solve_batch_distributed,
    solve_batches,
)
from qsgd.errors import BackendError, BackendUnavailableError, ConfigError
from qsgd.ising import IsingBatch
from qsgd.samplers import get_sampler, solve_batch
from qsgd.sweep import expand_grid, parse_grid, parse_seeds, set_dotted
from tests.silent_server import silent_server

pytestmark = pytest.mark.timeout(180)

NEAL = {"num_reads": 3, "num_sweeps": 30}


def layer_batch(seed: int, m: int = 10, n: int = 20, r: int = 6) -> IsingBatch:
    """A layer-like batch: shared low-rank J = offdiag(X^T X) / r, m fields."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((r, n))
    J = X.T @ X / r
    np.fill_diagonal(J, 0.0)
    return IsingBatch.from_arrays(rng.standard_normal((m, n)), J, factor=X, factor_scale=1.0 / r)


def assert_same(a, b):
    np.testing.assert_array_equal(a.samples, b.samples)
    np.testing.assert_array_equal(a.energies, b.energies)


@pytest.fixture(scope="module")
def engine():
    eng = DaskEngine(
        "processes", n_workers=2, threads_per_worker=1, connect_timeout=60, timeout=150
    )
    try:
        assert eng.worker_count() == 2
        yield eng
    finally:
        eng.close()


# --------------------------------------------------------------------------- no cluster


@pytest.mark.parametrize(
    "value",
    ["local", "processes", "tcp://127.0.0.1:8786", "tls://host.example:8786", "10.0.0.5:8786"],
)
def test_check_scheduler_accepts(value):
    assert check_scheduler(value) == value


@pytest.mark.parametrize("value", ["", "thread", "tcp://host", "http//x:1", 3, None])
def test_check_scheduler_rejects(value):
    with pytest.raises(ConfigError, match=r"scheduler must be 'local', 'processes' or a Dask"):
        check_scheduler(value)


def test_annealer_config_scheduler():
    assert AnnealerConfig().scheduler == "local"
    with pytest.raises(
        ConfigError, match=r"annealer\.scheduler: scheduler must be .*got 'cluster'"
    ):
        AnnealerConfig.from_dict({"scheduler": "cluster"})
    sampler = AnnealerConfig(backend="neal", scheduler="tcp://127.0.0.1:1").make_sampler()
    assert isinstance(sampler, DistributedSampler)  # nothing is contacted before the first solve
    assert sampler.scheduler == "tcp://127.0.0.1:1" and sampler.backend_name == "neal"
    assert set(sampler.parameters) == set(get_sampler("neal").parameters)
    assert not isinstance(AnnealerConfig(backend="neal").make_sampler(), DistributedSampler)


def test_chunk_plan_and_bad_chunk_size():
    assert chunk_plan(7, 3) == [(0, 3), (3, 6), (6, 7)]
    assert chunk_plan(2, 5) == [(0, 2)]
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ConfigError, match=r"chunk_size must be a positive int"):
            chunk_plan(4, bad)


def test_bad_arguments():
    b = layer_batch(0)
    with pytest.raises(ConfigError, match=r"pass seeds=\[...\]"):
        solve_batches("neal", [b], seed=1)
    with pytest.raises(ConfigError, match=r"seeds must have one entry per batch \(1\) \(got 2\)"):
        solve_batches("neal", [b], seeds=[0, 1])
    with pytest.raises(ConfigError, match=r"unknown run option 'num_sweep'"):
        solve_batch_distributed("neal", b, num_sweep=3)
    with pytest.raises(TypeError, match=r"batches\[0\] must be an IsingBatch"):
        solve_batches("neal", [np.zeros(3)])
    with pytest.raises(ConfigError, match=r"n_workers must be an int >= 1 \(got 0\)"):
        DaskEngine("processes", n_workers=0)
    with pytest.raises(ConfigError, match=r"connect_timeout must be a positive number"):
        DaskEngine("tcp://h:1", connect_timeout=-1)


@pytest.mark.parametrize("chunk_size", [1, 3, 10, 64])
def test_local_chunks_equal_solve_batch(chunk_size):
    b = layer_batch(1)
    ref = solve_batch(get_sampler("neal"), b, seed=5, **NEAL)
    got = solve_batch_distributed("neal", b, chunk_size=chunk_size, seed=5, **NEAL)
    assert_same(ref, got)
    assert got.info["chunks"] == len(chunk_plan(b.num_problems, chunk_size))


def test_single_chunk_of_batch_backend_equals_solve_batch():
    b = layer_batch(2)
    ref = solve_batch(get_sampler("batched"), b, seed=3, num_reads=4, device="cpu")
    got = solve_batch_distributed(
        "batched", b, chunk_size=b.num_problems, seed=3, num_reads=4, device="cpu"
    )
    assert_same(ref, got)


@pytest.mark.timeout(30)
def test_unreachable_scheduler_fails_fast():
    eng = DaskEngine("tcp://127.0.0.1:1", connect_timeout=1.0)
    with pytest.raises(
        BackendError,
        match=r"could not reach the Dask scheduler at 'tcp://127\.0\.0\.1:1' within "
        r"connect_timeout=1 s",
    ):
        solve_batch_distributed("neal", layer_batch(0), engine=eng, seed=0, **NEAL)


def test_missing_dask_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(BackendUnavailableError, match=r"pip install 'qsgd\[distributed\]'"):
        _ = DaskEngine("processes").client


def test_grid_helpers():
    grid = parse_grid(["optimizer.lr=[0.1, 0.2]", "annealer.backend=tabu", "x.y=[true]"])
    assert grid == {"optimizer.lr": [0.1, 0.2], "annealer.backend": ["tabu"], "x.y": [True]}
    assert [p["optimizer.lr"] for p in expand_grid(grid)] == [0.1, 0.2]
    assert parse_seeds("0-3") == [0, 1, 2, 3] and parse_seeds("4,2") == [4, 2]
    for bad, msg in (
        (["lr"], r"must look like KEY=VALUES"),
        (["a..b=1"], r"dotted path"),
        (["a=[]"], r"has no values"),
        (["a=1", "a=2"], r"given twice"),
    ):
        with pytest.raises(ConfigError, match=msg):
            parse_grid(bad)
    for bad in ("1,1", "-1", "a", [True]):
        with pytest.raises(ConfigError, match=r"seeds must be distinct non-negative ints"):
            parse_seeds(bad)
    data = {"a": {"b": 1}, "l": [{"c": 0}]}
    set_dotted(data, "l.0.c", 5)
    set_dotted(data, "a.d", 2)
    assert data == {"a": {"b": 1, "d": 2}, "l": [{"c": 5}]}
    with pytest.raises(ConfigError, match=r"'a\.b' is not a table"):
        set_dotted(data, "a.b.c", 1)


# --------------------------------------------------------------------------- on the cluster


def test_cluster_equals_local_per_problem_backend(engine):
    b = layer_batch(3, m=24)
    ref = solve_batch(get_sampler("neal"), b, seed=11, **NEAL)
    got = solve_batch_distributed(
        SamplerSpec("neal"), b, engine=engine, chunk_size=5, seed=11, **NEAL
    )
    assert_same(ref, got)
    assert got.info["scheduler"] == "processes" and got.info["chunks"] == 5
    obj = solve_batch_distributed(
        get_sampler("tabu"), b, engine=engine, chunk_size=7, seed=2, num_reads=2
    )
    assert_same(solve_batch(get_sampler("tabu"), b, seed=2, num_reads=2), obj)


def test_cluster_equals_local_batch_backend(engine):
    b = layer_batch(4, m=20)
    kw = {"seed": 7, "num_reads": 4, "num_sweeps": 40, "device": "cpu"}
    local = solve_batch_distributed("batched", b, chunk_size=6, **kw)
    dist = solve_batch_distributed("batched", b, engine=engine, chunk_size=6, **kw)
    assert_same(local, dist)
    other = solve_batch_distributed("batched", b, chunk_size=6, **{**kw, "seed": 8})
    assert not np.array_equal(local.samples, other.samples)


def test_many_layers_and_wrapper_through_solve_batch(engine):
    layers = [layer_batch(10 + i, m=9) for i in range(3)]
    results = solve_batches("neal", layers, seeds=[0, 1, 2], engine=engine, chunk_size=4, **NEAL)
    for b, s, res in zip(layers, [0, 1, 2], results, strict=True):
        assert_same(solve_batch(get_sampler("neal"), b, seed=s, **NEAL), res)
    wrapped = DistributedSampler("neal", engine=engine, chunk_size=4)
    assert_same(
        solve_batch(get_sampler("neal"), layers[0], seed=9, **NEAL),
        solve_batch(wrapped, layers[0], seed=9, **NEAL),
    )


def test_task_killing_its_worker_is_retried(engine, tmp_path):
    marker = str(tmp_path / "killed-once")

    def square_or_die(i):
        if i == 3:
            try:
                fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pass
            else:
                os.close(fd)
                os._exit(1)  # the worker process dies mid-batch, on the first attempt only
        return i * i

    out = engine.map(square_or_die, range(8), key="die-once")
    assert out == [i * i for i in range(8)]  # nothing lost, nothing duplicated
    assert os.path.exists(marker)


def test_worker_killed_from_outside_mid_batch(engine):
    b = layer_batch(5, m=16, n=40)
    kw = {"num_reads": 4, "num_sweeps": 2000}
    ref = solve_batch(get_sampler("neal"), b, seed=1, **kw)
    client = engine.client
    box = {}

    def run():
        box["res"] = solve_batch_distributed("neal", b, engine=engine, chunk_size=2, seed=1, **kw)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 60
    victim = None
    while victim is None and time.monotonic() < deadline:
        busy = [w for w, tasks in client.processing().items() if tasks]
        if busy:
            victim = busy[0]
        else:
            time.sleep(0.05)
    assert victim is not None, "no task started within 60 s"
    pid = client.run(os.getpid, workers=[victim])[victim]
    os.kill(pid, signal.SIGKILL)
    thread.join(150)
    assert not thread.is_alive()
    assert_same(ref, box["res"])
    client.wait_for_workers(2, timeout=60)


def test_distributed_gram_equals_kernel_gram(engine):
    from qkernels.ansatz import get_ansatz
    from qkernels.distributed import distributed_gram
    from qkernels.kernel import EmbeddingKernel

    kern = EmbeddingKernel(get_ansatz("hubregtsen", n_wires=3, n_layers=1), bandwidth=0.5, seed=0)
    rng = np.random.default_rng(0)
    x, y = rng.uniform(-1, 1, (11, 3)), rng.uniform(-1, 1, (6, 3))
    K = distributed_gram(kern, x, tile_rows=4, engine=engine)
    ref = kern.gram(x).detach().numpy()
    np.testing.assert_allclose(K, ref, atol=1e-12, rtol=0)
    np.testing.assert_array_equal(K, K.T)
    np.testing.assert_array_equal(np.diag(K), 1.0)
    Kt = distributed_gram(kern, y, x, tile_rows=4, engine=engine)
    np.testing.assert_allclose(Kt, kern.gram(y, x).detach().numpy(), atol=1e-12, rtol=0)
    Kp = distributed_gram(kern, x, kind="projected", gamma=0.7, tile_rows=5, engine=engine)
    np.testing.assert_allclose(Kp, kern.projected_gram(x, gamma=0.7).detach().numpy(), atol=1e-12)
    with pytest.raises(ConfigError, match=r"tile_rows must be a positive int \(got 0\)"):
        distributed_gram(kern, x, tile_rows=0)
    with pytest.raises(ConfigError, match=r"kind must be 'fidelity' or 'projected' \(got 'rbf'\)"):
        distributed_gram(kern, x, kind="rbf")


def _strip(rows, keys=("wall_time", "run_dir", "train_seconds", "note")):
    return [{k: v for k, v in r.items() if k not in keys} for r in rows]


def test_bnn_sweep_cluster_equals_local(engine, tmp_path):
    from bnn.sweep import main_sweep, run_sweep

    base = {
        "name": "s",
        "data": {"name": "breast_cancer", "options": {"seed": 0}},
        "model": {"hidden": [6]},
        "optimizer": {"name": "qpsbgd", "lr": 0.05},
        "annealer": {"backend": "neal", "num_reads": 2, "num_sweeps": 10},
        "train": {"epochs": 1, "batch_size": 32, "max_batches_per_epoch": 2, "num_threads": 1},
        "output": {"run_dir": "unused", "plots": False},
    }
    grid = {"optimizer.lr": [0.01, 0.1]}
    local = run_sweep(base, grid, [3], tmp_path / "local")
    dist = run_sweep(base, grid, [3], tmp_path / "dist", engine=engine)
    assert [(r["optimizer.lr"], r["seed"]) for r in dist] == [(0.01, 3), (0.1, 3)]
    assert all(r["status"] == "completed" for r in dist)
    assert _strip(local) == _strip(dist)
    assert (tmp_path / "dist" / "sweep.md").read_text().count("\n") == 2 + 2
    with pytest.raises(ConfigError, match=r"optimizer\.lr"):
        run_sweep(base, {"optimizer.lr": [-1.0]}, [0], tmp_path / "bad")
    cfg = tmp_path / "base.toml"
    cfg.write_text('[data]\nname = "breast_cancer"\n[optimizer]\nname = "qpsbgd"\n')
    assert main_sweep([str(cfg), "--grid", "optimizer.nope=[1]", "--out", str(tmp_path / "x")]) == 2


def test_qkernels_sweep_cluster_equals_local(engine, tmp_path):
    from qkernels.sweep import run_sweep

    base = {
        "name": "q",
        "datasets": [{"name": "moons", "n_train": 8, "n_test": 6}],
        "ansatze": [{"name": "hubregtsen", "n_wires": 2, "n_layers": 1}],
        "training": {"steps": 2, "batch_size": 4},
    }
    grid = {"kernel.bandwidth": [0.5, 1.0]}
    local = run_sweep(base, grid, [0, 1], tmp_path / "local")
    dist = run_sweep(base, grid, [0, 1], tmp_path / "dist", engine=engine)
    assert len(dist["rows"]) == 4 and len(dist["summary"]) == 2
    assert _strip(local["rows"]) == _strip(dist["rows"])
    assert (tmp_path / "dist" / "summary.md").exists()


def test_qpsbgd_with_scheduler_equals_local(engine, monkeypatch):
    import torch
    import torch.nn.functional as F

    import qsgd.distributed.engine as qd
    from bnn.models import BinaryMLP
    from qsgd.optimizer import QPSBGD

    monkeypatch.setattr(qd, "get_engine", lambda scheduler, **kw: engine)  # the module's cluster
    calls = []
    real_map = engine.map

    def counting_map(*args, **kw):
        calls.append(kw.get("key"))
        return real_map(*args, **kw)

    monkeypatch.setattr(engine, "map", counting_map)
    g = torch.Generator().manual_seed(0)
    X = torch.randint(0, 2, (32, 10), generator=g).float() * 2 - 1
    y = (X[:, 0] * X[:, 1] > 0).long()

    def train(scheduler):
        torch.manual_seed(1)
        model = BinaryMLP(10, [6, 5], 2)
        cfg = AnnealerConfig(backend="neal", num_reads=2, num_sweeps=20, scheduler=scheduler)
        opt = QPSBGD(model, lr=0.05, backend=cfg, seed=3)
        for _ in range(2):

            def closure():
                opt.zero_grad()
                loss = F.cross_entropy(model(X), y)
                loss.backward()
                return loss.detach()

            opt.step(closure)
        return [p.detach().clone() for p in model.parameters()]

    dist = train("processes")
    n_calls = len(calls)
    assert n_calls >= 2 * 2  # 2 steps x (at least) 2 binary layers solved on the cluster
    local = train("local")
    assert len(calls) == n_calls  # "local" never touches the cluster
    for a, b in zip(dist, local, strict=True):
        assert torch.equal(a, b)


def test_kernel_experiment_with_scheduler_equals_local(engine, monkeypatch):
    import qkernels.distributed as qkd
    from qkernels.config import ExperimentConfig
    from qkernels.experiment import run_one

    base = {
        "name": "q",
        "datasets": [{"name": "moons", "n_train": 8, "n_test": 6}],
        "ansatze": [{"name": "hubregtsen", "n_wires": 2, "n_layers": 2}],
        "training": {"steps": 2, "batch_size": 4},
    }
    local_cfg = ExperimentConfig.model_validate(base)
    kernel = {"scheduler": "processes", "dask": {"timeout": 77, "chunk_size": 3}}
    dist_cfg = ExperimentConfig.model_validate({**base, "kernel": kernel})
    calls = []

    def fake_resolve(scheduler, **kw):
        calls.append((scheduler, kw["dask"].timeout, kw["dask"].chunk_size))
        return engine

    monkeypatch.setattr(qkd, "resolve_engine", fake_resolve)
    local = run_one(local_cfg, local_cfg.datasets[0], local_cfg.ansatze[0], seed=0)
    dist = run_one(dist_cfg, dist_cfg.datasets[0], dist_cfg.ansatze[0], seed=0)
    assert calls and set(calls) == {("processes", 77.0, 3)}  # through the engine, [kernel.dask]
    for stage in ("before", "after"):
        assert dist[stage]["accuracy"] == local[stage]["accuracy"]
        assert dist[stage]["alignment"] == pytest.approx(local[stage]["alignment"], abs=1e-12)


# --------------------------------------------------------------------------- bounded waits


def _bnn_base(epochs: int = 2, batches: int = 3) -> dict:
    return {
        "name": "s",
        "data": {"name": "breast_cancer", "options": {"seed": 0}},
        "model": {"hidden": [6]},
        "optimizer": {"name": "qpsbgd", "lr": 0.05},
        "annealer": {"backend": "neal", "num_reads": 2, "num_sweeps": 10},
        "train": {
            "epochs": epochs,
            "batch_size": 32,
            "max_batches_per_epoch": batches,
            "num_threads": 1,
        },
        "output": {"run_dir": "unused", "plots": False},
    }


@pytest.fixture
def silent_scheduler():
    """A TCP server on 127.0.0.1 that accepts every connection and never sends a byte."""
    with silent_server("tcp") as served:
        yield served


@pytest.fixture
def cluster_no_workers():
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=0, processes=False, protocol="tcp://", dashboard_address=None
    ) as cluster:
        yield cluster


@pytest.fixture
def thread_cluster(tmp_path):
    """A real scheduler with one in-process worker; it writes its scheduler file."""
    from distributed import LocalCluster

    path = tmp_path / "scheduler.json"
    with LocalCluster(
        n_workers=1,
        threads_per_worker=2,
        processes=False,
        protocol="tcp://",
        dashboard_address=None,
        scheduler_kwargs={"scheduler_file": str(path)},
    ) as cluster:
        yield cluster, path


@pytest.mark.timeout(30)
def test_scheduler_that_never_answers_fails_within_connect_timeout(silent_scheduler):
    address, accepted = silent_scheduler
    engine = DaskEngine(address, connect_timeout=1.0)
    t0 = time.monotonic()
    with pytest.raises(
        BackendError,
        match=rf"the Dask scheduler at '{address}' did not answer within connect_timeout=1 s",
    ):
        solve_batch_distributed("neal", layer_batch(0), engine=engine, seed=0, **NEAL)
    assert time.monotonic() - t0 < 8
    assert accepted  # it did connect: the wait that hung was the handshake


@pytest.mark.timeout(30)
def test_scheduler_without_workers_fails_after_worker_timeout(cluster_no_workers):
    address = cluster_no_workers.scheduler_address
    with DaskEngine(address, connect_timeout=5, worker_timeout=1.0) as engine:
        assert engine.worker_count() == 0
        t0 = time.monotonic()
        with pytest.raises(
            BackendError,
            match=rf"solve neal: no Dask worker connected to the scheduler at '{address}' "
            r"for worker_timeout=1 s \(0 of 1 tasks finished\)",
        ):
            solve_batch_distributed("neal", layer_batch(0), engine=engine, seed=0, **NEAL)
        assert time.monotonic() - t0 < 8


@pytest.mark.timeout(30)
def test_results_wait_is_bounded_by_timeout(thread_cluster):
    cluster, _ = thread_cluster
    with DaskEngine(cluster.scheduler_address, timeout=0.5) as engine:
        t0 = time.monotonic()
        with pytest.raises(
            BackendError, match=r"sleepers: only 0 of 1 tasks finished within timeout=0\.5 s"
        ):
            engine.map(time.sleep, [2.0], key="sleepers")
        assert time.monotonic() - t0 < 2.5
        assert engine.map(abs, [-2, 3], timeout=None) == [2, 3]  # per-call override


def test_dask_settings_from_toml_and_set(tmp_path):
    from bnn.config import RunConfig
    from qkernels.config import ExperimentConfig

    path = tmp_path / "run.toml"
    path.write_text(
        '[data]\nname = "breast_cancer"\n[optimizer]\nname = "qpsbgd"\n'
        '[annealer]\nbackend = "neal"\nscheduler = "tcp://10.0.0.5:8786"\n'
        "[annealer.dask]\ntimeout = 600\nconnect_timeout = 5\nchunk_size = 8\n"
    )
    cfg = RunConfig.from_file(path, ["annealer.dask.worker_timeout=30", "annealer.dask.timeout=90"])
    dask = cfg.annealer.dask
    assert (dask.timeout, dask.connect_timeout, dask.worker_timeout, dask.chunk_size) == (
        90.0,
        5.0,
        30.0,
        8,
    )
    sampler = cfg.annealer.make_sampler()  # nothing is contacted yet
    assert isinstance(sampler, DistributedSampler) and sampler.chunk_size == 8
    assert sampler.engine_options["timeout"] == 90.0
    assert sampler.engine_options["connect_timeout"] == 5.0
    for override, msg in (
        ("annealer.dask.timeout=-1", r"annealer\.dask\.timeout.*greater than 0 \(got -1\)"),
        ("annealer.dask.timout=1", r"unknown config key 'annealer\.dask\.timout'"),
        ("annealer.dask.chunk_size=0", r"annealer\.dask\.chunk_size"),
        ("annealer.dask.scheduler_file=/s.json", r"give one of scheduler .*scheduler_file"),
    ):
        with pytest.raises(ConfigError, match=msg):
            RunConfig.from_file(path, [override])
    base = {"datasets": [{"name": "moons"}], "ansatze": [{"name": "hubregtsen"}]}
    kcfg = ExperimentConfig.from_dict(
        {**base, "kernel": {"dask": {"timeout": 20, "chunk_size": 4}}}
    )
    assert kcfg.kernel.dask.timeout == 20.0 and kcfg.kernel.dask.chunk_size == 4
    with pytest.raises(ConfigError, match=r"kernel\.dask\.connect_timeout"):
        ExperimentConfig.from_dict({**base, "kernel": {"dask": {"connect_timeout": 0}}})


def test_tls_settings_are_checked(tmp_path):
    pem = tmp_path / "ca.pem"
    pem.write_text("-----BEGIN CERTIFICATE-----\n")
    missing = str(tmp_path / "client.pem")
    with pytest.raises(
        ConfigError,
        match=r"tls_cert must be an existing PEM file \(got '.*client\.pem': no such file\)",
    ):
        DaskEngine("tls://10.0.0.5:8786", tls_ca_file=pem, tls_cert=missing)
    with pytest.raises(
        ConfigError, match=r"annealer\.dask\.tls_key: tls_key must be an existing PEM file"
    ):
        AnnealerConfig.from_dict({"dask": {"tls_key": missing}})
    with pytest.raises(ConfigError, match=r"needs tls_ca_file and tls_cert .*tls_cert is missing"):
        DaskConfig.coerce({"tls_ca_file": str(pem)})
    with pytest.raises(ConfigError, match=r"are for a tls:// scheduler .*got scheduler='tcp://"):
        DaskEngine("tcp://10.0.0.5:8786", tls_ca_file=pem, tls_cert=pem)


@pytest.mark.timeout(60)
def test_tls_scheduler_with_certificate_files(tmp_path):
    from distributed import LocalCluster
    from distributed.security import Security

    temp = Security.temporary()  # in-memory CA and certificates (needs `cryptography`)
    files = {}
    for name in ("tls_ca_file", "tls_client_cert", "tls_client_key"):
        files[name] = tmp_path / f"{name}.pem"
        files[name].write_text(getattr(temp, name))
    with LocalCluster(
        n_workers=1, processes=False, protocol="tls://", security=temp, dashboard_address=None
    ) as cluster:
        address = cluster.scheduler_address
        assert address.startswith("tls://")
        with DaskEngine(
            address,
            tls_ca_file=files["tls_ca_file"],
            tls_cert=files["tls_client_cert"],
            tls_key=files["tls_client_key"],
        ) as engine:
            assert engine.map(abs, [-1, -2]) == [1, 2]
        with pytest.raises(BackendError, match=rf"Dask scheduler at '{address}'"):
            DaskEngine(address, connect_timeout=1).worker_count()  # no certificates


@pytest.mark.timeout(60)
def test_scheduler_file_written_by_a_real_scheduler(thread_cluster, tmp_path):
    cluster, path = thread_cluster
    assert read_scheduler_file(path) == cluster.scheduler_address
    b = layer_batch(6, m=9)
    ref = solve_batch(get_sampler("neal"), b, seed=4, **NEAL)
    sampler = AnnealerConfig.from_dict(
        {"backend": "neal", "dask": {"scheduler_file": str(path), "chunk_size": 4}}
    ).make_sampler()
    assert isinstance(sampler, DistributedSampler)
    res = solve_batch(sampler, b, seed=4, **NEAL)
    assert_same(ref, res)
    assert res.info["scheduler"] == cluster.scheduler_address and res.info["chunks"] == 3
    with pytest.raises(
        BackendError, match=r"scheduler_file '.*nope\.json' does not exist \(waited 0\.3 s"
    ):
        DaskEngine(scheduler_file=tmp_path / "nope.json", connect_timeout=0.3).worker_count()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"type": "Scheduler"}))
    with pytest.raises(
        BackendError, match=r"is not a Dask scheduler file: expected JSON with an 'address'"
    ):
        DaskEngine(scheduler_file=bad).worker_count()
    with pytest.raises(
        ConfigError, match=r"give one of scheduler .* \(got scheduler='processes', scheduler_file="
    ):
        DaskEngine("processes", scheduler_file=path)


@pytest.mark.timeout(60)
def test_existing_client_is_used_and_left_open(thread_cluster):
    from distributed import Client

    from qkernels.ansatz import get_ansatz
    from qkernels.distributed import distributed_gram
    from qkernels.kernel import EmbeddingKernel

    cluster, _ = thread_cluster
    b = layer_batch(7, m=6)
    with Client(cluster, set_as_default=False) as client:
        sampler = DistributedSampler("neal", client=client, chunk_size=2)
        assert sampler.scheduler == cluster.scheduler_address
        assert_same(
            solve_batch(get_sampler("neal"), b, seed=2, **NEAL),
            solve_batch(sampler, b, seed=2, **NEAL),
        )
        res = solve_batches("neal", [b], seeds=[2], client=client, **NEAL)[0]
        assert_same(solve_batch(get_sampler("neal"), b, seed=2, **NEAL), res)
        kern = EmbeddingKernel(get_ansatz("angle", n_wires=2), seed=0)
        x = np.random.default_rng(1).uniform(-1, 1, (5, 2))
        K = distributed_gram(kern, x, client=client, dask={"chunk_size": 2})
        np.testing.assert_allclose(K, kern.gram(x).detach().numpy(), atol=1e-12)
        engine = DaskEngine(client=client)
        engine.close()
        assert client.submit(abs, -5).result(timeout=30) == 5  # still open
        with pytest.raises(ConfigError, match=r"give one of scheduler .*client="):
            DistributedSampler("neal", scheduler="processes", client=client)


# --------------------------------------------------------------------------- sweeps: lost runs


def _files(folder: Path) -> dict[str, tuple[str, int]]:
    return {
        p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(folder.iterdir())
        if p.is_file()
    }


def test_sweep_rerun_reuses_resumes_or_restarts_a_run_folder(tmp_path):
    from bnn.sweep import run_sweep

    base, grid, out = _bnn_base(epochs=2), {"optimizer.lr": [0.05]}, tmp_path / "out"
    (ref,) = run_sweep(base, grid, [3], out)
    assert ref["status"] == "completed" and ref["note"] == ""
    run = Path(ref["run_dir"])

    before = _files(run)  # a completed run of the same config: reused, not touched
    (row,) = run_sweep(base, grid, [3], out)
    assert row["note"].startswith("completed earlier") and _strip([row]) == _strip([ref])
    assert _files(run) == before

    (run / "summary.json").unlink()  # cut short after epoch 1: a checkpoint, no summary
    os.replace(run / "checkpoint.prev.pt", run / "checkpoint.pt")
    (row,) = run_sweep(base, grid, [3], out)
    assert row["note"] == "resumed a partial run from its checkpoint (epoch 1, step 3)"
    assert _strip([row]) == _strip([ref])  # same result as the uninterrupted run

    for name in ("summary.json", "checkpoint.pt", "checkpoint.prev.pt"):  # cut short in epoch 1
        (run / name).unlink()
    (row,) = run_sweep(base, grid, [3], out)
    assert row["note"].startswith("restarted") and _strip([row]) == _strip([ref])

    before = _files(run)  # a run of another config in the folder: refused, never touched
    other = {**base, "model": {"hidden": [7]}}
    (row,) = run_sweep(other, grid, [3], out)
    assert row["status"].startswith("failed: ConfigError: run directory")
    assert "holds a run of another config (it differs at model.hidden)" in row["status"]
    assert _files(run) == before


@pytest.mark.skipif(sys.platform == "win32", reason="flock")
def test_second_attempt_waits_for_the_live_one(tmp_path):
    import fcntl

    from bnn.sweep import _run_task, plan_sweep

    ((point, seed, config),) = plan_sweep(_bnn_base(epochs=1), {}, [3], tmp_path / "out")
    run = Path(config["output"]["run_dir"])
    (run.parent / ".locks").mkdir(parents=True)
    fd = os.open(run.parent / ".locks" / f"{run.name}.lock", os.O_CREAT | os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # an earlier attempt, still alive, holds the run
    box: dict = {}
    thread = threading.Thread(target=lambda: box.update(row=_run_task(point, seed, config)))
    thread.start()
    time.sleep(1.0)
    assert thread.is_alive() and not run.exists()  # waits, writes nothing
    os.close(fd)  # the earlier attempt ends (a dead process releases its lock the same way)
    thread.join(60)
    assert box["row"]["status"] == "completed" and box["row"]["note"] == ""


def _runs_in_progress(out: Path, pids) -> dict[int, Path]:
    """``{worker pid: run folder}`` for the runs a worker is training now and has checkpointed.

    A run in progress is found by the lock its attempt holds (``OUT/.locks/<label>.lock``, an
    open file of the worker process) on a folder with a checkpoint and no summary yet.
    """
    found = {}
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = Path(os.readlink(f"/proc/{pid}/fd/{fd}"))
            except OSError:
                continue
            if target.parent == out / ".locks":
                run = out / target.name.removesuffix(".lock")
                if (run / "checkpoint.pt").exists() and not (run / "summary.json").exists():
                    found[pid] = run
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="finds runs through /proc")
def test_bnn_sweep_survives_a_killed_worker(engine, tmp_path):
    from bnn.sweep import run_sweep

    base, grid, seeds = _bnn_base(epochs=4, batches=8), {"optimizer.lr": [0.01, 0.1]}, [3, 4]
    out = (tmp_path / "dist").resolve()
    client = engine.client
    pids = list(client.run(os.getpid).values())
    box: dict = {}
    thread = threading.Thread(
        target=lambda: box.update(rows=run_sweep(base, grid, seeds, out, engine=engine))
    )
    thread.start()
    deadline, running = time.monotonic() + 90, {}
    while not running and time.monotonic() < deadline and thread.is_alive():
        running = _runs_in_progress(out, pids)
        time.sleep(0.01)
    assert running, "no run was seen between its first checkpoint and its end"
    pid, victim_run = next(iter(running.items()))
    os.kill(pid, signal.SIGKILL)  # the worker process dies in the middle of that run
    thread.join(150)
    assert not thread.is_alive()
    rows = box["rows"]
    assert [(r["optimizer.lr"], r["seed"]) for r in rows] == [
        (0.01, 3),
        (0.01, 4),
        (0.1, 3),
        (0.1, 4),
    ]
    assert all(r["status"] == "completed" for r in rows), [r["status"] for r in rows]
    (victim,) = [r for r in rows if Path(r["run_dir"]) == victim_run]
    assert victim["note"].startswith("resumed a partial run from its checkpoint"), victim
    assert len(json.loads((out / "sweep.json").read_text())["rows"]) == 4
    local = run_sweep(base, grid, seeds, tmp_path / "local")
    assert _strip(rows) == _strip(local)  # the resumed run gives the uninterrupted result
    client.wait_for_workers(2, timeout=60)


def test_sweep_cli_cluster_options(tmp_path, silent_scheduler):
    from bnn.sweep import main_sweep

    cfg = tmp_path / "base.toml"
    cfg.write_text('[data]\nname = "breast_cancer"\n[optimizer]\nname = "qpsbgd"\n')
    out = tmp_path / "x"
    proc = subprocess.run(  # the real CLI: exit 2, one line on stderr, nothing written
        [sys.executable, "-m", "bnn", "sweep", str(cfg), "--out", str(out)]
        + ["--connect-timeout", "-1"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "--connect-timeout must be a positive number of seconds (got '-1')" in proc.stderr
    for args, msg in (
        (["--timeout", "soon"], r"--timeout must be a positive number of seconds \(got 'soon'\)"),
        (["--scheduler", "processes", "--scheduler-file", "s.json"], r"give either --scheduler"),
        (
            ["--scheduler", "tls://h:1", "--tls-ca-file", "nope.pem", "--tls-cert", "x.pem"],
            r"--tls-ca-file must be an existing PEM file \(got 'nope\.pem': no such file\)",
        ),
        (
            ["--scheduler", "tcp://h:1", "--tls-ca-file", str(cfg), "--tls-cert", str(cfg)],
            r"are for a tls:// scheduler",
        ),
    ):
        with pytest.raises(ConfigError, match=msg):
            from qsgd.sweep import sweep_dask_options, sweep_parser

            ns = sweep_parser("t", "", "", "", "0").parse_args([str(cfg), *args])
            sweep_dask_options(ns)
        assert main_sweep([str(cfg), "--out", str(out), *args]) == 2
    address, _ = silent_scheduler
    t0 = time.monotonic()
    code = main_sweep(
        [str(cfg), "--out", str(out), "--scheduler", address, "--connect-timeout", "1"]
    )
    assert code == 2 and time.monotonic() - t0 < 10
    assert not out.exists()
    from qkernels.sweep import main_sweep as kernels_sweep

    kcfg = tmp_path / "kernels.toml"
    kcfg.write_text('[[datasets]]\nname = "moons"\n[[ansatze]]\nname = "hubregtsen"\n')
    t0 = time.monotonic()
    code = kernels_sweep(
        [str(kcfg), "--out", str(out), "--scheduler", address, "--connect-timeout", "1"]
    )
    assert code == 2 and time.monotonic() - t0 < 10


@pytest.mark.timeout(90)
@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="freezes a process with SIGSTOP")
def test_frozen_scheduler_fails_within_connect_timeout(tmp_path):
    """A real `dask scheduler` process that stops answering mid-wait (SIGSTOP)."""
    sfile = tmp_path / "scheduler.json"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env}
    py = [sys.executable, "-m"]
    scheduler = subprocess.Popen(
        [*py, "distributed.cli.dask_scheduler", "--port", "0", "--no-dashboard"]
        + ["--scheduler-file", str(sfile)],
        **quiet,
    )
    worker = engine = None
    try:
        address = read_scheduler_file(sfile, wait=30)
        worker = subprocess.Popen(
            [*py, "distributed.cli.dask_worker", address, "--nthreads", "1"] + ["--no-dashboard"],
            **quiet,
        )
        engine = DaskEngine(scheduler_file=sfile, connect_timeout=2, worker_timeout=30)
        deadline = time.monotonic() + 30
        while engine.worker_count() < 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert engine.worker_count() == 1
        assert engine.scheduler == address  # read from the file on connecting
        threading.Timer(1.0, os.kill, (scheduler.pid, signal.SIGSTOP)).start()
        t0 = time.monotonic()
        with pytest.raises(
            BackendError,
            match=rf"the Dask scheduler at '{address}' did not answer within "
            r"connect_timeout=2 s",
        ):
            engine.map(time.sleep, [30.0], key="sleepers")
        assert time.monotonic() - t0 < 10
    finally:
        for proc in (worker, scheduler):
            if proc is not None:
                proc.kill()
                proc.wait(10)
        if engine is not None:
            engine.close()
