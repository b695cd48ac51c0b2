"""``qkernels run`` / ``qkernels sweep`` on bad input: exit 2, one line on stderr, nothing touched.

Also pins where results go: ``runs/kernels/<name>`` under the current folder by default, a
non-empty folder only with ``--overwrite``, and the committed ``results/`` tree never by accident.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from qkernels.cli import main

REPO = Path(__file__).resolve().parents[2]

TINY = """\
name = "tiny"
seeds = [SEED]
plots = PLOTS
[[datasets]]
name = "moons"
n_train = 8
n_test = 6
[[ansatze]]
name = "ANSATZ"
n_layers = 2
[kernel]
device = "DEVICE"
[training]
steps = STEPS
batch_size = 4
"""


def write_config(
    folder: Path,
    name: str = "tiny.toml",
    *,
    seed: int = 0,
    plots: bool = False,
    ansatz: str = "iqp",
    device: str = "default.qubit",
    steps: object = 0,
) -> Path:
    text = (
        TINY.replace("SEED", str(seed))
        .replace("PLOTS", "true" if plots else "false")
        .replace("ANSATZ", ansatz)
        .replace("DEVICE", device)
        .replace("STEPS", steps if isinstance(steps, str) else str(steps))
    )
    path = folder / name
    path.write_text(text)
    return path


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes)."""
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def one_line_error(err: str, pattern: str, prog: str = "qkernels") -> str:
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{prog}: error: "), err
    assert re.search(pattern, lines[0]), lines[0]
    return lines[0]


