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
    return get_sampler("mock-dwave", topology_shape=[4], substitute="neal", num_sweeps=300)


@pytest.fixture(scope="module")
def p16_qpu():
    return get_sampler("mock-dwave", topology_shape=[16], substitute="neal", num_sweeps=300)


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
    res = solve_batch(packed, b, seed=1, num_reads=8)
    assert res.samples.shape == (7, 8, 6) and res.samples.dtype == np.int8
    np.testing.assert_array_equal(res.best, -np.sign(b.h).astype(np.int8))
    np.testing.assert_allclose(res.energies, b.energies(res.samples))
    assert res.info["calls"] == 3 and res.info["problems_per_call"] == 3
    assert res.info["chain_break_fractions"].shape == (7,)
    again = solve_batch(packed, b, seed=1, num_reads=8)
    np.testing.assert_array_equal(res.samples, again.samples)  # seeded mock: reproducible


def test_packed_reaches_optimum_like_single_calls(small_qpu):
    b = layer_batch(1, m=6, n=8)
    exact = solve_batch(get_sampler("exact"), b)
    packed = solve_batch(PackedQPUSampler(small_qpu), b, seed=2, num_reads=8)
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
    res = solve_batch(packed, b, seed=0, num_reads=10)
    single = solve_batch(p16_qpu, b, seed=0, num_reads=10)
    assert res.info["calls"] == 2
    assert res.info["chain_strength"] == pytest.approx(single.info["chain_strength"])
    # same chain strength and chain lengths: chain breaks no worse (up to sampling noise)
    assert res.info["chain_break_fraction"] <= single.info["chain_break_fraction"] + 0.02
    assert (
        np.median(res.best_energy - single.best_energy) <= 0.05 * np.abs(single.best_energy).mean()
    )


# ----------------------------------------------------------------- issue 12: the QPU path a user runs
import concurrent.futures  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import dimod  # noqa: E402

from qsgd.config import AnnealerConfig  # noqa: E402
from qsgd.errors import BackendError  # noqa: E402
from qsgd.samplers.dwave import QPUBackend, disk_cache_info, embedding_cache_info  # noqa: E402
from qsgd.samplers.packing import _scale_per_problem  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
A1A = ROOT / "examples" / "configs" / "a1a_2layer.toml"


@pytest.fixture(autouse=True)
def _own_disk_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("QSGD_CACHE_DIR", str(tmp_path / "qsgd-cache"))


def _env(cache: Path) -> dict[str, str]:
    return {**os.environ, "QSGD_CACHE_DIR": str(cache), "MPLBACKEND": "Agg", "CI": "true"}


def test_packing_chosen_from_toml_set_and_qpsbgd():
    cfg = AnnealerConfig.from_toml(
        '[annealer]\nbackend = "mock-dwave"\npack = true\noptions = { topology_shape = [4] }\n'
    )
    assert cfg.sampler_backend == "mock-dwave-packed"
    sampler = cfg.make_sampler()
    assert isinstance(sampler, PackedQPUSampler) and sampler.backend.solver_id.endswith("4")
    from bnn.config import RunConfig

    run = RunConfig.from_file(A1A, ["annealer.pack=true"])
    assert run.annealer.pack and run.annealer.sampler_backend == "mock-dwave-packed"
    with pytest.raises(
        ConfigError, match=r"annealer: pack = true needs backend .* \(got backend='neal'\)"
    ):
        AnnealerConfig.from_dict({"backend": "neal", "pack": True})
    import torch

    from bnn.layers import BinaryLinear
    from qsgd.optimizer import QPSBGD

    net = torch.nn.Sequential(BinaryLinear(4, 3))
    opt = QPSBGD(
        net,
        backend="mock-dwave",
        backend_options={"pack": True, "topology_shape": [4], "problems_per_call": 2},
    )
    assert isinstance(opt.sampler, PackedQPUSampler) and opt.backend_name == "mock-dwave-packed"
    with pytest.raises(ConfigError, match=r"pack'\] = True needs backend .*\(got backend='neal'\)"):
        QPSBGD(net, backend="neal", backend_options={"pack": True})


