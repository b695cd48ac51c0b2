"""The lean QP-SBGD step: one solver call for all layers, per-layer records, the Gram cache."""

from __future__ import annotations

from typing import Any

import dimod
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import qsgd.optimizer as optimizer_module
from bnn.layers import BinaryLinear
from qsgd.optimizer import QPSBGD
from qsgd.samplers.batched import BatchedAnnealer
from qsgd.samplers.registry import register_backend


class _PerLayer(dimod.Sampler):
    """The batched annealer behind a counter: one ``sample_batch`` call per layer."""

    parameters = {"num_reads": [], "num_sweeps": [], "seed": [], "device": []}
    properties: dict[str, Any] = {}

    def __init__(self) -> None:
        self.inner = BatchedAnnealer()
        self.calls = 0

    def sample(self, bqm: dimod.BinaryQuadraticModel, **kw: Any) -> dimod.SampleSet:
        return self.inner.sample(bqm, **kw)

    def sample_batch(self, batch: Any, **kw: Any) -> Any:
        self.calls += 1
        return self.inner.sample_batch(batch, **kw)


class _AllLayers(_PerLayer):
    """Several layers' batches in one call, reported like a QPU that packs them (7 problems/call)."""

    per_call = 7

    def sample_batches(self, batches: list[Any], *, seeds: list[Any], **kw: Any) -> list[Any]:
        self.calls += 1
        self.last_sizes = [(b.num_problems, b.num_variables) for b in batches]
        total = sum(b.num_problems for b in batches)
        calls = -(-total // self.per_call)
        # call c holds problems [7c, 7c + 7) in batch order; each call counts for the batch
        # owning most of its problems
        owner = np.repeat(np.arange(len(batches)), [b.num_problems for b in batches])
        counted = np.zeros(len(batches), dtype=int)
        held = np.zeros(len(batches))
        for c in range(calls):
            mine = owner[c * self.per_call : (c + 1) * self.per_call]
            k = int(np.bincount(mine, minlength=len(batches)).argmax())
            counted[k] += 1
            held[k] += len(mine)
        out = []
        for k, (b, s) in enumerate(zip(batches, seeds, strict=True)):
            res = self.inner.sample_batch(b, seed=s, **kw)
            res.info.update(
                solved_by="all-layers",
                qpu_calls=int(counted[k]),
                problems_per_call=float(held[k] / counted[k]) if counted[k] else None,
                qpu_access_time=0.01 * b.num_problems / total * calls,
                chain_break_fraction=0.0,
            )
            out.append(res)
        self.total_calls = calls
        return out


register_backend("test-per-layer", _PerLayer, overwrite=True)
register_backend("test-all-layers", _AllLayers, overwrite=True)


def _train(backend: str, steps: int = 3) -> tuple[nn.Module, QPSBGD]:
    torch.manual_seed(0)
    model = nn.Sequential(
        BinaryLinear(10, 16), nn.Tanh(), BinaryLinear(16, 9), nn.Tanh(), BinaryLinear(9, 3)
    )
    opt = QPSBGD(
        model,
        lr=0.05,
        backend=backend,
        backend_options={"num_reads": 2, "num_sweeps": 20, "device": "cpu"},
        seed=4,
    )
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(12, 10, generator=gen)
        y = torch.randint(0, 3, (12,), generator=gen)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model, opt


def test_one_solver_call_per_step_for_all_layers() -> None:
    one_model, one = _train("test-all-layers")
    per_model, per = _train("test-per-layer")
    assert one.sampler.calls == 3  # one call per step for the three layers
    assert per.sampler.calls == 9
    assert one.sampler.last_sizes == [(16, 10), (9, 16), (3, 9)]  # ragged: different n and m
    # each layer keeps its own seed, so the trajectory is the per-layer one, bit for bit
    for a, b in zip(one_model.parameters(), per_model.parameters(), strict=True):
        assert torch.equal(a, b)
    for ra, rb in zip(one.last_stats, per.last_stats, strict=True):
        assert ra["layer"] == rb["layer"] and ra["seed"] == rb["seed"]
        assert ra["best_energy"] == rb["best_energy"]
        assert ra["flip_ratio"] == rb["flip_ratio"]
        assert ra["solved_by"] == "all-layers" and ra["solved_by_counts"] == {
            "all-layers": ra["problems"]
        }


def test_shared_call_records_add_up_to_the_calls_made() -> None:
    _, opt = _train("test-all-layers", steps=2)
    stats = opt.last_stats
    calls = sum(s["qpu_calls"] for s in stats)
    assert calls == opt.sampler.total_calls == -(-28 // 7)
    problems = sum(s["problems_per_call"] * s["qpu_calls"] for s in stats if s["qpu_calls"])
    assert problems == 28
    assert sum(s["qpu_access_time"] for s in stats) == pytest.approx(0.01 * 4)
    assert opt.qpu_totals["qpu_calls"] == 2 * 4


def test_one_read_takes_the_only_sample() -> None:
    torch.manual_seed(2)
    model = nn.Sequential(BinaryLinear(6, 4))
    opt = QPSBGD(
        model, lr=0.1, backend="batched", backend_options={"num_reads": 1, "num_sweeps": 5}, seed=0
    )
    old = model[0].weight.detach().clone()
    F.mse_loss(model(torch.randn(5, 6)), torch.randn(5, 4)).backward()
    opt.step()
    rec = opt.last_stats[0]
    assert rec["rows"] == 5 and np.isfinite(rec["best_energy"])
    assert not torch.equal(old, model[0].weight.detach()) or rec["flip_ratio"] == 0.0


def _full_batch_steps(monkeypatch: pytest.MonkeyPatch, cache_min: int) -> tuple[Any, ...]:
    monkeypatch.setattr(optimizer_module, "_GRAM_CACHE_MIN", cache_min)
    torch.manual_seed(0)
    X = torch.sign(torch.randn(40, 24))  # the same inputs every step (a full-batch layer)
    y = torch.randint(0, 2, (40,))
    model = nn.Sequential(BinaryLinear(24, 6), nn.Tanh(), nn.Linear(6, 2))
    opt = QPSBGD(
        model,
        lr=0.05,
        normalize=True,
        backend="batched",
        backend_options={"num_reads": 1, "num_sweeps": 10, "device": "cpu"},
        seed=3,
    )
    grams = []
    for _ in range(3):
        opt.zero_grad()
        F.cross_entropy(model(X), y).backward()
        opt.step()
        grams.append(opt._gram_cache.get(0, (None, None))[1])
    return model[0].weight.detach().clone(), grams, [s["best_energy"] for s in opt.last_stats]


def test_gram_of_unchanged_inputs_is_reused(monkeypatch: pytest.MonkeyPatch) -> None:
    w_cached, grams, e_cached = _full_batch_steps(monkeypatch, 0)
    assert grams[0] is not None and grams[0] is grams[1] is grams[2]  # computed once
    w_fresh, fresh, e_fresh = _full_batch_steps(monkeypatch, 1 << 62)
    assert fresh == [None, None, None]
    # reuse changes nothing: the same float32 Gram (one BLAS product of the same rows)
    assert torch.equal(w_cached, w_fresh)
    assert e_cached == pytest.approx(e_fresh, rel=1e-6)


def test_gram_is_recomputed_when_inputs_change(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(optimizer_module, "_GRAM_CACHE_MIN", 0)
    torch.manual_seed(0)
    model = nn.Sequential(BinaryLinear(8, 3))
    opt = QPSBGD(model, lr=0.05, backend="batched", backend_options={"num_reads": 1}, seed=0)
    seen = []
    for k in range(2):
        x = torch.sign(torch.randn(20, 8)) * (k + 1)
        opt.zero_grad()
        F.mse_loss(model(x), torch.randn(20, 3)).backward()
        opt.step()
        X = x.numpy().astype(np.float32)
        np.testing.assert_array_equal(opt._gram_cache[0][1], X.T @ X)
        seen.append(opt._gram_cache[0][1])
    assert seen[0] is not seen[1]


@pytest.mark.timeout(180)
def test_packed_qpu_holds_problems_of_several_layers_per_call() -> None:
    """On the mock P4 with ``pack``, one step of a 3-layer net shares calls across layers."""
    pytest.importorskip("dwave.system")

    def run(pack_layers: bool) -> tuple[QPSBGD, nn.Module, int]:
        torch.manual_seed(0)
        model = nn.Sequential(
            BinaryLinear(6, 5), nn.Tanh(), BinaryLinear(5, 4), nn.Tanh(), BinaryLinear(4, 2)
        )
        opt = QPSBGD(
            model,
            lr=0.05,
            backend="mock-dwave",
            backend_options={
                "pack": True,
                "topology_shape": [4],
                "substitute": "neal",
                "num_sweeps": 200,
                "problems_per_call": 4,
                "num_reads": 4,
            },
            seed=1,
        )
        child = opt.sampler.backend.child
        calls = []
        original = child.sample

        def counting(bqm, **kw):
            calls.append(bqm.num_variables)
            return original(bqm, **kw)

        child.sample = counting
        if not pack_layers:  # the per-layer path: one sample_batch per layer
            opt.sampler.sample_batches = None
        x = torch.randn(10, 6, generator=torch.Generator().manual_seed(2))
        y = torch.randint(0, 2, (10,), generator=torch.Generator().manual_seed(3))
        F.cross_entropy(model(x), y).backward()
        opt.step()
        return opt, model, len(calls)

    shared, _, shared_calls = run(True)
    alone, _, alone_calls = run(False)
    # 5 + 4 + 2 = 11 problems at 4 per call: 3 shared calls against 2 + 1 + 1 per layer
    assert shared_calls == 3 and alone_calls == 4
    stats = shared.last_stats
    assert sum(s["qpu_calls"] for s in stats) == 3 == shared.qpu_totals["qpu_calls"]
    assert sum(s["problems_per_call"] * s["qpu_calls"] for s in stats if s["qpu_calls"]) == 11
    assert all(s["solved_by"] == "mock-dwave-packed" for s in stats)
    assert all(0.0 <= s["chain_break_fraction"] <= 1.0 for s in stats)
    assert sum(s["qpu_access_time"] for s in stats) > 0
    # the shared calls solve the problems about as well as the per-layer ones
    for a, b in zip(stats, alone.last_stats, strict=True):
        assert a["best_energy"] <= b["best_energy"] + 0.05 * abs(b["best_energy"])


@pytest.mark.timeout(180)
def test_packed_blocks_of_several_layers_share_calls_round_by_round() -> None:
    """With ``max_block_vars``, block r of every layer goes into the same packed calls."""
    pytest.importorskip("dwave.system")

    def run(together: bool) -> tuple[QPSBGD, int]:
        torch.manual_seed(0)
        model = nn.Sequential(BinaryLinear(7, 5), nn.Tanh(), BinaryLinear(5, 2))
        opt = QPSBGD(
            model,
            lr=0.05,
            backend="mock-dwave",
            backend_options={
                "pack": True,
                "topology_shape": [4],
                "substitute": "neal",
                "num_sweeps": 100,
                "problems_per_call": 4,
                "num_reads": 2,
            },
            max_block_vars=3,
            seed=1,
        )
        child = opt.sampler.backend.child
        calls = []
        original = child.sample

        def counting(bqm, **kw):
            calls.append(bqm.num_variables)
            return original(bqm, **kw)

        child.sample = counting
        if not together:
            opt.sampler.sample_batches = None
        x = torch.randn(10, 7, generator=torch.Generator().manual_seed(2))
        y = torch.randint(0, 2, (10,), generator=torch.Generator().manual_seed(3))
        F.cross_entropy(model(x), y).backward()
        opt.step()
        return opt, len(calls)

    shared, shared_calls = run(True)
    _, alone_calls = run(False)
    # blocks: 7 -> (3, 2, 2), 5 -> (3, 2); rounds of 7, 7 and 5 problems at 4 per call
    assert shared_calls == 2 + 2 + 2 and alone_calls == 3 * 2 + 2 * 1
    stats = shared.last_stats
    assert [s["block_vars"] for s in stats] == [3, 3]
    assert sum(s["qpu_calls"] for s in stats) == shared_calls == shared.qpu_totals["qpu_calls"]
    problems = sum(s["problems_per_call"] * s["qpu_calls"] for s in stats if s["qpu_calls"])
    assert problems == pytest.approx(7 + 7 + 5)
    assert [s["solved_by_counts"] for s in stats] == [
        {"mock-dwave-packed": 15},
        {"mock-dwave-packed": 4},
    ]


class _Trusted(_PerLayer):
    """Says its energies were computed from the batch (``info["energies_from_batch"]``)."""

    def sample_batch(self, batch: Any, **kw: Any) -> Any:
        res = super().sample_batch(batch, **kw)
        res.info["energies_from_batch"] = True
        return res


class _Plain(_PerLayer):
    """Does not say where its energies came from (``batched`` itself now says it)."""

    def sample_batch(self, batch: Any, **kw: Any) -> Any:
        res = super().sample_batch(batch, **kw)
        res.info.pop("energies_from_batch", None)
        return res


def test_energies_from_the_sampler_are_not_computed_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    from qsgd.ising import IsingBatch
    from qsgd.qubo import layer_ising
    from qsgd.samplers.registry import solve_batch

    rng = np.random.default_rng(0)
    batch = layer_ising(rng.normal(size=(5, 8)), rng.normal(size=(5, 3)), eta=0.5)
    passes = []
    original = IsingBatch.energies

    def counted(self: IsingBatch, spins: Any) -> Any:
        passes.append(spins.shape)
        return original(self, spins)

    monkeypatch.setattr(IsingBatch, "energies", counted)
    run = {"num_reads": 3, "num_sweeps": 10, "seed": 0, "device": "cpu"}
    trusted = solve_batch(_Trusted(), batch, **run)
    n_trusted = len(passes)
    plain = solve_batch(_Plain(), batch, **run)
    assert len(passes) - n_trusted == n_trusted + 1  # the plain path adds solve_batch's own pass
    np.testing.assert_array_equal(trusted.samples, plain.samples)
    np.testing.assert_allclose(trusted.energies, plain.energies, rtol=1e-12)
    assert trusted.info["reported_energy_max_abs_error"] == 0.0
