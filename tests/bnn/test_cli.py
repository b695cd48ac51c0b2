"""The ``bnn`` command end to end on the embedded default config (reduced via --set)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bnn.cli import main

REPO = Path(__file__).resolve().parents[2]
DEFAULT = str(REPO / "examples" / "configs" / "default.toml")
SMALL = [
    "--set",
    "annealer.backend=neal",  # default.toml uses batched; these tests pin neal vs tabu
    "--set",
    "train.epochs=2",
    "--set",
    "train.max_batches_per_epoch=2",
    "--set",
    "model.hidden=[8]",
    "--set",
    "annealer.num_reads=2",
    "--set",
    "annealer.num_sweeps=20",
]


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("bnn: error: ")
    return lines[0]


def test_train_eval_compare_end_to_end(tmp_path, capsys):
    run_a, run_b = tmp_path / "a", tmp_path / "b"
    code, out, err = run_cli(capsys, "train", DEFAULT, *SMALL, "--run-dir", str(run_a), "--quiet")
    assert code == 0, err
    assert f"results in {run_a.resolve()}" in out and "test accuracy" in out
    for name in ("config.toml", "metrics.jsonl", "summary.json", "checkpoint.pt", "curves.png"):
        assert (run_a / name).exists(), name
    summary = json.loads((run_a / "summary.json").read_text())
    assert (summary["status"], summary["epochs_completed"], summary["backend"]) == (
        "completed",
        2,
        "neal",
    )

    code, out, _ = run_cli(
        capsys,
        "train",
        DEFAULT,
        *SMALL,
        "--set",
        "annealer.backend=tabu",
        "--run-dir",
        str(run_b),
        "--quiet",
    )
    assert code == 0 and json.loads((run_b / "summary.json").read_text())["backend"] == "tabu"

    code, out, _ = run_cli(capsys, "eval", str(run_a))
    assert code == 0 and "test_accuracy:" in out and (run_a / "eval.json").exists()

    code, out, _ = run_cli(
        capsys, "compare", str(run_a), str(run_b), "--out", str(tmp_path / "cmp")
    )
    assert code == 0
    assert "| a | default | qpsbgd | neal |" in out and "| b | default | qpsbgd | tabu |" in out
    assert (tmp_path / "cmp" / "comparison.md").exists() and (
        tmp_path / "cmp" / "comparison.png"
    ).exists()


def test_resume_continues_a_run(tmp_path, capsys):
    run = tmp_path / "r"
    code, _, _ = run_cli(
        capsys,
        "train",
        DEFAULT,
        *SMALL,
        "--set",
        "train.epochs=1",
        "--run-dir",
        str(run),
        "--quiet",
    )
    assert code == 0
    code, out, err = run_cli(
        capsys, "train", "--resume", str(run), "--set", "train.epochs=2", "--quiet"
    )
    assert code == 0, err
    assert "completed after 2 epoch(s)" in out
    assert [
        r["epoch"]
        for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
        if r["kind"] == "epoch"
    ] == [1, 2]


def _existing_run(tmp_path, capsys):
    run = tmp_path / "old"
    assert (
        run_cli(
            capsys,
            "train",
            DEFAULT,
            *SMALL,
            "--set",
            "train.epochs=1",
            "--run-dir",
            str(run),
            "--quiet",
        )[0]
        == 0
    )
    return run


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_bad_input_exits_2_with_one_line_and_overwrites_nothing(tmp_path, capsys):
    run = _existing_run(tmp_path, capsys)
    before = _snapshot(run)
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text('[data]\nname = "digits"\n[train\nepochs = 1\n')
    (tmp_path / "afile").write_text("x")
    cases = [
        (["train", str(tmp_path / "missing.toml")], r"config file not found"),
        (["train", str(bad_toml)], r"invalid TOML .*line 3, column"),
        (
            ["train", DEFAULT, "--set", "optimizer.name=adamw"],
            r"optimizer\.name must be one of 'qpsbgd', 'binaryconnect'",
        ),
        (
            ["train", DEFAULT, "--set", "annealer.backend=qpu"],
            r"unknown annealer backend 'qpu'; known backends: neal, exact",
        ),
        (["train", DEFAULT, "--set", "train.epoch=1"], r"unknown config key 'train\.epoch'"),
        (
            [
                "train",
                DEFAULT,
                "--set",
                "data.name=a1a",
                "--set",
                f"data.root='{tmp_path / 'nodata'}'",
                "--run-dir",
                str(tmp_path / "x"),
            ],
            r"nodata/a1a",
        ),
        (["train", DEFAULT, "--run-dir", str(tmp_path / "afile" / "run")], r"is not a directory"),
        (["train", DEFAULT, "--run-dir", str(run)], r"already holds a run .*bnn train --resume"),
        (
            ["train", "--resume", str(run), "--set", "model.hidden=[4]"],
            r"changed incompatibly at model\.hidden",
        ),
        (["train", "--resume", str(tmp_path / "nowhere")], r"nowhere' is not a run directory"),
        (["train"], r"needs CONFIG or --resume"),
        (["train", DEFAULT, "--resume", str(run)], r"either CONFIG or --resume"),
        (["eval", str(tmp_path)], r"not a run directory: no config\.toml"),
        (["compare", str(tmp_path)], r"no summary\.json"),
    ]
    for argv, pattern in cases:
        code, _, err = run_cli(capsys, *argv)
        assert code == 2, (argv, err)
        assert re.search(pattern, one_line_error(err)), (argv, err)
    assert _snapshot(run) == before
    assert not (tmp_path / "x").exists()


def test_corrupt_checkpoint_exits_2_and_keeps_previous(tmp_path, capsys):
    run = _existing_run(tmp_path, capsys)
    (run / "checkpoint.pt").write_bytes(b"PK\x03\x04truncated")
    code, _, err = run_cli(capsys, "eval", str(run))
    assert code == 2 and "corrupt or not a qsgd checkpoint" in one_line_error(err)


def test_argparse_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2
    assert "invalid choice: 'frobnicate'" in capsys.readouterr().err


@pytest.mark.slow
def test_sigint_saves_a_checkpoint_exits_130_and_the_run_resumes(tmp_path):
    """``python -m bnn`` in a real process: Ctrl-C -> checkpoint, exit 130, then resume."""
    import signal
    import time

    run = tmp_path / "sig"
    argv = [sys.executable, "-m", "bnn", "train", DEFAULT, *SMALL, "--set", "train.epochs=100000"]
    argv += ["--set", "output.plots=false", "--run-dir", str(run), "--quiet"]
    proc = subprocess.Popen(
        argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 120
        while not (run / "checkpoint.pt").exists():  # wait until training is under way
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted: resume with  bnn train --resume" in out
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    done = summary["epochs_completed"]
    assert (
        main(["train", "--resume", str(run), "--set", f"train.epochs={done + 1}", "--quiet"]) == 0
    )
    assert json.loads((run / "summary.json").read_text())["epochs_completed"] == done + 1


def test_sweep_subcommand_runs_a_grid_and_writes_a_table(tmp_path, capsys):
    out_dir = tmp_path / "sweep"
    argv = [
        "sweep",
        DEFAULT,
        "--grid",
        "optimizer.lr=[0.01, 0.05]",
        "--grid",
        "train.epochs=[1]",
        "--grid",
        "train.max_batches_per_epoch=[2]",
        "--grid",
        "annealer.num_sweeps=[10]",
        "--seeds",
        "0",
        "--out",
        str(out_dir),
    ]
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    table = (out_dir / "sweep.md").read_text()
    assert "0.01" in table and "0.05" in table
    assert json.loads((out_dir / "sweep.json").read_text())
    code, _, err = run_cli(
        capsys, "sweep", DEFAULT, "--grid", "optimizer.nope=[1]", "--out", str(tmp_path / "x")
    )
    assert code == 2 and "nope" in err


# --------------------------------------------------------------------- real processes
def _bnn(*argv, timeout=300, **kw):
    """``python -m bnn ARGV`` in a real process."""
    return subprocess.run(
        [sys.executable, "-m", "bnn", *map(str, argv)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kw,
    )


def _clean_error(proc, pattern):
    """Exit 2, one ``bnn: error:`` line matching ``pattern``, no traceback, no escapes."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    line = one_line_error(proc.stderr)
    assert re.search(pattern, line), line
    assert "Traceback" not in proc.stderr and "\x1b[" not in proc.stderr
    assert "weights_only=False" not in line and "`weights_only` set to `False`" not in line
    return line


