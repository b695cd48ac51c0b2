"""Registered composites (pack, dask, blockwise): chosen from TOML and from QPSBGD, results unchanged."""

from __future__ import annotations

import dimod
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from qsgd.errors import ConfigError, UnknownBackendError
from qsgd.qubo import solve_blockwise
from qsgd.samplers import Sampler, get_sampler, solve_batch
from qsgd.samplers.blockwise import BlockwiseComposite
from qsgd.samplers.dask import DaskComposite
from qsgd.samplers.registry import available_composites, compose
from qsgd.testing import random_batch


def test_registry_lists_the_composites_and_checks_their_options():
    assert {"pack", "dask", "blockwise"} <= set(available_composites())
    with pytest.raises(
        UnknownBackendError, match=r"unknown composite 'zip'; known composites: pack"
    ):
        compose(get_sampler("exact"), ["zip"])
    with pytest.raises(
        ConfigError, match=r"unknown option 'block' for backend 'blockwise'; accepted options: "
    ):
        compose(get_sampler("exact"), [("blockwise", {"block": 3})])
    with pytest.raises(ConfigError, match=r"max_block_vars must be an int > 1 \(got 1\)"):
        BlockwiseComposite(get_sampler("exact"), 1)
    with pytest.raises(ConfigError, match=r"max_block_vars must be given: backend 'neal'"):
        BlockwiseComposite(get_sampler("neal"))


def test_composites_are_dimod_composed_samplers():
    inner = get_sampler("neal")
    for outer in (
        compose(inner, [("blockwise", {"max_block_vars": 4})]),
        compose(inner, [("dask", {"scheduler": "local"})]),
    ):
        assert isinstance(outer, dimod.ComposedSampler) and isinstance(outer, Sampler)
        assert outer.children == [inner] and outer.backend_name == "neal"
        assert set(inner.parameters) <= set(outer.parameters)


def test_blockwise_composite_equals_solve_blockwise():
    batch = random_batch(10, 3, seed=4)
    exact = get_sampler("exact")
    res = solve_batch(compose(exact, [("blockwise", {"max_block_vars": 4})]), batch, num_reads=2)
    initial = np.where(batch.h <= 0, 1, -1)
    spins, energies = solve_blockwise(
        batch, lambda sub: solve_batch(exact, sub, num_reads=2), 4, initial
    )
    np.testing.assert_array_equal(res.best, spins)
    np.testing.assert_allclose(res.best_energy, energies)
    assert res.info["block_vars"] == 4 and res.info["solved_by_counts"] == {"exact": 9}
    assert (res.info["blocks"], res.info["qpu_calls"], res.info["qpu_problems"]) == (3, 0, 0)
    small = random_batch(4, 2, seed=1)  # fits: solved whole, all reads
    whole = solve_batch(BlockwiseComposite(exact, 4), small, num_reads=3)
    assert whole.samples.shape == (2, 3, 4) and whole.info["block_vars"] is None


def test_blockwise_composite_in_qpsbgd_equals_max_block_vars():
    from bnn.models import BinaryMLP
    from qsgd.optimizer import QPSBGD

    X = torch.randint(0, 2, (16, 10), generator=torch.Generator().manual_seed(0)).float() * 2 - 1
    y = (X[:, 0] > 0).long()

    def train(**kw):
        torch.manual_seed(0)
        model = BinaryMLP(10, [6], 2)
        opt = QPSBGD(model, lr=0.05, seed=1, **kw)
        for _ in range(2):
            opt.zero_grad()
            F.cross_entropy(model(X), y).backward()
            opt.step()
        return [p.detach().clone() for p in model.parameters()], opt

    ref, _ = train(backend="exact", max_block_vars=4)
    got, opt = train(backend=compose(get_sampler("exact"), [("blockwise", {"max_block_vars": 4})]))
    assert opt.backend_name == "exact"
    for a, b in zip(ref, got, strict=True):
        assert torch.equal(a, b)


def test_dask_composite_local_equals_solve_batch():
    batch = random_batch(8, 5, seed=2)
    kw = dict(num_reads=3, num_sweeps=20, seed=7)
    dist = solve_batch(
        compose(get_sampler("neal"), [("dask", {"scheduler": "local", "chunk_size": 2})]),
        batch,
        **kw,
    )
    ref = solve_batch(get_sampler("neal"), batch, **kw)
    np.testing.assert_array_equal(dist.samples, ref.samples)
    assert dist.info["chunks"] == 3


def test_pack_and_dask_composites_chosen_from_a_toml_config(tmp_path):
    """The real loader: bnn's RunConfig reads [annealer] into qsgd.config.AnnealerConfig."""
    pytest.importorskip("dwave.system")
    from bnn.config import RunConfig
    from qsgd.samplers.packing import PackedQPUSampler

    path = tmp_path / "run.toml"
    path.write_text(
        '[data]\nname = "breast_cancer"\n[optimizer]\nname = "qpsbgd"\n'
        '[annealer]\nbackend = "mock-dwave"\npack = true\nscheduler = "tcp://10.0.0.5:8786"\n'
        "options = { topology_shape = [4], problems_per_call = 2 }\n"
        "[annealer.dask]\nchunk_size = 8\ntimeout = 60\n"
    )
    cfg = RunConfig.from_file(path).annealer
    assert cfg.composites() == [
        ("dask", {"scheduler": "tcp://10.0.0.5:8786", "chunk_size": 8, **cfg.dask.engine_options()})
    ]
    sampler = cfg.make_sampler()  # nothing is contacted before the first solve
    assert isinstance(sampler, DaskComposite) and sampler.chunk_size == 8
    (packed,) = sampler.children  # dask( pack( mock-dwave ) ), built here from the shipped spec
    assert isinstance(packed, PackedQPUSampler) and packed.backend_name == "mock-dwave-packed"
    assert packed.children[0].solver_id.endswith("4")
    assert cfg.run_options()["problems_per_call"] == 2
    local = RunConfig.from_file(path, ["annealer.scheduler=local"]).annealer.make_sampler()
    assert isinstance(local, PackedQPUSampler)  # without a scheduler: the packed backend itself


def test_blockwise_composite_takes_the_qpu_block_size_and_counts_its_calls():
    pytest.importorskip("dwave.system")
    qpu = get_sampler("mock-dwave", substitute="neal", num_sweeps=50)
    blocks = compose(qpu, ["blockwise"])  # block size: the largest clique on the chip (24 on P3)
    assert blocks.max_block_vars == qpu.properties["max_num_variables"] == 24
    assert blocks.properties["max_num_variables"] is None  # the composite takes any size
    res = solve_batch(blocks, random_batch(30, 2, seed=0), num_reads=2, seed=0)
    info = res.info
    assert info["blocks"] == 2 and info["qpu_calls"] == info["qpu_problems"] == 4
    assert info["solved_by_counts"] == {"mock-dwave": 4} and info["chain_break_fraction"] >= 0
