"""The fit loop: records, determinism, interrupt-and-resume equality, schedules, backends."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch

from bnn.checkpoint import CHECKPOINT_NAME, PREVIOUS_NAME, CheckpointError, load_checkpoint
from bnn.config import RunConfig
from bnn.records import (
    MetricsLog,
    compare_runs,
    read_metrics,
    read_summary,
    run_labels,
    strip_timings,
)
from bnn.training import (
    build_dataset,
    build_model,
    build_optimizer,
    evaluate_run,
    fit,
    resume_run,
    seed_everything,
    train_from_config,
)
from qsgd.errors import ConfigError


def tiny(tmp_path, *overrides, run="run"):
    """A small QP-SBGD run on breast cancer: 2 binary layers (30-8-2), 3 batches per epoch."""
    base = {
        "name": run,
        "data": {"name": "breast_cancer", "options": {"seed": 0}},
        "model": {"hidden": [8]},
        "optimizer": {"name": "qpsbgd", "lr": 0.05},
        "annealer": {"backend": "neal", "num_reads": 2, "num_sweeps": 20},
        "train": {"epochs": 2, "batch_size": 32, "max_batches_per_epoch": 3, "num_threads": 1},
        "output": {"run_dir": str(tmp_path / run), "plots": False},
    }
    return RunConfig.from_dict(base, overrides)


def comparable(summary):
    return strip_timings({k: v for k, v in summary.items() if k not in ("run_dir", "files")})


def test_run_writes_records_summary_and_config(tmp_path):
    cfg = tiny(tmp_path)
    summary = train_from_config(cfg, quiet=True)
    run = tmp_path / "run"
    assert summary["status"] == "completed"
    assert (summary["epochs_completed"], summary["steps"]) == (2, 6)
    assert (summary["optimizer"], summary["backend"], summary["schedule"]) == (
        "qpsbgd",
        "neal",
        "all",
    )
    assert 0.0 <= summary["final"]["test_accuracy"] <= 1.0
    assert 0.5 < summary["majority_rate"] < 0.7  # breast cancer: 63% benign
    assert read_summary(run) == json.loads(json.dumps(summary))
    assert RunConfig.from_file(run / "config.toml") == cfg
    steps, epochs = read_metrics(run, "step"), read_metrics(run, "epoch")
    assert [r["step"] for r in steps] == [1, 2, 3, 4, 5, 6]
    assert [r["epoch"] for r in epochs] == [1, 2]
    for r in steps:
        assert r["active_layers"] == ["net.0", "net.3"]
        assert set(r["flip_ratio"]) == {"net.0", "net.3"}
        assert r["best_energy"] is not None and r["solver_time"] > 0
    assert {"val_accuracy", "test_accuracy", "test_loss", "majority_rate"} <= set(epochs[-1])
    state = load_checkpoint(run)
    assert (state["epoch"], state["batch"], state["status"]) == (2, 0, "completed")


def test_same_seed_same_records_other_seed_differs(tmp_path):
    a = train_from_config(tiny(tmp_path, run="a"), quiet=True)
    b = train_from_config(tiny(tmp_path, run="b"), quiet=True)
    c = train_from_config(tiny(tmp_path, "train.seed=1", run="c"), quiet=True)
    ra, rb, rc = (strip_timings(read_metrics(tmp_path / n)) for n in "abc")
    assert ra == rb and comparable(a) | {"name": 0} == comparable(b) | {"name": 0}
    assert ra != rc and c["seed"] == 1


def _interrupt_at(step, signum):
    def callback(kind, record):
        if kind == "step" and record["step"] == step:
            os.kill(os.getpid(), signum)

    return callback


@pytest.mark.parametrize(
    "optimizer, stop_step, signum",
    [
        ("qpsbgd", 4, signal.SIGINT),  # mid-epoch (epoch 2, batch 1)
        ("qpsbgd", 3, signal.SIGTERM),  # at the end of epoch 1
        ("proxquant", 5, signal.SIGINT),  # a baseline with a growing regulariser state
    ],
)
def test_interrupted_and_resumed_run_equals_uninterrupted_run(
    tmp_path, optimizer, stop_step, signum
):
    extra = ["optimizer.name=" + optimizer, "train.epochs=3"]
    if optimizer != "qpsbgd":
        extra.append("optimizer.lr=0.01")
    full = train_from_config(tiny(tmp_path, *extra, run="full"), quiet=True)

    cfg = tiny(tmp_path, *extra, run="cut")
    cut = train_from_config(cfg, quiet=True, callbacks=[_interrupt_at(stop_step, signum)])
    assert cut["status"] == "interrupted" and cut["steps"] == stop_step
    assert load_checkpoint(tmp_path / "cut")["step"] == stop_step
    resumed = resume_run(tmp_path / "cut", quiet=True)

    assert resumed["status"] == "completed" and resumed["steps"] == 9
    assert strip_timings(read_metrics(tmp_path / "cut")) == strip_timings(
        read_metrics(tmp_path / "full")
    )
    assert comparable(resumed) | {"name": 0} == comparable(full) | {"name": 0}
    model_cut = load_checkpoint(tmp_path / "cut")["model"]
    model_full = load_checkpoint(tmp_path / "full")["model"]
    assert all(torch.equal(model_cut[k], model_full[k]) for k in model_full)


@pytest.mark.parametrize(
    "backend",
    [
        "batched",
        "batched:torch-cpu",
        "steepest",
        "tabu",
        "mock-dwave",
    ],
)
def test_every_deterministic_backend_resumes_bit_for_bit(tmp_path, backend):
    """Interrupt mid-epoch 2 and resume: records, summary and weights equal the uninterrupted
    run for each seeded backend (the real-process version is in test_cli.py)."""
    name, _, device = backend.partition(":")
    extra = [f"annealer.backend={name}", "train.epochs=3", "train.max_batches_per_epoch=2"]
    if device:
        extra.append(f"annealer.options.device={device}")
    if name == "mock-dwave":
        extra += ["model.hidden=[4]", "annealer.num_reads=1"]
    full = train_from_config(tiny(tmp_path, *extra, run="full"), quiet=True)
    cut = train_from_config(
        tiny(tmp_path, *extra, run="cut"),
        quiet=True,
        callbacks=[_interrupt_at(3, signal.SIGINT)],
    )
    assert cut["status"] == "interrupted" and cut["steps"] == 3
    resumed = resume_run(tmp_path / "cut", quiet=True)
    assert strip_timings(read_metrics(tmp_path / "cut")) == strip_timings(
        read_metrics(tmp_path / "full")
    )
    assert comparable(resumed) | {"name": 0} == comparable(full) | {"name": 0}
    model_cut = load_checkpoint(tmp_path / "cut")["model"]
    model_full = load_checkpoint(tmp_path / "full")["model"]
    assert all(torch.equal(model_cut[k], model_full[k]) for k in model_full)


def test_resume_can_extend_epochs_but_not_change_the_model(tmp_path):
    cfg = tiny(tmp_path, "train.epochs=1")
    train_from_config(cfg, quiet=True)
    run = tmp_path / "run"
    before = {n: (run / n).read_bytes() for n in ("metrics.jsonl", CHECKPOINT_NAME, "config.toml")}
    with pytest.raises(ConfigError, match=r"config changed incompatibly at model\.hidden"):
        resume_run(run, ["model.hidden=[4]"], quiet=True)
    with pytest.raises(ConfigError, match=r"incompatibly at annealer\.backend"):
        resume_run(run, ["annealer.backend=tabu"], quiet=True)
    assert {n: (run / n).read_bytes() for n in before} == before  # nothing overwritten
    summary = resume_run(run, ["train.epochs=2"], quiet=True)
    assert summary["epochs_completed"] == 2 and summary["steps"] == 6
    assert RunConfig.from_file(run / "config.toml").train.epochs == 2


def test_resume_from_a_corrupt_checkpoint_keeps_the_previous_one(tmp_path):
    train_from_config(tiny(tmp_path), quiet=True)
    run = tmp_path / "run"
    (run / CHECKPOINT_NAME).write_bytes(b"\x80\x02garbage")
    prev = (run / PREVIOUS_NAME).read_bytes()
    with pytest.raises(
        CheckpointError, match=r"corrupt or not a qsgd checkpoint.*checkpoint\.prev\.pt"
    ):
        resume_run(run, quiet=True)
    assert (run / PREVIOUS_NAME).read_bytes() == prev


def test_fresh_run_refuses_an_existing_run_dir_unless_overwrite(tmp_path):
    train_from_config(tiny(tmp_path, "train.epochs=1"), quiet=True)
    metrics = (tmp_path / "run" / "metrics.jsonl").read_bytes()
    with pytest.raises(ConfigError, match=r"already holds a run \(config\.toml, checkpoint\.pt"):
        train_from_config(tiny(tmp_path, "train.epochs=1"), quiet=True)
    assert (tmp_path / "run" / "metrics.jsonl").read_bytes() == metrics
    summary = train_from_config(
        tiny(tmp_path, "train.epochs=1", "output.overwrite=true"), quiet=True
    )
    assert summary["status"] == "completed"


def test_unwritable_or_file_run_dir_is_refused_before_anything_runs(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match=r"output\.run_dir '.*file/run' is not a directory"):
        train_from_config(
            tiny(tmp_path, f"output.run_dir='{tmp_path / 'file' / 'run'}'"), quiet=True
        )
    monkeypatch.setattr("bnn.runner.os.access", lambda *a: False)
    with pytest.raises(ConfigError, match=r"output\.run_dir '.*' is not writable"):
        train_from_config(tiny(tmp_path), quiet=True)
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------- run directories
class _Boom(RuntimeError):
    pass


def _fail_at(step):
    """A callback that fails like a backend error at ``step`` (after its record is written)."""

    def callback(kind, record):
        if kind == "step" and record["step"] == step:
            raise _Boom(f"failed at step {step}")

    return callback


def _files(folder):
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_run_failing_before_its_first_checkpoint_leaves_no_folder(tmp_path):
    run = tmp_path / "runs" / "deep" / "run"
    cfg = tiny(tmp_path, f"output.run_dir={run}")
    with pytest.raises(_Boom):
        train_from_config(cfg, quiet=True, callbacks=[_fail_at(2)])
    assert not (tmp_path / "runs").exists()  # the folders it created are gone, tmp_path is not
    assert train_from_config(cfg, quiet=True)["status"] == "completed"  # the rerun is accepted


def test_failing_run_in_an_existing_empty_folder_keeps_the_folder_empty(tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(_Boom):
        train_from_config(tiny(tmp_path), quiet=True, callbacks=[_fail_at(1)])
    assert (tmp_path / "run").is_dir() and not list((tmp_path / "run").iterdir())


def test_failing_overwrite_run_puts_the_old_run_back(tmp_path):
    train_from_config(tiny(tmp_path, "train.epochs=1"), quiet=True)
    run = tmp_path / "run"
    evaluate_run(run)
    (run / "notes.txt").write_text("mine")
    before = _files(run)
    cfg = tiny(tmp_path, "output.overwrite=true", "train.seed=3")
    with pytest.raises(_Boom):
        train_from_config(cfg, quiet=True, callbacks=[_fail_at(2)])
    assert _files(run) == before and sorted(p.name for p in run.iterdir()) == sorted(before)
    summary = train_from_config(cfg, quiet=True)  # an overwrite that works replaces the run
    assert summary["seed"] == 3 and not (run / "eval.json").exists()
    assert (run / "notes.txt").read_text() == "mine"  # not a run file: left alone
    assert not [p for p in run.iterdir() if p.name.startswith(".bnn-saved-")]


def test_failing_resume_restores_config_and_metrics(tmp_path):
    train_from_config(tiny(tmp_path, "train.epochs=1"), quiet=True)
    run = tmp_path / "run"
    before = _files(run)
    with pytest.raises(_Boom):
        resume_run(run, ["train.epochs=3"], quiet=True, callbacks=[_fail_at(4)])
    assert _files(run) == before and sorted(p.name for p in run.iterdir()) == sorted(before)


def test_resume_with_nothing_left_to_run_keeps_the_run(tmp_path):
    train_from_config(tiny(tmp_path, "train.epochs=1"), quiet=True)
    run = tmp_path / "run"
    summary = resume_run(run, ["train.eval_interval=2"], quiet=True)  # no step, no checkpoint
    assert summary["status"] == "completed" and summary["epochs_completed"] == 1
    assert RunConfig.from_file(run / "config.toml").train.eval_interval == 2
    assert not [p for p in run.iterdir() if p.name.startswith(".bnn-saved-")]


def test_run_failing_after_a_checkpoint_is_kept_and_resumes(tmp_path):
    cfg = tiny(tmp_path, "train.epochs=3")
    full = train_from_config(tiny(tmp_path, "train.epochs=3", run="full"), quiet=True)
    with pytest.raises(_Boom):
        train_from_config(cfg, quiet=True, callbacks=[_fail_at(5)])  # epoch 2, batch 2
    assert load_checkpoint(tmp_path / "run")["epoch"] == 1
    resumed = resume_run(tmp_path / "run", quiet=True)
    assert comparable(resumed) | {"name": 0} == comparable(full) | {"name": 0}
    assert strip_timings(read_metrics(tmp_path / "run")) == strip_timings(
        read_metrics(tmp_path / "full")
    )


def test_fresh_run_refuses_a_stub_or_a_foreign_folder_and_resume_says_why(tmp_path):
    stub = tmp_path / "stub"
    stub.mkdir()
    tiny(tmp_path, run="stub").save(stub / "config.toml")
    (stub / "metrics.jsonl").write_text("")
    with pytest.raises(ConfigError, match=r"holds a run that never wrote a checkpoint \(config"):
        train_from_config(tiny(tmp_path, run="stub"), quiet=True)
    with pytest.raises(ConfigError, match=r"it holds no checkpoint\.pt .*nothing to resume"):
        resume_run(stub, quiet=True)
    (tmp_path / "own").mkdir()
    (tmp_path / "own" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match=r"must be a new or empty directory \(got one holding"):
        train_from_config(tiny(tmp_path, run="own"), quiet=True)
    assert _files(tmp_path / "own") == {"notes.txt": b"mine"}
    assert train_from_config(tiny(tmp_path, "output.overwrite=true", run="stub"), quiet=True)


# --------------------------------------------------------------------- schedules
def _fit_with_weight_trace(cfg, **kw):
    seed_everything(cfg.train.seed)
    dataset = build_dataset(cfg)
    model = build_model(cfg, dataset)
    optimizer = build_optimizer(cfg, model)
    layers = {"net.0": model.net[0], "net.3": model.net[3]}
    trace = [{n: torch.sign(layer.weight.detach()).clone() for n, layer in layers.items()}]
    records = []

    def callback(kind, record):
        if kind == "step":
            records.append(record)
            trace.append(
                {n: torch.sign(layer.weight.detach()).clone() for n, layer in layers.items()}
            )

    fit(
        model,
        optimizer,
        dataset,
        epochs=cfg.train.epochs,
        batch_size=cfg.train.batch_size,
        seed=cfg.train.seed,
        schedule=cfg.train.schedule,
        greedy_epochs_per_layer=cfg.train.greedy_epochs_per_layer,
        max_batches_per_epoch=cfg.train.max_batches_per_epoch,
        progress=False,
        callbacks=[callback],
        **kw,
    )
    changed = [
        {n for n in trace[i] if not torch.equal(trace[i][n], trace[i + 1][n])}
        for i in range(len(records))
    ]
    return records, changed


@pytest.mark.parametrize("optimizer", ["qpsbgd", "signsgd"])
def test_round_robin_updates_one_layer_per_step(tmp_path, optimizer):
    cfg = tiny(
        tmp_path, "train.schedule=round_robin", f"optimizer.name={optimizer}", "optimizer.lr=0.5"
    )
    records, changed = _fit_with_weight_trace(cfg)
    assert [r["active_layers"] for r in records] == [["net.0"], ["net.3"]] * 3
    for r, ch in zip(records, changed, strict=True):
        assert ch <= set(r["active_layers"])
    assert set().union(*changed) == {"net.0", "net.3"}  # both layers did move


@pytest.mark.parametrize("optimizer", ["qpsbgd", "binaryconnect"])
def test_greedy_trains_layer_by_layer_then_all(tmp_path, optimizer):
    cfg = tiny(
        tmp_path,
        "train.schedule=greedy",
        "train.epochs=3",
        f"optimizer.name={optimizer}",
        "optimizer.lr=0.5",
    )
    records, changed = _fit_with_weight_trace(cfg)
    expected = [["net.0"]] * 3 + [["net.3"]] * 3 + [["net.0", "net.3"]] * 3
    assert [r["active_layers"] for r in records] == expected
    assert set().union(*changed[:3]) == {"net.0"}
    assert set().union(*changed[3:6]) == {"net.3"}


def test_fit_rejects_bad_arguments(tmp_path):
    cfg = tiny(tmp_path)
    dataset = build_dataset(cfg)
    model = build_model(cfg, dataset)
    optimizer = build_optimizer(cfg, model)
    with pytest.raises(ValueError, match=r"epochs must be an int >= 1 \(got 0\)"):
        fit(model, optimizer, dataset, epochs=0, progress=False)
    with pytest.raises(
        ValueError, match=r"schedule must be one of 'all', 'round_robin', 'greedy' \(got 'x'\)"
    ):
        fit(model, optimizer, dataset, epochs=1, schedule="x", progress=False)
    with pytest.raises(ValueError, match=r"run_dir must be an existing directory"):
        fit(model, optimizer, dataset, epochs=1, run_dir=tmp_path / "missing", progress=False)


# --------------------------------------------------------------------- backends and data
@pytest.mark.parametrize("backend", ["neal", "exact", "mock-dwave"])
def test_backend_is_swapped_by_config_on_the_same_run(tmp_path, backend):
    # first layer full precision: the binary layers have fan-in 8 (exact brute force is cheap)
    cfg = tiny(
        tmp_path,
        f"annealer.backend={backend}",
        "model.hidden=[8, 8]",
        "model.first_layer_binary=false",
        "train.epochs=1",
        "train.max_batches_per_epoch=2",
        "annealer.seed=0",
        run=backend,
    )
    summary = train_from_config(cfg, quiet=True)
    assert summary["backend"] == backend and summary["status"] == "completed"
    steps = read_metrics(tmp_path / backend, "step")
    assert len(steps) == 2 and all(s["solver_time"] > 0 for s in steps)
    assert all(s["active_layers"] == ["net.3", "net.6"] for s in steps)


def test_step_one_problems_are_the_same_for_every_backend_and_exact_is_optimal(tmp_path):
    energies = {}
    for backend in ("exact", "neal", "tabu"):
        cfg = tiny(
            tmp_path,
            f"annealer.backend={backend}",
            "model.hidden=[8, 8]",
            "model.first_layer_binary=false",
            "train.epochs=1",
            "train.max_batches_per_epoch=1",
            run=backend,
        )
        train_from_config(cfg, quiet=True)
        energies[backend] = read_metrics(tmp_path / backend, "step")[0]["best_energy"]
    assert energies["exact"] <= energies["neal"] + 1e-9
    assert energies["exact"] <= energies["tabu"] + 1e-9
    assert energies["neal"] == pytest.approx(energies["exact"], rel=1e-6)  # 8 spins: SA finds it


def test_graph_dataset_trains_full_batch(tmp_path):
    cfg = RunConfig.from_dict(
        {
            "data": {"name": "karate", "options": {"seed": 0, "spins": True}},
            "model": {"arch": "gcn", "hidden": [8]},
            "optimizer": {"name": "qpsbgd", "lr": 0.05},
            "annealer": {"backend": "neal", "num_reads": 2, "num_sweeps": 20},
            "train": {"epochs": 3, "num_threads": 1},
            "output": {"run_dir": str(tmp_path / "g"), "plots": False},
        }
    )
    summary = train_from_config(cfg, quiet=True)
    assert summary["steps"] == 3  # one full batch per epoch
    assert summary["final"]["test_accuracy"] is not None and summary["majority_rate"] is not None


def test_architecture_must_fit_the_dataset(tmp_path):
    cfg = tiny(tmp_path, "data.name=karate", "data.options={}")
    with pytest.raises(
        ConfigError, match=r"model\.arch 'mlp' does not fit data\.name 'karate'.*gcn"
    ):
        train_from_config(cfg, quiet=True)
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------- eval, plots, compare
def test_eval_plots_and_compare(tmp_path):
    a = train_from_config(tiny(tmp_path, "output.plots=true", run="a"), quiet=True)
    train_from_config(tiny(tmp_path, "optimizer.name=signsgd", run="b"), quiet=True)
    for png in ("curves.png", "flip_ratio.png", "solver_time.png"):
        assert (tmp_path / "a" / png).stat().st_size > 1000 and png in a["files"]
    result = evaluate_run(tmp_path / "a")
    assert result["test_accuracy"] == pytest.approx(a["final"]["test_accuracy"])
    assert json.loads((tmp_path / "a" / "eval.json").read_text())["epoch"] == 2
    out = compare_runs([tmp_path / "a", tmp_path / "b"], tmp_path / "cmp")
    lines = out["table"].splitlines()
    assert len(lines) == 4 and lines[2].startswith("| a | a | qpsbgd | neal |")
    assert lines[3].startswith("| b | b | signsgd | - |")
    assert (tmp_path / "cmp" / "comparison.png").exists()


def test_metrics_lines_are_visible_while_the_run_writes_them(tmp_path):
    log = MetricsLog(tmp_path / "metrics.jsonl")
    log.write({"kind": "step", "step": 1})
    assert (tmp_path / "metrics.jsonl").read_text() == '{"kind":"step","step":1}\n'
    log.close()


def test_compare_labels_runs_by_folder_not_by_config_name(tmp_path):
    """Two runs of one config (same ``name``) stay apart: rows say which folder they come from."""
    for seed, folder in ((0, "s0"), (1, "s1")):
        cfg = tiny(
            tmp_path, f"train.seed={seed}", "train.epochs=1", f"output.run_dir={tmp_path / folder}"
        )
        train_from_config(cfg, quiet=True)
    out = compare_runs([tmp_path / "s0", tmp_path / "s1"], tmp_path / "cmp")
    rows = out["table"].splitlines()[2:]
    assert out["labels"] == ["s0", "s1"]
    assert rows[0].startswith("| s0 | run | qpsbgd |") and rows[1].startswith("| s1 | run |")
    assert rows[0] != rows[1]


def test_run_labels_use_relative_paths_when_folder_names_clash(tmp_path):
    a, b, c = tmp_path / "lr0.1" / "seed0", tmp_path / "lr1" / "seed0", tmp_path / "other"
    assert run_labels([a, b, c]) == ["lr0.1/seed0", "lr1/seed0", "other"]
    assert run_labels([a, c]) == ["seed0", "other"]
    assert run_labels(["."]) == [Path.cwd().name]


def test_compare_rejects_a_run_given_twice_and_an_out_file(tmp_path):
    train_from_config(tiny(tmp_path, "train.epochs=1"), quiet=True)
    run = tmp_path / "run"
    (tmp_path / "x").mkdir()
    with pytest.raises(ConfigError, match=r"run directory '.*x/\.\./run' is given twice \(got"):
        compare_runs([run, tmp_path / "x" / ".." / "run"], tmp_path / "cmp")
    (tmp_path / "afile").write_text("keep")
    for out in (tmp_path / "afile", tmp_path / "afile" / "sub"):
        with pytest.raises(
            ConfigError, match=r"must be a directory \(got '.*afile', which is a file\)"
        ):
            compare_runs([run], out)
    assert (tmp_path / "afile").read_text() == "keep" and not (tmp_path / "cmp").exists()