def test_each_problem_scaled_on_its_own_and_no_coupler_joins_two():
    # two problems on qubits {0,1} and {2,3}; the second has 100x larger coefficients
    target = dimod.BQM(
        {0: 0.5, 1: -0.25, 2: 50.0, 3: 10.0}, {(0, 1): 0.2, (2, 3): -80.0}, 0, "SPIN"
    )
    slot_of = np.array([0, 0, 1, 1])
    out = _scale_per_problem(target, slot_of, 2, h_bound=4.0, j_bound=1.0)
    for qubits, edge in (((0, 1), (0, 1)), ((2, 3), (2, 3))):
        h = max(abs(out.linear[q]) for q in qubits)
        j = abs(out.quadratic[edge])
        assert max(h / 4.0, j / 1.0) == pytest.approx(1.0)  # each fills the range by itself
    assert out.linear[0] / out.linear[1] == pytest.approx(-2.0)  # a problem's ratios are kept
    bad = dimod.BQM({0: 1.0, 1: 1.0, 2: 1.0, 3: 1.0}, {(1, 2): 1.0}, 0, "SPIN")
    with pytest.raises(BackendError, match=r"coupler \(2, 1\) joins problems 1 and 0"):
        _scale_per_problem(bad, slot_of, 2, 4.0, 1.0)


def test_packed_records_per_problem_chain_breaks_calls_and_qpu_time(small_qpu):
    b = layer_batch(5, m=7, n=6)
    res = solve_batch(PackedQPUSampler(small_qpu, problems_per_call=3), b, seed=0, num_reads=8)
    info = res.info
    assert info["qpu_calls"] == info["calls"] == 3 and info["problems_per_call"] == 3
    assert info["chain_break_fractions"].shape == (7,)
    assert info["qpu_access_time"] > 0  # the mock's timing model gives an estimate
    assert info["solved_by"] == "mock-dwave-packed" and info["solved_by_counts"] == {
        "mock-dwave-packed": 7
    }
    single = solve_batch(small_qpu, b, seed=0, num_reads=8)  # unpacked: one call per problem, summed
    assert (
        single.info["qpu_calls"] == 7 and single.info["qpu_access_time"] > info["qpu_access_time"]
    )


class _SleepyMock:
    """Wraps a MockDWaveSampler: ``sample`` returns at once; the answer comes 0.3 s later."""

    latency = 0.3

    def __init__(self, mock, pool):
        self._mock, self._pool = mock, pool
        self.submitted = 0

    def __getattr__(self, name):
        return getattr(self._mock, name)

    def sample(self, bqm, **kwargs):
        self.submitted += 1

        def work():
            time.sleep(self.latency)
            return self._mock.sample(bqm, **kwargs)

        return dimod.SampleSet.from_future(self._pool.submit(work), lambda f: f.result())


def test_calls_of_a_batch_are_in_flight_together(small_qpu):
    k = 4
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        child = _SleepyMock(small_qpu.child, pool)
        qpu = QPUBackend(child, solver_id="sleepy", label="mock-dwave")
        packed = PackedQPUSampler(qpu, problems_per_call=1)
        b = layer_batch(6, m=k, n=6)
        packed.sample_batch(b, seed=0, num_reads=4)  # warm: embeddings, imports
        t0 = time.perf_counter()
        res = packed.sample_batch(b, seed=0, num_reads=4)
        wall = time.perf_counter() - t0
    assert res.info["calls"] == k and child.submitted == 2 * k
    assert res.info["submit_time"] < 0.5 * _SleepyMock.latency  # nothing waited while submitting
    assert wall < 0.6 * k * _SleepyMock.latency, f"{k} calls took {wall:.2f} s: not overlapped"
    np.testing.assert_allclose(res.energies, b.energies(res.samples))


_FIRST_SAMPLE = """
import json, sys, time
t0 = time.perf_counter()
from qsgd.samplers import get_sampler, solve_batch
from qsgd.samplers.dwave import disk_cache_info, embedding_cache_info
from qsgd.testing import random_batch
packed = get_sampler("mock-dwave-packed", substitute="neal", num_sweeps=50)
if sys.argv[1] == "warm":  # a cache hit must not rebuild the chip graph
    def boom():
        raise AssertionError("chip graph rebuilt on a cache hit")
    packed.backend.child.to_networkx_graph = boom
res = solve_batch(packed, random_batch(32, 30, seed=0), seed=0, num_reads=2)
largest = packed.backend.max_num_variables()  # the optimizer's default block size
print(json.dumps({"seconds": time.perf_counter() - t0, "calls": res.info["calls"],
                  "largest": largest,
                  **embedding_cache_info(), **disk_cache_info()}))
"""