def run_main(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# ----------------------------------------------------------------- output folders
def test_default_output_is_runs_kernels_name_under_the_current_folder(
    tmp_path, monkeypatch, capsys
):
    cfg = write_config(tmp_path)
    monkeypatch.chdir(tmp_path)
    code, out, err = run_main(capsys, "run", str(cfg))
    assert code == 0, err
    assert "wrote runs/kernels/tiny/results.json" in out
    result = json.loads((tmp_path / "runs" / "kernels" / "tiny" / "results.json").read_text())
    assert result["config"]["name"] == "tiny" and len(result["runs"]) == 1
    assert not (tmp_path / "results").exists()


def test_non_empty_output_folder_is_refused_and_left_byte_identical(tmp_path, capsys):
    out = tmp_path / "earlier"
    assert run_main(capsys, "run", str(write_config(tmp_path)), "--out", str(out))[0] == 0
    (out / "notes.txt").write_text("mine")
    before = snapshot(out)
    code, _, err = run_main(capsys, "run", str(write_config(tmp_path, seed=1)), "--out", str(out))
    assert code == 2
    one_line_error(
        err,
        r"output folder '.*earlier' is not empty \(notes\.txt, results\.json, results\.md\); "
        r"pick another --out, or pass --overwrite to replace the results in it",
    )
    assert snapshot(out) == before


def test_overwrite_replaces_the_results_and_keeps_other_files(tmp_path, capsys):
    out = tmp_path / "run"
    first = write_config(tmp_path, "a.toml", seed=0, plots=True)
    assert run_main(capsys, "run", str(first), "--out", str(out))[0] == 0
    (out / "notes.txt").write_text("mine")
    (out / "plots" / "stale.png").write_bytes(b"old plot")
    second = write_config(tmp_path, "b.toml", seed=3, plots=True)
    code, _, err = run_main(capsys, "run", str(second), "--out", str(out), "--overwrite")
    assert code == 0, err
    result = json.loads((out / "results.json").read_text())
    assert [r["seed"] for r in result["runs"]] == [3]
    assert (out / "notes.txt").read_text() == "mine"
    pngs = sorted(p.name for p in (out / "plots").iterdir())
    assert pngs == ["moons_iqp_seed3_boundary.png", "moons_iqp_seed3_gram.png"]


def test_out_pointing_at_a_file_is_refused_and_the_file_unchanged(tmp_path, capsys):
    target = tmp_path / "results.json"
    target.write_bytes(b'{"precious": true}')
    for extra in ([], ["--overwrite"]):
        code, _, err = run_main(
            capsys, "run", str(write_config(tmp_path)), "--out", str(target), *extra
        )
        assert code == 2
        one_line_error(err, r"output folder '.*results\.json' is an existing file, not a folder")
        assert target.read_bytes() == b'{"precious": true}'


def test_out_below_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    code, _, err = run_main(
        capsys, "run", str(write_config(tmp_path)), "--out", str(tmp_path / "afile" / "sub")
    )
    assert code == 2
    one_line_error(err, r"cannot create output folder '.*afile/sub'")
    assert (tmp_path / "afile").read_text() == "x"


def test_the_committed_results_tree_is_not_overwritten_without_overwrite(monkeypatch, capsys):
    results = REPO / "results" / "kernels"
    if not (results / "checkerboard" / "results.json").is_file():
        pytest.skip("no committed results/kernels/checkerboard in this checkout")
    before = snapshot(results)
    monkeypatch.chdir(REPO)
    code, _, err = run_main(
        capsys,
        "run",
        "examples/configs/kernels_checkerboard.toml",
        "--smoke",
        "--out",
        "results/kernels/checkerboard",
    )
    assert code == 2
    one_line_error(err, r"output folder 'results/kernels/checkerboard' is not empty")
    assert snapshot(results) == before


def test_example_scripts_default_to_runs_and_refuse_a_non_empty_folder(tmp_path, monkeypatch):
    from qsgd.errors import ConfigError

    spec = importlib.util.spec_from_file_location(
        "_qk_example_checkerboard_cli", REPO / "examples" / "kernels_checkerboard.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    parser_defaults = module.__doc__
    assert "runs/kernels/checkerboard" in parser_defaults
    out = tmp_path / "kc"
    out.mkdir()
    (out / "keep.txt").write_text("keep")
    with pytest.raises(ConfigError, match=r"is not empty \(keep\.txt\)"):
        module.main(["--smoke", "--out", str(out)])
    assert snapshot(out) == {"keep.txt": b"keep"}


# ----------------------------------------------------------------- config files
@pytest.mark.parametrize(
    ("make", "pattern"),
    [
        (
            lambda d: write_config(d, steps='"300"'),
            r"invalid experiment config '.*tiny\.toml': training\.steps: must be an integer "
            r"\(got '300' of type string\)",
        ),
        (
            lambda d: write_config(d, steps="true"),
            r"training\.steps: must be an integer \(got True of type boolean\)",
        ),
        (lambda d: d / "missing.toml", r"config file '.*missing\.toml' does not exist"),
        (
            lambda d: (d / "bad.toml").write_text("name = [") and d / "bad.toml",
            r"config file '.*bad\.toml' is not valid TOML: .*at end of document",
        ),
        (
            lambda d: (d / "folder.toml").mkdir() or d / "folder.toml",
            r"config path '.*folder\.toml' is not a file \(a TOML file is expected\)",
        ),
        (
            lambda d: (d / "bin.toml").write_bytes(b"\xff\xfe\x00") and d / "bin.toml",
            r"cannot read config file '.*bin\.toml'",
        ),
        (
            lambda d: write_config(d, ansatz="hubregtsen", device="lightning.qubit", steps=2),
            r"kernel\.device: 'lightning\.qubit' computes Gram matrices forward only .* use "
            r"device = 'default\.qubit' to train, or set training\.steps = 0",
        ),
    ],
    ids=[
        "string-for-int",
        "bool-for-int",
        "missing",
        "bad-toml",
        "directory",
        "binary",
        "lightning",
    ],
)
def test_bad_config_files_exit_2_with_one_line(tmp_path, capsys, make, pattern):
    cfg = make(tmp_path)
    out = tmp_path / "out"
    code, stdout, err = run_main(capsys, "run", str(cfg), "--out", str(out))
    assert code == 2 and stdout == ""
    one_line_error(err, pattern)
    assert not out.exists()


def test_non_finite_data_exits_2_before_anything_is_written(tmp_path, capsys):
    cfg = tmp_path / "nan.toml"
    cfg.write_text(
        'name = "nan"\n[[datasets]]\nname = "checkerboard"\nn_train = 40\nn_test = 40\n'
        'noise = 1e308\n[[ansatze]]\nname = "iqp"\n'
    )
    out = tmp_path / "out"
    code, _, err = run_main(capsys, "run", str(cfg), "--out", str(out))
    assert code == 2
    one_line_error(
        err, r"dataset 'checkerboard' \(generated with noise=1e\+308\) must be finite \(got NaN"
    )
    assert not out.exists()


# ----------------------------------------------------------------- lightning.qubit
def test_lightning_forward_only_run_matches_default_qubit(tmp_path, capsys):
    pytest.importorskip("pennylane_lightning")
    alignments = {}
    for device in ("default.qubit", "lightning.qubit"):
        cfg = write_config(tmp_path, f"{device}.toml", ansatz="hubregtsen", device=device, steps=0)
        out = tmp_path / device
        code, _, err = run_main(capsys, "run", str(cfg), "--out", str(out))
        assert code == 0, err
        run = json.loads((out / "results.json").read_text())["runs"][0]
        assert run["trained"] is False
        alignments[device] = run["before"]["alignment"]
    assert alignments["lightning.qubit"] == pytest.approx(alignments["default.qubit"], abs=1e-10)


# ----------------------------------------------------------------- sweep
def test_sweep_refuses_a_non_empty_folder_unless_overwrite(tmp_path, capsys):
    cfg = write_config(tmp_path)
    out = tmp_path / "sweep"
    argv = ["sweep", str(cfg), "--grid", "kernel.bandwidth=[1.0]", "--out", str(out)]
    assert run_main(capsys, *argv)[0] == 0
    (out / "notes.txt").write_text("mine")
    before = snapshot(out)
    code, _, err = run_main(capsys, *argv)
    assert code == 2
    one_line_error(err, r"output folder '.*sweep' is not empty", prog="qkernels sweep")
    assert snapshot(out) == before
    code, _, err = run_main(capsys, *argv, "--overwrite")
    assert code == 0, err
    assert (out / "notes.txt").read_text() == "mine" and (out / "sweep.json").is_file()


def test_sweep_refuses_a_file_as_out(tmp_path, capsys):
    target = tmp_path / "table.json"
    target.write_text("{}")
    code, _, err = run_main(capsys, "sweep", str(write_config(tmp_path)), "--out", str(target))
    assert code == 2
    one_line_error(err, r"is an existing file, not a folder", prog="qkernels sweep")
    assert target.read_text() == "{}"


# ----------------------------------------------------------------- the real console entry
def _cli_cases(root: Path) -> dict[str, tuple[list[str], str, str]]:
    """name -> (argv after the program, stderr pattern, program name); files made under root."""
    (root / "bad.toml").write_text("name = [")
    (root / "folder.toml").mkdir()
    (root / "afile").write_bytes(b"keep me")
    full = root / "full"
    full.mkdir()
    (full / "results.json").write_text('{"earlier": true}')
    ok = str(write_config(root, "ok.toml"))
    return {
        "string-for-int": (
            ["run", str(write_config(root, "str.toml", steps='"300"'))],
            r"training\.steps: must be an integer \(got '300' of type string\)",
            "qkernels",
        ),
        "missing": (["run", "missing.toml"], r"does not exist", "qkernels"),
        "bad-toml": (["run", "bad.toml"], r"is not valid TOML", "qkernels"),
        "directory": (["run", "folder.toml"], r"is not a file", "qkernels"),
        "out-is-file": (["run", ok, "--out", "afile"], r"is an existing file", "qkernels"),
        "non-empty": (["run", ok, "--out", "full"], r"'full' is not empty", "qkernels"),
        "sweep-non-empty": (["sweep", ok, "--out", "full"], r"is not empty", "qkernels sweep"),
    }


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory):
    """Run every case in its own ``python -m qkernels.cli`` process, all at once.

    Importing torch and PennyLane dominates (seconds per process), so only the paths that
    reach the CLI differently run here; the other refusals are driven through ``main`` above.
    """
    root = tmp_path_factory.mktemp("cli")
    cases = _cli_cases(root)
    before = snapshot(root)
    env = {**os.environ, "PYTHONPATH": str(REPO), "MPLBACKEND": "Agg"}
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-m", "qkernels.cli", *argv],
            cwd=root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, (argv, _, _) in cases.items()
    }
    results = {}
    for name, proc in procs.items():
        try:
            out, err = proc.communicate(timeout=300)
        finally:
            proc.kill()
        results[name] = (proc.returncode, out, err)
    return cases, results, before, snapshot(root)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    [
        "string-for-int",
        "missing",
        "bad-toml",
        "directory",
        "out-is-file",
        "non-empty",
        "sweep-non-empty",
    ],
)
def test_real_cli_exits_2_with_one_line_and_touches_nothing(cli_runs, name):
    cases, results, before, after = cli_runs
    _, pattern, prog = cases[name]
    code, out, err = results[name]
    assert code == 2, err
    assert out == ""
    one_line_error(err, pattern, prog=prog)
    assert after == before  # no case created, changed or removed a file (runs/ included)
