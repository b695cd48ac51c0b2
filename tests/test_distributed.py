"""qsgd.distributed, qkernels.distributed and the sweeps on a 2-worker LocalCluster.

One cluster (2 processes, 1 thread each) is shared by the module and closed at its end. Every
distributed result is compared with the in-process one for the same seed.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

import numpy as np
import pytest

from qsgd.config import AnnealerConfig
from qsgd.distributed import (
    DaskEngine,
    DistributedSampler,
    SamplerSpec,
    check_scheduler,
    chunk_plan,
    solve_batch_distributed,
    solve_batches,
)
from qsgd.errors import BackendError, BackendUnavailableError, ConfigError
from qsgd.ising import IsingBatch
from qsgd.samplers import get_sampler, solve_batch
from qsgd.sweep import expand_grid, parse_grid, parse_seeds, set_dotted

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
        match=r"could not reach the Dask scheduler at 'tcp://127\.0\.0\.1:1' within 1 s",
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


def _strip(rows, keys=("wall_time", "run_dir", "train_seconds")):
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

    import qsgd.distributed as qd
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
    dist_cfg = ExperimentConfig.model_validate({**base, "kernel": {"scheduler": "processes"}})
    calls = []
    monkeypatch.setattr(qkd, "get_engine", lambda scheduler: calls.append(scheduler) or engine)
    local = run_one(local_cfg, local_cfg.datasets[0], local_cfg.ansatze[0], seed=0)
    dist = run_one(dist_cfg, dist_cfg.datasets[0], dist_cfg.ansatze[0], seed=0)
    assert calls and set(calls) == {"processes"}  # the Gram went through the engine
    for stage in ("before", "after"):
        assert dist[stage]["accuracy"] == local[stage]["accuracy"]
        assert dist[stage]["alignment"] == pytest.approx(local[stage]["alignment"], abs=1e-12)