@pytest.mark.slow
def test_config_failing_at_its_first_step_leaves_no_run_folder(tmp_path, capsys):
    """``exact`` with blocks of 30 variables fails at the first solve, after the run folder was
    made: the folder (and the parents it made) must go, so the corrected command can use it."""
    run = tmp_path / "runs" / "first"
    bad = ["--set", "annealer.backend=exact", "--set", "annealer.max_block_vars=30"]
    proc = _bnn("train", DEFAULT, *SMALL, *bad, "--run-dir", run, "--quiet")
    _clean_error(proc, r"'exact' enumerates at most 24 variables \(got 30\)")
    assert not (tmp_path / "runs").exists()
    code, out, err = run_cli(capsys, "train", DEFAULT, *SMALL, "--run-dir", str(run), "--quiet")
    assert code == 0, err
    assert (run / "checkpoint.pt").exists() and "completed after 2 epoch(s)" in out


def _checkpoint_tensors(state, prefix=""):
    """Every tensor of a checkpoint (model, optimizer and RNG states), by key path."""
    if isinstance(state, torch.Tensor):
        return {prefix: state}
    if isinstance(state, np.ndarray):  # e.g. the numpy RNG key
        return {prefix: torch.from_numpy(state.astype(np.int64))}
    found = {}
    if isinstance(state, dict | list | tuple):
        for k, v in state.items() if isinstance(state, dict) else enumerate(state):
            found.update(_checkpoint_tensors(v, f"{prefix}/{k}"))
    return found


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["neal", "batched"])
def test_real_sigint_and_resume_equal_an_uninterrupted_run_bit_for_bit(tmp_path, backend):
    """Ctrl-C (a real SIGINT to ``python -m bnn train``) mid-epoch, ``--resume`` in a new
    process, and the final weights, optimizer state and every non-timing metric equal those of
    one uninterrupted run.

    The interrupted run is started with ``train.epochs=1000`` so it cannot finish before the
    signal lands; both it (on resume) and the reference then run to ``E = epochs done + 2``
    (``train.epochs`` may change on resume; data order and seeds depend only on (seed, epoch,
    step)). Torch runs on one thread (the config's ``train.num_threads = 1``); numba uses its
    default thread count, which does not change results (each chain has its own generator).
    """
    import signal
    import time

    from bnn.checkpoint import load_checkpoint
    from bnn.records import read_metrics, strip_timings

    common = ["--set", "model.hidden=[8]", "--set", f"annealer.backend={backend}"]
    common += ["--set", "annealer.num_reads=2", "--set", "annealer.num_sweeps=200"]
    common += ["--set", "output.plots=false", "--quiet"]
    cut, full = tmp_path / "cut", tmp_path / "full"
    argv = [sys.executable, "-m", "bnn", "train", DEFAULT, *common, "--set", "train.epochs=1000"]
    proc = subprocess.Popen(
        [*argv, "--run-dir", str(cut)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while True:  # a checkpoint exists and epoch 2 has begun
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            metrics = cut / "metrics.jsonl"
            lines = metrics.read_text().split("\n")[:-1] if metrics.exists() else []
            kinds = [json.loads(line)["kind"] for line in lines]  # whole lines: flushed per record
            if (cut / "checkpoint.pt").exists() and "epoch" in kinds[:-2] and kinds[-1] == "step":
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    interrupted = json.loads((cut / "summary.json").read_text())
    assert interrupted["status"] == "interrupted" and interrupted["epochs_completed"] >= 1
    epochs = interrupted["epochs_completed"] + 2

    resumed = _bnn("train", "--resume", cut, "--set", f"train.epochs={epochs}", "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    reference = _bnn(
        "train", DEFAULT, *common, "--set", f"train.epochs={epochs}", "--run-dir", full
    )
    assert reference.returncode == 0, reference.stderr

    assert strip_timings(read_metrics(cut)) == strip_timings(read_metrics(full))
    a, b = (json.loads((d / "summary.json").read_text()) for d in (cut, full))
    drop = ("run_dir", "files")
    assert strip_timings({k: v for k, v in a.items() if k not in drop}) == strip_timings(
        {k: v for k, v in b.items() if k not in drop}
    )
    ca, cb = load_checkpoint(cut), load_checkpoint(full)
    ta, tb = _checkpoint_tensors(ca), _checkpoint_tensors(cb)
    assert ta.keys() == tb.keys() and any(k.startswith("/model/") for k in ta)
    assert [k for k in ta if not torch.equal(ta[k], tb[k])] == []
    assert (ca["epoch"], ca["step"], ca["status"]) == (cb["epoch"], cb["step"], "completed")
    assert strip_timings(ca["history"]) == strip_timings(cb["history"])


@pytest.mark.slow
def test_error_paths_in_real_processes_exit_2_with_one_line_and_overwrite_nothing(tmp_path, capsys):
    """Each bad invocation of ``python -m bnn``: exit 2, one clean line, no traceback, no
    ANSI escapes, no torch advice, and no file created or changed. (The cases of
    test_bad_input_exits_2_with_one_line_and_overwrites_nothing run in-process.)"""
    import pickle

    run = _existing_run(tmp_path, capsys)
    stub = tmp_path / "stub"  # a run that never wrote a checkpoint
    stub.mkdir()
    (stub / "config.toml").write_bytes((run / "config.toml").read_bytes())
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    (tmp_path / "afile").write_text("x")
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    for name in ("config.toml", "summary.json"):
        (truncated / name).write_bytes((run / name).read_bytes())
    data = (run / "checkpoint.pt").read_bytes()
    (truncated / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    evil = tmp_path / "evil"
    evil.mkdir()
    (evil / "config.toml").write_bytes((run / "config.toml").read_bytes())
    (evil / "checkpoint.pt").write_bytes(
        pickle.dumps({"format_version": 1, "x": print}, protocol=2)
    )
    badjson = tmp_path / "badjson"
    badjson.mkdir()
    (badjson / "summary.json").write_text('{"name": "x",')

    corrupt = r"checkpoint '.*checkpoint\.pt' is corrupt or not a qsgd checkpoint"
    cases = [
        (["eval", stub], r"no checkpoint at '.*stub/checkpoint\.pt'"),
        (["eval", tmp_path / "afile"], r"afile' is not a run directory"),
        (["eval", truncated], corrupt + r": a truncated zip archive \(\d+ bytes; got "),
        (["train", "--resume", evil], corrupt + r" \(\d+ bytes; got UnpicklingError: .*GLOBAL"),
        (["train", "--resume", stub], r"holds no checkpoint\.pt .*nothing to resume"),
        (["train", "--resume", run, "--set", "data.name=digits"], r"incompatibly at data\.name"),
        (["train", DEFAULT, "--run-dir", stub], r"holds a run that never wrote a checkpoint"),
        (["train", DEFAULT, "--run-dir", foreign], r"must be a new or empty directory"),
        (["compare", run, "--out", tmp_path / "afile"], r"must be a directory \(got '.*afile'"),
        (["compare", run, "--out", tmp_path / "afile" / "sub"], r"must be a directory"),
        (["compare", run, tmp_path / "old"], r"run directory '.*old' is given twice"),
        (["compare", run, badjson, "--out", tmp_path / "cmp"], r"summary\.json' is not valid"),
    ]
    before = {p: p.read_bytes() for p in sorted(tmp_path.rglob("*")) if p.is_file()}
    for i in range(0, len(cases), 4):  # four processes at a time (each imports torch)
        procs = [
            (
                pattern,
                subprocess.Popen(
                    [sys.executable, "-m", "bnn", *map(str, argv)],
                    cwd=tmp_path,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                ),
            )
            for argv, pattern in cases[i : i + 4]
        ]
        for pattern, proc in procs:
            out, err = proc.communicate(timeout=300)
            _clean_error(subprocess.CompletedProcess(proc.args, proc.returncode, out, err), pattern)
    after = {p: p.read_bytes() for p in sorted(tmp_path.rglob("*")) if p.is_file()}
    assert after == before
    assert not (tmp_path / "cmp").exists()