@pytest.mark.slow
def test_disk_cache_is_reused_by_a_fresh_process(tmp_path):
    cache = tmp_path / "cache"
    runs = {}
    for mode in ("cold", "warm"):
        out = subprocess.run(
            [sys.executable, "-c", _FIRST_SAMPLE, mode],
            env=_env(cache),
            capture_output=True,
            text=True,
            timeout=180,
            cwd=ROOT,
        )
        assert out.returncode == 0, out.stderr[-2000:]
        runs[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    cold, warm = runs["cold"], runs["warm"]
    assert cold["misses"] >= 1 and cold["disk_writes"] >= 1 and cold["disk_hits"] == 0
    assert warm["misses"] == 0 and warm["disk_hits"] >= 1 and warm["disk_writes"] == 0
    assert cold["calls"] == warm["calls"] == 2  # 30 problems of 32 spins, 25 per call on P16
    assert cold["largest"] == warm["largest"] > 32
    assert list((cache / "embeddings").glob("clique-*-n32-s0.json"))
    print(f"time to first sample: cold {cold['seconds']:.2f} s, warm {warm['seconds']:.2f} s")


def test_unreadable_disk_cache_is_ignored(tmp_path, monkeypatch, small_qpu):
    monkeypatch.setenv("QSGD_CACHE_DIR", str(tmp_path / "c"))
    clear_packing_cache()
    first = PackedQPUSampler(small_qpu).embeddings(5, 2)
    files = list((tmp_path / "c" / "embeddings").glob("*.json"))
    assert len(files) == 1 and disk_cache_info()["disk_writes"] >= 1
    files[0].write_text("{not json")
    clear_packing_cache()
    assert PackedQPUSampler(small_qpu).embeddings(5, 2) == first
    assert embedding_cache_info()["misses"] == 1  # recomputed, and rewritten
    json.loads(files[0].read_text())


def _bnn(args, cache, timeout=240):
    return subprocess.run(
        [sys.executable, "-m", "bnn.cli", *args],
        env=_env(cache),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


_FAST = [
    "--set",
    "annealer.pack=true",
    "--set",
    'annealer.options={substitute="neal", num_sweeps=100}',
    "--set",
    "annealer.num_reads=5",
    "--set",
    "train.max_batches_per_epoch=3",
    "--set",
    "output.plots=false",
    "--quiet",
]


@pytest.mark.slow
def test_bnn_train_packed_records_fewer_calls_then_stops_at_the_cap_and_resumes(tmp_path):
    cache = tmp_path / "cache"
    run = tmp_path / "run"
    out = _bnn(
        [
            "train",
            str(A1A),
            "--run-dir",
            str(run),
            "--set",
            "train.epochs=2",
            "--set",
            "annealer.max_qpu_calls=3",
            *_FAST,
        ],
        cache,
    )
    # 7 problems per step (5 hidden + 2 output neurons; both layers share the call) in 1 call:
    # the cap of 3 stops it before step 4; a checkpoint is written and the exit code is 3
    assert out.returncode == 3, out.stderr[-2000:]
    assert "max_qpu_calls=3" in out.stderr and "--resume" in out.stderr
    steps = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in steps if r["kind"] == "step"]
    assert len(steps) == 3
    for r in steps:
        assert r["qpu_calls"] == 1 < sum(r["solved_by_counts"].values()) == 7
        assert r["problems_per_call"] == 7 and r["qpu_access_time"] > 0
        assert 0.0 <= r["chain_break_fraction"] <= 1.0
        assert r["solved_by"] == "mock-dwave-packed"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "qpu_cap_reached" and summary["qpu_calls"] == 3
    assert "max_qpu_calls=3" in summary["stop_reason"]
    assert (run / "checkpoint.pt").exists()

    again = _bnn(["train", "--resume", str(run), "--quiet"], cache)  # same cap: stops at once
    assert again.returncode == 3, again.stderr[-2000:]
    assert json.loads((run / "summary.json").read_text())["steps"] == 3

    done = _bnn(
        [
            "train",
            "--resume",
            str(run),
            "--set",
            "annealer.backend=neal",
            "--set",
            "annealer.pack=false",
            "--set",
            "annealer.options={}",
            "--quiet",
        ],
        cache,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 6
    assert summary["qpu_calls"] == 3  # the QPU total carries over; neal adds none
    assert summary["solved_by_counts"] == {"mock-dwave-packed": 21, "neal": 21}
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    after = [r for r in records if r["kind"] == "step" and r["step"] > 3]
    assert len(after) == 3 and all(r["qpu_calls"] == 0 and r["solved_by"] == "neal" for r in after)
