"""The ``bnn`` command end to end on the embedded default config (reduced via --set)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bnn.cli import main

REPO = Path(__file__).resolve().parents[1]
DEFAULT = str(REPO / "examples" / "configs" / "default.toml")
SMALL = [
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
