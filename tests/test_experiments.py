"""The experiment harness and the four paper-experiment scripts (smoke mode, into tmp_path)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bnn.data import get_dataset
from bnn.experiments import (
    Method,
    Task,
    add_common_arguments,
    annealer_settings,
    build_methods,
    make_grid,
    markdown_table,
    mean_std,
    run_experiment,
    shrink_tabular,
    summarize,
    write_results,
)
from bnn.models import BinaryMLP

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"_example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _grids(n: int = 2) -> dict:
    lrs = [0.01, 0.03, 0.1, 0.3][:n]
    return {
        "qpsbgd": make_grid(lr=lrs[:1], curvature=[0.1, 1.0][:n]),
        **{k: make_grid(lr=lrs) for k in ("binaryconnect", "signsgd", "proxquant")},
        "full_precision": make_grid(lr=lrs),
    }


# --------------------------------------------------------------------- harness pieces
def test_make_grid_is_a_product_in_order():
    grid = make_grid(lr=[1, 2], curvature=[3, 4, 5])
    assert len(grid) == 6
    assert grid[0] == {"lr": 1, "curvature": 3} and grid[-1] == {"lr": 2, "curvature": 5}


def test_make_grid_rejects_empty_values():
    with pytest.raises(ValueError, match="grid values of 'lr' must be a non-empty sequence"):
        make_grid(lr=[])


def test_build_methods_equal_budget_and_order():
    methods = build_methods(_grids(), backends=["batched", "neal"], annealer={"num_reads": 1})
    assert [m.key for m in methods] == [
        "qpsbgd_neal",
        "qpsbgd_batched",
        "binaryconnect",
        "signsgd",
        "proxquant",
        "full_precision",
    ]
    assert {len(m.grid) for m in methods} == {2}
    assert [m.binary for m in methods].count(False) == 1
    assert methods[0].fixed["backend"].backend == "neal"
    assert methods[0].fixed["backend"].num_reads == 1


def test_build_methods_rejects_unequal_budget():
    grids = _grids()
    grids["signsgd"] = make_grid(lr=[0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="same search budget"):
        build_methods(grids, backends=["neal"])


def test_build_methods_rejects_unknown_method_and_missing_family():
    with pytest.raises(ValueError, match="unknown method 'sgd'"):
        build_methods(_grids(), backends=["neal"], include=["sgd"])
    grids = _grids()
    del grids["proxquant"]
    with pytest.raises(ValueError, match="missing the method family 'proxquant'"):
        build_methods(grids, backends=["neal"])


def test_mean_std_and_summarize():
    assert mean_std([2.0]) == (2.0, 0.0)
    assert mean_std([None, float("nan")]) == (None, None)
    m, s = mean_std([1.0, 2.0, 3.0])
    assert m == 2.0 and math.isclose(s, 1.0)
    summary = summarize([{"test_accuracy": 0.5}, {"test_accuracy": 0.7}])
    assert summary["n"] == 2
    assert math.isclose(summary["test_accuracy"]["mean"], 0.6)


def test_shrink_tabular_and_bad_size():
    ds = get_dataset("breast_cancer")
    small = shrink_tabular(ds, train=10, val=5, test=7)
    assert small.x_train.shape[0] == 10 and small.y_val.shape[0] == 5
    assert small.x_test.shape == (7, ds.num_features)
    with pytest.raises(ValueError, match="val must be a positive int"):
        shrink_tabular(ds, train=1, val=0, test=1)


def test_annealer_settings_precedence(tmp_path):
    import argparse

    parser = add_common_arguments(argparse.ArgumentParser(), default_backends=["neal"])
    cfg = tmp_path / "a.toml"
    cfg.write_text('[annealer]\nbackend = "steepest"\nnum_reads = 3\nseed = 5\n')
    backends, settings = annealer_settings(
        parser.parse_args(["--annealer-config", str(cfg), "--num-sweeps", "7"]), {"num_reads": 1}
    )
    assert backends == ["steepest"]
    assert settings == {"num_reads": 3, "num_sweeps": 7}
    backends, _ = annealer_settings(parser.parse_args(["--backend", "exact"]), {})
    assert backends == ["exact"]
    assert annealer_settings(parser.parse_args([]), {})[0] == ["neal"]
    with pytest.raises(ValueError, match="--num-reads must be a positive int"):
        annealer_settings(parser.parse_args(["--num-reads", "0"]), {})
    with pytest.raises(ValueError, match="--seeds must be a positive int"):
        annealer_settings(parser.parse_args(["--seeds", "0"]), {})


def _digits_task() -> Task:
    ds = shrink_tabular(get_dataset("digits", seed=0), train=96, val=60, test=60)
    return Task(
        "digits",
        ds,
        lambda d, binary: BinaryMLP(d.num_features, [8], d.num_classes, binary=binary),
        epochs=2,
        batch_size=32,
    )


def test_run_experiment_search_picks_best_val_and_is_seeded(tmp_path):
    task = _digits_task()
    methods = build_methods(_grids(), backends=["exact"], include=["signsgd", "full_precision"])
    res = run_experiment(task, methods, seeds=[0, 1], search_seed=7, log=lambda m: None)
    for m in res["methods"].values():
        assert m["budget"] == 2 and len(m["search"]) == 2
        best = max(m["search"], key=lambda t: (t["val_accuracy"], -t["val_loss"]))
        assert m["chosen"] == best["hparams"]
        assert [r["seed"] for r in m["runs"]] == [0, 1]
        assert all(len(r["curve"]) == 2 for r in m["runs"])
        assert all(r["wall_time_per_epoch"] > 0 for r in m["runs"])
    again = run_experiment(task, methods, seeds=[0, 1], search_seed=7, log=lambda m: None)
    for key, m in res["methods"].items():
        assert [r["test_accuracy"] for r in m["runs"]] == [
            r["test_accuracy"] for r in again["methods"][key]["runs"]
        ]
    paths = write_results(res, tmp_path, "digits")
    data = json.loads(paths["json"].read_text())
    assert data["methods"]["signsgd"]["grid"] == [{"lr": 0.01}, {"lr": 0.03}]
    assert paths["png"].stat().st_size > 0
    table = paths["md"].read_text()
    assert "| signSGD | full precision |" in table
    assert "majority rate (test)" in table and "± " in table


def test_search_from_reuses_the_other_methods_choice():
    task = _digits_task()
    a = Method("qpsbgd_exact", "QP-SBGD (exact)", "signsgd", make_grid(lr=[0.01, 0.1]))
    b = Method(
        "qpsbgd_neal",
        "QP-SBGD (neal)",
        "signsgd",
        make_grid(lr=[0.5, 0.6]),
        search_from="qpsbgd_exact",
        seeds=[3],
        epochs=1,
    )
    res = run_experiment(task, [b, a], seeds=[0], log=lambda m: None)
    assert list(res["methods"]) == ["qpsbgd_neal", "qpsbgd_exact"]
    nb = res["methods"]["qpsbgd_neal"]
    assert nb["search"] == [] and nb["chosen"] == res["methods"]["qpsbgd_exact"]["chosen"]
    assert nb["seeds"] == [3] and nb["runs"][0]["epochs"] == 1
    assert "reused from QP-SBGD (exact)" in markdown_table(res)
    with pytest.raises(ValueError, match="reuses the search of 'qpsbgd_exact', which is not run"):
        run_experiment(task, [b], seeds=[0], log=lambda m: None)


# --------------------------------------------------------------------- rosenbrock maths
def test_rosenbrock_gradient_and_hessian_match_finite_differences():
    rb = _load("rosenbrock")
    x = np.random.default_rng(0).uniform(-2, 2, (3, 5))
    eps = 1e-6
    fd = np.stack(
        [(rb.rosenbrock(x + eps * e) - rb.rosenbrock(x - eps * e)) / (2 * eps) for e in np.eye(5)],
        axis=1,
    )
    np.testing.assert_allclose(rb.rosenbrock_grad(x), fd, rtol=1e-5, atol=1e-4)
    fdh = np.stack(
        [
            (rb.rosenbrock_grad(x + eps * e) - rb.rosenbrock_grad(x - eps * e)) / (2 * eps)
            for e in np.eye(5)
        ],
        axis=2,
    )
    np.testing.assert_allclose(rb.rosenbrock_hessian(x), fdh, rtol=1e-5, atol=1e-3)
    assert rb.rosenbrock(np.ones((1, 4)))[0] == 0.0


def test_rosenbrock_qpsbgd_direction_is_the_brute_force_minimiser():
    from qsgd.config import AnnealerConfig
    from qsgd.qubo import brute_force, quadratic_model_ising

    rb = _load("rosenbrock")
    x = np.random.default_rng(1).uniform(-2, 2, (4, 3))
    g, H = rb.rosenbrock_grad(x), rb.rosenbrock_hessian(x)
    d = rb.qpsbgd_direction(AnnealerConfig(backend="exact", num_reads=1), 0)(g, H, 0.05, 0)
    for i in range(4):
        best = brute_force(quadratic_model_ising(g[i], H[i], 0.05))[0][0]
        np.testing.assert_array_equal(d[i], best)


# --------------------------------------------------------------------- scripts end to end
def test_rosenbrock_script_smoke(tmp_path):
    res = _load("rosenbrock").main(
        ["--smoke", "--out", str(tmp_path), "--backend", "exact", "--dims", "2,4"]
    )
    assert set(res["problems"]) == {"2", "4"}
    for prob in res["problems"].values():
        assert list(prob["methods"]) == ["qpsbgd_exact", "signsgd", "clipped_gd"]
        assert all(m["budget"] == 2 for m in prob["methods"].values())
    for suffix in ("json", "md", "png"):
        assert (tmp_path / f"rosenbrock.{suffix}").stat().st_size > 0


@pytest.mark.parametrize(
    ("script", "stem", "backends"),
    [
        ("a1a_2layer", "a1a_2layer", ["mock-dwave", "neal", "batched"]),
        ("a1a_10layer", "a1a_10layer", ["neal", "batched"]),
        ("gcn", "gcn_karate", ["neal", "batched"]),
    ],
)
def test_bnn_scripts_smoke(tmp_path, script, stem, backends):
    _load(script).main(["--smoke", "--out", str(tmp_path)])
    data = json.loads((tmp_path / f"{stem}.json").read_text())
    expected = [f"qpsbgd_{b}" for b in backends]
    expected += ["binaryconnect", "signsgd", "proxquant", "full_precision"]
    assert list(data["methods"]) == expected
    for m in data["methods"].values():
        assert m["budget"] == 1 and len(m["runs"]) == 1
        run = m["runs"][0]
        assert 0.0 <= run["test_accuracy"] <= 1.0 and math.isfinite(run["test_loss"])
        assert run["wall_time_per_epoch"] > 0
    assert 0.0 < data["majority_rate"] < 1.0
    assert data["extra"]["smoke"] is True and "--smoke" in data["extra"]["command"]
    table = (tmp_path / f"{stem}.md").read_text()
    assert "QP-SBGD (batched)" in table and "full precision" in table
    assert (tmp_path / f"{stem}.png").stat().st_size > 0
