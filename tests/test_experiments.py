"""The experiment harness and the four paper-experiment scripts (smoke mode, into tmp_path)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import bnn.experiments as experiments
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
    numbers_only,
    paired_differences,
    run_and_write,
    run_experiment,
    search,
    shrink_tabular,
    summarize,
    summary_index,
    train_once,
    write_results,
)
from bnn.models import BinaryMLP

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


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


def test_build_methods_order_ablation_and_tied_other_lr():
    grids = {**_grids(), "qpsbgd_c0": make_grid(lr=[0.01]), "bop": make_grid(lr=[0.01])}
    methods = build_methods(grids, backends=["batched", "neal"], annealer={"num_reads": 1})
    assert [m.key for m in methods] == [
        "qpsbgd_neal",
        "qpsbgd_batched",
        "qpsbgd_batched_c0",
        "binaryconnect",
        "signsgd",
        "proxquant",
        "bop",
        "full_precision",
    ]
    assert [m.binary for m in methods].count(False) == 1
    assert methods[0].fixed["backend"].backend == "neal"
    assert methods[0].fixed["backend"].num_reads == 1
    assert methods[2].fixed["curvature"] == 0.0 and methods[2].label == "QP-SBGD c=0 (batched)"
    assert all(m.tie_other_lr for m in methods if m.optimizer == "qpsbgd")


def test_method_axes_make_the_product_grid_and_must_increase():
    m = Method("x", "x", "signsgd", axes={"lr": [0.1, 0.3], "curvature": [1.0]})
    assert m.grid == [{"lr": 0.1, "curvature": 1.0}, {"lr": 0.3, "curvature": 1.0}]
    with pytest.raises(ValueError, match="axis 'lr' of method 'x' must be"):
        Method("x", "x", "signsgd", axes={"lr": [0.3, 0.1]})


def test_nonbinary_lr_tied_for_qpsbgd_and_a_searched_one_splits_the_baselines_groups():
    model = BinaryMLP(6, [4], 2)
    q = Method("qpsbgd_exact", "q", "qpsbgd", fixed={"backend": "exact"}, tie_other_lr=True)
    opt = experiments._make_optimizer(q, model, {"lr": 0.02, "curvature": 1.0}, seed=0)
    assert opt.other_lr == 0.02
    bc = Method("binaryconnect", "BC", "binaryconnect")
    opt = experiments._make_optimizer(bc, model, {"lr": 0.02}, seed=0)
    assert [g["lr"] for g in opt.param_groups] == [0.02]
    opt = experiments._make_optimizer(bc, model, {"lr": 0.02, "other_lr": 0.005}, seed=0)
    assert [g["lr"] for g in opt.param_groups] == [0.02, 0.005]
    assert all(getattr(p, "_bnn_binary", False) for p in opt.param_groups[0]["params"])
    assert not any(getattr(p, "_bnn_binary", False) for p in opt.param_groups[1]["params"])


def test_fair_grids_search_proxquants_regulariser_rate_and_it_reaches_the_optimizer():
    grids = experiments.fair_grids([0.01, 0.1], [1.0, 10.0])
    assert grids["proxquant"] == {"lr": [0.01, 0.1], "reg_rate": [1e-3, 1e-2, 1e-1]}
    assert grids["binaryconnect"] == {"lr": [0.01, 0.1]}
    smoke = experiments.fair_grids([0.01], [1.0], proxquant_reg_rate=[0.5])
    assert smoke["proxquant"]["reg_rate"] == [0.5]
    pq = Method("proxquant", "PQ", "proxquant", axes=grids["proxquant"])
    assert len(pq.grid) == 6
    opt = experiments._make_optimizer(pq, BinaryMLP(6, [4], 2), pq.grid[-1], seed=0)
    assert opt.param_groups[0]["reg_rate"] == 0.1


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
    parser = add_common_arguments(
        argparse.ArgumentParser(), default_backends=["neal"], default_out="runs/x"
    )
    defaults = parser.parse_args([])
    assert (defaults.out, defaults.overwrite) == ("runs/x", False)
    assert parser.parse_args(["--overwrite"]).overwrite is True
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
def test_rosenbrock_script_smoke(tmp_path, capsys):
    res = _load("rosenbrock").main(
        ["--smoke", "--out", str(tmp_path), "--backend", "exact", "--dims", "2,4"]
    )
    assert set(res["problems"]) == {"2", "4"}
    for prob in res["problems"].values():
        assert list(prob["methods"]) == [
            "qpsbgd_exact",
            "saddle_free_sign",
            "projected_newton",
            "signsgd",
            "clipped_gd",
        ]
        # the 2-value smoke grid plus at most one edge extension (--smoke: max 1)
        assert all(m["budget"] in (2, 3) for m in prob["methods"].values())
        assert {p["baseline"] for p in prob["paired"]} == set(prob["methods"]) - {"qpsbgd_exact"}
    for suffix in ("json", "md", "png"):
        assert (tmp_path / f"rosenbrock.{suffix}").stat().st_size > 0
    # the same command again is refused; with --overwrite it replaces the files
    argv = ["--smoke", "--out", str(tmp_path), "--backend", "exact", "--dims", "2"]
    _assert_refused(_load("rosenbrock").main, argv, tmp_path, "rosenbrock", capsys)
    _assert_overwritten(_load("rosenbrock").main, argv, tmp_path, "rosenbrock")
    assert set(json.loads((tmp_path / "rosenbrock.json").read_text())["problems"]) == {"2"}


def _assert_refused(main, argv, out: Path, stem: str, capsys) -> None:
    """``main(argv)`` into ``out``, which holds ``STEM.json`` (and maybe ``.md``, ``.png``):
    exit 2 with one stderr line naming the JSON and --overwrite, every file left byte for byte."""
    files = {p: p.read_bytes() for p in out.glob(f"{stem}.*")}
    assert out / f"{stem}.json" in files
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {out / stem}.json already exists; pass --overwrite to replace it"]
    assert {p: p.read_bytes() for p in out.glob(f"{stem}.*")} == files


def _assert_overwritten(main, argv, out: Path, stem: str) -> None:
    """``main(argv + ["--overwrite"])`` replaces ``STEM.json`` (a stale stand-in put there first)
    and records ``--overwrite`` in its command."""
    (out / f"{stem}.json").write_text("stale\n")
    main([*argv, "--overwrite"])
    data = json.loads((out / f"{stem}.json").read_text())
    assert data["extra"]["command"].endswith(" --overwrite")


@pytest.mark.parametrize(
    ("script", "stem", "backends"),
    [
        ("a1a_10layer", "a1a_10layer", ["batched"]),
        ("gcn", "gcn_karate", ["neal", "batched"]),
        ("digits_pairs", "digits_0v2", ["batched"]),
    ],
)
def test_bnn_scripts_smoke(tmp_path, script, stem, backends, capsys):
    main = _load(script).main
    main(["--smoke", "--out", str(tmp_path)])
    data = json.loads((tmp_path / f"{stem}.json").read_text())
    expected = [f"qpsbgd_{b}" for b in backends] + ["qpsbgd_batched_c0"]
    expected += ["binaryconnect", "signsgd", "proxquant", "bop", "full_precision"]
    assert list(data["methods"]) == expected
    assert data["protocol"]["version"] == "fair-1" and data["protocol"]["threads"] == 1
    for m in data["methods"].values():
        assert m["budget"] == len(m["search"]) >= 1 and len(m["runs"]) == 1
        run = m["runs"][0]
        assert 0.0 <= run["test_accuracy"] <= 1.0 and math.isfinite(run["test_loss"])
        assert run["wall_time_per_epoch"] > 0
        assert run["curve"][run["best_epoch"] - 1]["test_accuracy"] == run["test_accuracy"]
    assert data["paired"]
    assert 0.0 < data["majority_rate"] < 1.0
    assert data["extra"]["smoke"] is True and "--smoke" in data["extra"]["command"]
    table = (tmp_path / f"{stem}.md").read_text()
    assert "QP-SBGD (batched)" in table and "full precision" in table
    assert (tmp_path / f"{stem}.png").stat().st_size > 0
    # the same command again is refused before any training, every file left as it was
    _assert_refused(main, ["--smoke", "--out", str(tmp_path)], tmp_path, stem, capsys)
    if script == "gcn":  # the cheapest: --overwrite replaces the files
        _assert_overwritten(main, ["--smoke", "--out", str(tmp_path)], tmp_path, stem)


SCRIPT_OUTPUTS = [
    ("gcn", "runs/gcn", ["gcn_karate"]),
    ("digits_pairs", "runs/digits", ["digits_0v2"]),
    ("a1a_10layer", "runs/a1a_10layer", ["a1a_10layer"]),
    ("a1a_2layer", "runs/a1a_2layer", ["a1a_2layer"]),
    ("rosenbrock", "runs/rosenbrock", ["rosenbrock"]),
    ("ablation_exact", "runs/ablation_exact", ["ablation_exact"]),
]


class _Checked(Exception):
    """Raised by a stand-in of ``check_outputs``: the script got there (nothing ran yet)."""


@pytest.mark.parametrize(("script", "default_out", "stems"), SCRIPT_OUTPUTS)
def test_scripts_write_under_runs_by_default_and_check_their_outputs_first(
    monkeypatch, script, default_out, stems
):
    module = _load(script)
    seen = []

    def check(out, names, overwrite, **kwargs):
        seen.append((out, list(names), overwrite))
        raise _Checked

    monkeypatch.setattr(module, "check_outputs", check)
    with pytest.raises(_Checked):
        module.main(["--smoke"])
    assert seen == [(default_out, stems, False)]


def test_gcn_checks_every_datasets_files_before_training_the_first(tmp_path, capsys):
    (tmp_path / "gcn_cora.png").write_bytes(b"earlier")
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:  # immediate: nothing is loaded or trained
        _load("gcn").main(["--datasets", "karate,cora", "--out", str(tmp_path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"error: {tmp_path / 'gcn_cora.png'} already exists; pass --overwrite to replace it"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gcn_cora.png"]


def test_an_out_that_is_a_file_is_refused(tmp_path, capsys):
    out = tmp_path / "results.json"
    out.write_text("{}")
    with pytest.raises(SystemExit) as exc:
        _load("a1a_10layer").main(["--smoke", "--out", str(out), "--overwrite"])
    assert exc.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: --out must be a folder (got {str(out)!r}, an existing file)"
    ]


def test_an_out_that_cannot_be_created_is_refused_before_training(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    out = blocker / "sub"
    with pytest.raises(SystemExit) as exc:
        _load("a1a_10layer").main(["--smoke", "--out", str(out)])
    assert exc.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: --out {str(out)!r} cannot be created: {str(blocker)!r} is not a writable folder"
    ]
    assert blocker.read_text() == "not a folder"


def test_run_and_write_refuses_an_existing_result_before_running(tmp_path, capsys):
    (tmp_path / "x.md").write_text("earlier")
    args = argparse.Namespace(out=str(tmp_path), overwrite=False, jobs=1, threads=1)
    with pytest.raises(SystemExit) as exc:  # the task is no task: running it would fail
        run_and_write(object(), [], args, seeds=[0], title="t", stem="x", extra={})
    assert exc.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: {tmp_path / 'x.md'} already exists; pass --overwrite to replace it"
    ]
    assert (tmp_path / "x.md").read_text() == "earlier"


def test_write_results_refuses_existing_files_unless_overwrite(tmp_path):
    results = {"table": "| a |\n", "value": 1}
    paths = write_results(results, tmp_path, "s")
    assert set(paths) == {"json", "md"} and json.loads(paths["json"].read_text())["value"] == 1
    with pytest.raises(FileExistsError, match="s.json already exists"):
        write_results({**results, "value": 2}, tmp_path, "s")
    assert json.loads(paths["json"].read_text())["value"] == 1
    (tmp_path / "t.png").write_bytes(b"png")  # a stem's PNG counts even when none would be drawn
    with pytest.raises(FileExistsError, match="t.png already exists"):
        write_results(results, tmp_path, "t")
    write_results({**results, "value": 2}, tmp_path, "s", overwrite=True)
    assert json.loads(paths["json"].read_text())["value"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json", "s.md", "t.png"]  # no temp


# --------------------------------------------------------------------- the fair protocol
def _fake_train(target: dict[str, float]):
    """A stand-in for train_once whose validation score peaks at ``target`` (log distance)."""

    def fake(task, method, hp, seed, *, epochs=None, patience="task"):
        dist = sum(abs(math.log10(max(hp[k], 1e-12)) - math.log10(v)) for k, v in target.items())
        return {
            "val_accuracy": 1.0 - 0.1 * dist,
            "val_loss": dist,
            "best_epoch": 1,
            "epochs_run": epochs,
            "wall_time": 0.0,
        }

    return fake


def test_search_extends_an_edge_axis_until_the_choice_is_interior(monkeypatch):
    monkeypatch.setattr(experiments.runs, "train_once", _fake_train({"lr": 0.05, "curvature": 3.0}))
    task = Task("t", None, lambda d, b: None, epochs=8, search_fraction=0.5, max_extensions=3)
    m = Method("q", "q", "qpsbgd", axes={"lr": [0.001, 0.003, 0.01], "curvature": [3.0, 30.0]})
    chosen, trials, info = search(task, m, seed=0)
    assert info["epochs"] == 4
    # lr grows 0.01 -> 0.0333 -> 0.111; the curvature edge at 3 grows down to 0.3
    lr_ext = [e["value"] for e in info["extensions"] if e["axis"] == "lr"]
    assert lr_ext == pytest.approx([0.01 * 10 / 3, 0.01 * (10 / 3) ** 2], rel=1e-5)
    assert [e["direction"] for e in info["extensions"] if e["axis"] == "curvature"] == [-1]
    assert chosen == {"lr": pytest.approx(0.0333, rel=1e-2), "curvature": 3.0}
    assert info["at_edge"] == [] and info["at_bound"] == []
    for ax, vals in info["axes"].items():
        assert vals[0] < chosen[ax] < vals[-1]
    keys = [tuple(sorted(t["hparams"].items())) for t in trials]
    assert len(keys) == len(set(keys)) == len(info["axes"]["lr"]) * len(info["axes"]["curvature"])


def test_search_seeds_score_a_setting_by_the_mean_of_its_runs(monkeypatch):
    # seed 1000 favours lr 0.1 by a little, seed 1001 favours lr 0.01 by a lot: one search run
    # picks 0.1, the mean of two picks 0.01
    val = {(1000, 0.01): 0.70, (1000, 0.1): 0.72, (1001, 0.01): 0.80, (1001, 0.1): 0.60}
    calls = []

    def fake(task, method, hp, seed, epochs=None):
        calls.append((seed, hp["lr"]))
        acc = val[(seed, hp["lr"])]
        return {
            "seed": seed,
            "val_accuracy": acc,
            "val_loss": 1 - acc,
            "best_epoch": 1,
            "epochs_run": 2,
            "wall_time": 0.5,
        }

    monkeypatch.setattr(experiments.runs, "train_once", fake)
    m = Method("b", "b", "binaryconnect", grid=[{"lr": 0.01}, {"lr": 0.1}])
    one = Task("t", None, lambda d, b: None, epochs=2)
    assert search(one, m, seed=1000)[0] == {"lr": 0.1}
    two = Task("t", None, lambda d, b: None, epochs=2, search_seeds=2)
    chosen, trials, _ = search(two, m, seed=1000)
    assert chosen == {"lr": 0.01}
    assert trials[0]["val_accuracy"] == pytest.approx(0.75)
    assert [r["seed"] for r in trials[0]["runs"]] == [1000, 1001]
    assert trials[0]["epochs_run"] == 4 and trials[0]["wall_time"] == pytest.approx(1.0)
    assert "runs" not in search(one, m, seed=1000)[1][0]  # one seed: the record as before
    with pytest.raises(ValueError, match=r"search_seeds must be a positive int \(got 0\)"):
        Task("t", None, lambda d, b: None, epochs=2, search_seeds=0)


def test_search_records_an_edge_left_by_the_extension_bound_and_hard_bounds(monkeypatch):
    monkeypatch.setattr(experiments.runs, "train_once", _fake_train({"lr": 10.0}))
    task = Task("t", None, lambda d, b: None, epochs=2, max_extensions=1)
    chosen, trials, info = search(
        task, Method("s", "s", "signsgd", axes={"lr": [0.1, 0.3]}), seed=0
    )
    assert info["at_edge"] == ["lr"] and len(trials) == 3 and chosen["lr"] == pytest.approx(0.9)
    task.max_extensions = 5
    chosen, _, info = search(task, Method("s", "s", "signsgd", axes={"lr": [0.1, 0.3]}), seed=0)
    assert chosen["lr"] == 1.0 and info["at_bound"] == ["lr"] and info["at_edge"] == []
    monkeypatch.setattr(experiments.runs, "train_once", _fake_train({"gamma": 1e-9}))
    m = Method("b", "b", "bop", axes={"gamma": [0.0, 0.1]})
    assert experiments._extend([0.0, 0.1], -1, (0.0, 1.0)) is None
    chosen, _, info = search(task, m, seed=0)
    assert chosen["gamma"] == 0.0 and info["at_bound"] == ["gamma"] and not info["extensions"]


def test_train_once_selects_the_best_validation_epoch_and_stops_on_patience():
    task = _digits_task()
    task.epochs, task.patience = 12, 2
    m = Method("signsgd", "signSGD", "signsgd")
    rec = train_once(task, m, {"lr": 0.3}, seed=0)
    curve = rec["curve"]
    assert len(curve) == rec["epochs_run"] <= 12
    best = max(curve, key=experiments._score)
    assert rec["best_epoch"] == best["epoch"]
    assert rec["test_accuracy"] == best["test_accuracy"]
    assert rec["val_accuracy"] == best["val_accuracy"]
    assert rec["last"]["test_accuracy"] == curve[-1]["test_accuracy"]
    if rec["epochs_run"] < 12:
        assert rec["epochs_run"] - rec["best_epoch"] == 2
    full = train_once(task, m, {"lr": 0.3}, seed=0, patience=None)
    assert full["epochs_run"] == 12
    assert full["curve"][: len(curve)] == curve


def test_paired_differences_t_interval():
    runs = lambda accs: [{"seed": i, "test_accuracy": a} for i, a in enumerate(accs)]  # noqa: E731
    methods = {
        "qpsbgd_batched": {"runs": runs([0.8, 0.7, 0.9])},
        "qpsbgd_batched_c0": {"runs": runs([0.8, 0.8, 0.8])},
        "qpsbgd_neal": {"runs": runs([0.5])},
        "binaryconnect": {"runs": runs([0.7, 0.7, 0.7, 0.1])},
    }
    pairs = {(p["method"], p["baseline"]): p for p in paired_differences(methods)}
    assert set(pairs) == {
        ("qpsbgd_batched", "qpsbgd_batched_c0"),
        ("qpsbgd_batched", "binaryconnect"),
        ("qpsbgd_neal", "binaryconnect"),
    }
    p = pairs[("qpsbgd_batched", "binaryconnect")]
    assert p["seeds"] == [0, 1, 2] and p["mean"] == pytest.approx(0.1)
    assert p["std"] == pytest.approx(0.1)
    half = 4.302652729911275 * 0.1 / math.sqrt(3)  # t_{0.975, 2}
    assert p["ci"] == pytest.approx([0.1 - half, 0.1 + half])
    assert pairs[("qpsbgd_neal", "binaryconnect")]["ci"] is None


def _usage_error_line(script: str, out: Path, *args: str) -> str:
    """Run ``script --smoke ARGS --out OUT``; it must exit 2 with one stderr line, writing nothing."""
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / script), "--smoke", *args, "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert not out.exists()
    return lines[0]


def test_cli_bad_protocol_values_exit_2_with_one_line(tmp_path):
    for flag, value in (
        ("--patience", "0"),
        ("--search-fraction", "1.5"),
        ("--jobs", "0"),
        ("--search-seeds", "0"),
    ):
        line = _usage_error_line("a1a_10layer.py", tmp_path / flag.strip("-"), flag, value)
        assert flag in line and "(got " in line
    # an unknown --methods key is found when the methods are built: still one line, exit 2
    for script in ("a1a_10layer.py", "digits_pairs.py"):
        line = _usage_error_line(script, tmp_path / f"m_{script}", "--methods", "bogus")
        assert "unknown method 'bogus'" in line


def _smoke_karate(out: Path, jobs: int) -> dict:
    proc = subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "gcn.py"),
            "--smoke",
            "--threads",
            "1",
            "--jobs",
            str(jobs),
            "--methods",
            "qpsbgd_batched,qpsbgd_batched_c0,binaryconnect,proxquant,bop",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        env={**__import__("os").environ, "MPLBACKEND": "Agg"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads((out / "gcn_karate.json").read_text())


@pytest.mark.slow
def test_rerunning_a_results_command_reproduces_its_numbers(tmp_path):
    """The CI reproducibility check: the same smoke command twice, in fresh processes, on one
    torch/numba thread, gives identical JSON apart from timings and dates, whether its
    methods run in one process or in two forked workers (``--jobs``)."""
    a, b = _smoke_karate(tmp_path / "a", 1), _smoke_karate(tmp_path / "b", 2)
    assert (a["protocol"].pop("jobs"), b["protocol"].pop("jobs")) == (1, 2)
    assert a["protocol"]["threads"] == 1 and a["environment"]["torch_threads"] == 1
    assert a["environment"]["numba_threads"] == 1
    assert a["methods"]["qpsbgd_batched"]["search_info"]["extensions"]  # the edge grew
    assert a["extra"].pop("command").endswith("/a") and b["extra"].pop("command").endswith("/b")
    assert numbers_only(a)["methods"] and numbers_only(a) == numbers_only(b)
    assert a["paired"] and a["paired"] == b["paired"]


def test_summary_index_and_its_script(tmp_path):
    task = _digits_task()
    methods = build_methods(_grids(), backends=["exact"], include=["signsgd", "full_precision"])
    res = run_experiment(task, methods, seeds=[0, 1], log=lambda m: None, threads=1)
    write_results(res, tmp_path / "new", "digits")
    old = tmp_path / "old" / "x.json"
    old.parent.mkdir()
    old.write_text(json.dumps({"task": "x", "methods": {}, "protocol": {"epochs": 1}}))
    index = summary_index([tmp_path / "new" / "digits.json", old])
    assert index["skipped"] == [str(old)]
    entry = index["experiments"]["digits"]["methods"]["signsgd"]
    assert set(entry) >= {"test_acc_mean", "test_acc_std", "seeds", "epochs", "selection"}
    assert entry["seeds"] == [0, 1] and entry["epochs"] == 2
    assert entry["test_acc_mean"] == res["methods"]["signsgd"]["summary"]["test_accuracy"]["mean"]
    assert "best-validation epoch" in entry["selection"]
    out = tmp_path / "summary.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "summarize_results.py"),
            str(tmp_path),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text())["experiments"]["digits"]["methods"]["signsgd"] == entry
    table = out.with_suffix(".md").read_text()
    assert "| digits |" in table and "signSGD" in table and "full precision" in table


@pytest.mark.slow
def test_two_experiments_in_one_process_with_workers(tmp_path):
    """A script that runs several experiments (gcn.py datasets, digits_pairs.py pairs) with
    ``--jobs 2`` forks once per experiment: the parent must never start numba's OpenMP pool
    (GNU OpenMP aborts a fork after it), and the workers report numba's thread count."""
    code = (
        "import sys, json\n"
        f"sys.path.insert(0, {str(ROOT / 'tests')!r})\n"
        "from test_experiments import _digits_task\n"
        "from bnn.experiments import Method, fix_threads, run_experiment\n"
        "fix_threads(1, numba_too=False)\n"
        "q = Method('qpsbgd_batched', 'q', 'qpsbgd', axes={'lr': [0.01], 'curvature': [1.0]},\n"
        "           fixed={'backend': 'batched'}, tie_other_lr=True)\n"
        "s = Method('signsgd', 's', 'signsgd', axes={'lr': [0.01]})\n"
        "out = [run_experiment(_digits_task(), [q, s], seeds=[0], jobs=2, threads=1,\n"
        "                      log=lambda m: None) for _ in range(2)]\n"
        "print(json.dumps([[r['environment']['numba_threads'],\n"
        "  r['methods']['qpsbgd_batched']['runs'][0]['test_accuracy']] for r in out]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (n1, acc1), (n2, acc2) = json.loads(proc.stdout.strip().splitlines()[-1])
    assert n1 == n2 == 1 and acc1 == acc2
