"""AnnealerConfig: good configs, the bad-config table, TOML loading and the sampler helpers."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from qsgd.config import AnnealerConfig, backend_options
from qsgd.errors import ConfigError
from qsgd.samplers import solve_batch
from qsgd.testing import brute_force_minimum, random_batch


def test_defaults_and_run_options_for_neal():
    cfg = AnnealerConfig()
    assert cfg.backend == "neal" and cfg.num_reads == 10
    assert cfg.run_options() == {"num_reads": 10}
    cfg = AnnealerConfig(
        num_sweeps=50, seed=3, beta_range=(0.1, 5.0), options={"num_sweeps_per_beta": 2}
    )
    assert cfg.run_options() == {
        "num_reads": 10,
        "num_sweeps": 50,
        "seed": 3,
        "beta_range": (0.1, 5.0),
        "num_sweeps_per_beta": 2,
    }
    assert cfg.sampler_options() == {}


def test_generic_knobs_apply_only_where_the_backend_has_them():
    cfg = AnnealerConfig(
        backend="tabu", num_sweeps=50, seed=1, chain_strength=2.0, options={"tenure": 3}
    )
    assert cfg.run_options() == {"num_reads": 10, "seed": 1, "tenure": 3}
    cfg = AnnealerConfig(
        backend="mock-dwave", chain_strength=2.0, annealing_time=20, fallback="neal", num_sweeps=9
    )
    assert cfg.run_options() == {"num_reads": 10, "chain_strength": 2.0, "annealing_time": 20.0}
    assert cfg.sampler_options() == {"fallback": "neal"}


def test_options_split_into_constructor_and_run_options():
    cfg = AnnealerConfig(backend="exact", num_reads=2, options={"max_variables": 12})
    assert cfg.sampler_options() == {"max_variables": 12}
    assert cfg.run_options() == {"num_reads": 2}
    assert cfg.make_sampler().max_variables == 12
    cfg = AnnealerConfig(
        backend="mock-dwave", options={"topology_shape": [3], "substitute": "neal"}
    )
    assert cfg.sampler_options() == {"topology_shape": [3], "substitute": "neal"}


def test_make_sampler_and_run_options_solve_a_batch():
    batch = random_batch(8, 2, seed=4)
    for backend in ("neal", "exact", "tabu"):
        cfg = AnnealerConfig(backend=backend, num_reads=4, seed=0)
        res = solve_batch(cfg.make_sampler(), batch, **cfg.run_options())
        np.testing.assert_allclose(res.best_energy, brute_force_minimum(batch))


def test_backend_options_introspection_needs_no_connection():
    init, run = backend_options("dwave")  # no network, no credentials
    assert {"fallback", "solver", "timeout"} <= init
    assert run == {"num_reads", "chain_strength", "annealing_time"}
    # constructors take structure only: no run setting is a constructor option
    for name in ("neal", "exact", "tabu", "steepest", "dwave", "mock-dwave"):
        init, run = backend_options(name)
        assert not init & run, (name, init & run)
    init, run = backend_options("neal")
    assert "num_sweeps" in run and not init
    assert backend_options("exact")[0] == {"max_variables"}


def test_from_toml_file_and_text(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('[annealer]\nbackend = "exact"\nnum_reads = 3\nseed = 7\n[other]\nx = 1\n')
    cfg = AnnealerConfig.from_toml(path)
    assert (cfg.backend, cfg.num_reads, cfg.seed) == ("exact", 3, 7)
    assert AnnealerConfig.from_toml(str(path)) == cfg
    cfg = AnnealerConfig.from_toml('backend = "tabu"\noptions = { tenure = 2 }\n')
    assert cfg.options == {"tenure": 2}
    assert AnnealerConfig.from_dict(cfg.model_dump()) == cfg


def test_embeds_in_a_larger_pydantic_model():
    from pydantic import BaseModel

    class Train(BaseModel):
        annealer: AnnealerConfig = AnnealerConfig()

    assert Train.model_validate({"annealer": {"backend": "tabu"}}).annealer.backend == "tabu"
    with pytest.raises(ValidationError, match="unknown annealer backend 'nope'"):
        Train.model_validate({"annealer": {"backend": "nope"}})


BAD = [
    (
        {"backend": "nope"},
        r"annealer\.backend: unknown annealer backend 'nope'; known backends: neal, exact",
    ),
    (
        {"num_sweep": 10},
        r"annealer\.num_sweep: unknown key 'num_sweep'; allowed keys: backend, num_reads",
    ),
    (
        {"options": {"colour": 1}},
        r"unknown option 'colour' for backend 'neal'; accepted options: .*num_sweeps",
    ),
    (
        {"backend": "tabu", "options": {"num_sweeps": 1}},
        r"unknown option 'num_sweeps' for backend 'tabu'",
    ),
    ({"num_reads": 0}, r"annealer\.num_reads: Input should be greater than 0 \(got 0\)"),
    ({"num_reads": "many"}, r"annealer\.num_reads: .*integer.*\(got 'many'\)"),
    ({"num_sweeps": -5}, r"annealer\.num_sweeps: Input should be greater than 0 \(got -5\)"),
    ({"seed": -1}, r"annealer\.seed: Input should be greater than or equal to 0 \(got -1\)"),
    (
        {"beta_range": [5.0, 1.0]},
        r"beta_range must be \(hot, cold\) with 0 < hot < cold < inf \(got \(5\.0, 1\.0\)\)",
    ),
    (
        {"fallback": "dwave"},
        r"annealer\.fallback: fallback must be one of neal, .* or None \(got 'dwave'\)",
    ),
    ({"chain_strength": 0}, r"annealer\.chain_strength: Input should be greater than 0"),
    ({"annealing_time": -1.0}, r"annealer\.annealing_time: Input should be greater than 0"),
    ({"max_block_vars": 1}, r"annealer\.max_block_vars: Input should be greater than 1"),
]


@pytest.mark.parametrize("data,match", BAD, ids=[str(sorted(d)) for d, _ in BAD])
def test_bad_config(data, match):
    with pytest.raises(ConfigError, match=match):
        AnnealerConfig.from_dict(data)
    with pytest.raises(ValidationError):
        AnnealerConfig(**data)


def test_bad_sources(tmp_path):
    with pytest.raises(ConfigError, match="annealer must be a table/mapping"):
        AnnealerConfig.from_dict([1, 2])
    with pytest.raises(ConfigError, match="cannot read annealer config file"):
        AnnealerConfig.from_toml(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="invalid TOML"):
        AnnealerConfig.from_toml("backend = = 3\n")


def test_config_is_frozen():
    cfg = AnnealerConfig()
    with pytest.raises(ValidationError):
        cfg.num_reads = 5
